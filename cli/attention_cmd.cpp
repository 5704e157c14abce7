// attnflow attention: softmax / sinkhorn / unnormalized attention between two weighted point
// clouds read from .npy files; writes out (n, p) float64 .npy.
#include <fmt/format.h>

#include <memory>
#include <optional>

#include "attnflow/attention/attention.hpp"
#include "attnflow/io/npy.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"
#include "commands.hpp"
#include "distributed.hpp"

namespace attnflow::cli {

namespace {
struct AttentionArgs {
  std::string x, y, v, wx, wy, q, k, out, normalization = "softmax";
  double beta = 1.0;
  // Defaults from the library (sinkhorn.hpp), never restated here.
  int sinkhorn_iters = SinkhornNormalizationOptions{}.iterations;
  double tol = SinkhornNormalizationOptions{}.tol;
  int max_iter = SinkhornNormalizationOptions{}.max_iterations;
};

void run_attention(const AttentionArgs& a) {
  const Matrix x = load_matrix(a.x, "--x");
  const Vector wx = a.wx.empty() ? Vector() : load_vector(a.wx, "--wx");
  const Measure queries(x, wx, "queries (--x, --wx)");
  const Matrix y = a.y.empty() ? x : load_matrix(a.y, "--y");
  const Vector wy = a.wy.empty() ? (a.y.empty() ? queries.weights() : Vector()) : load_vector(a.wy, "--wy");
  const Measure keys(y, wy, "keys (--y, --wy)");
  std::optional<Matrix> values;
  if (!a.v.empty()) values = load_matrix(a.v, "--v");

  AttentionOptions opt;
  opt.beta = a.beta;
  AttentionHead head;
  head.normalization = parse_normalization(a.normalization, "attention: --normalization");
  if (!a.q.empty()) head.q = load_nonempty_matrix(a.q, "--q");
  if (!a.k.empty()) head.k = load_nonempty_matrix(a.k, "--k");
  opt.heads.push_back(head);
  opt.sinkhorn.iterations = a.sinkhorn_iters;
  opt.sinkhorn.tol = a.tol;
  opt.sinkhorn.max_iterations = a.max_iter;
  opt.comm = world();  // mpirun -np P: query rows across ranks (cli/distributed.hpp)

  const AttentionResult res = attention(queries, keys, values, opt);
  if (is_writer()) write_npy(a.out, res.out);  // mpirun: rank 0 writes
  const NormalizationStatus& st = res.status.front();
  if (head.normalization == Normalization::sinkhorn) {
    fmt::print(stderr, "sinkhorn: {} iterations, marginal error {:.3g}, {}\n", st.iterations,
               st.marginal_error, st.converged ? "converged" : "NOT converged");
  }
  if (res.device != "cpu")
    fmt::print(stderr, "attention: computed on {} ({})\n", res.device,
               precision_name(current_device().precision));
  fmt::print("wrote {} ({} x {})\n", a.out, res.out.rows(), res.out.cols());
}
}  // namespace

namespace {
void add_attention(CLI::App& app) {
  auto args = std::make_shared<AttentionArgs>();
  CLI::App* sub = app.add_subcommand(
      "attention",
      "Attention between weighted point clouds: out_i = sum_j P_ij v_j with P the softmax, "
      "Sinkhorn or unnormalized weights of beta <Q x_i, K y_j>");
  sub->add_option("--x", args->x, "Queries X (n, d): .npy (float64 or float32, C order) or .csv")
      ->required()->check(CLI::ExistingFile);
  sub->add_option("--y", args->y, "Keys Y (m, d) .npy (default: X)")->check(CLI::ExistingFile);
  sub->add_option("--v", args->v, "Values (m, p) .npy (default: Y)")->check(CLI::ExistingFile);
  sub->add_option("--wx", args->wx, "Query weights (n) .npy (default uniform)")->check(CLI::ExistingFile);
  sub->add_option("--wy", args->wy, "Key weights (m) .npy (default uniform)")->check(CLI::ExistingFile);
  sub->add_option("--beta", args->beta, "Inverse temperature beta")->capture_default_str();
  sub->add_option("--q", args->q, "Query matrix Q (d_k, d) .npy (default identity)")->check(CLI::ExistingFile);
  sub->add_option("--k", args->k, "Key matrix K (d_k, d) .npy (default identity)")->check(CLI::ExistingFile);
  sub->add_option("--normalization", args->normalization, "softmax | sinkhorn | none")
      ->capture_default_str();
  auto* iters = sub->add_option("--sinkhorn-iters", args->sinkhorn_iters,
                                "Sinkhorn: fixed number of iterations (1 = softmax)")
                    ->check(integer_in("--sinkhorn-iters", 1, 100000000));
  auto* tol = sub->add_option("--tol", args->tol, "Sinkhorn: marginal-violation tolerance")
                  ->capture_default_str();
  iters->excludes(tol);
  sub->add_option("--max-iter", args->max_iter, "Sinkhorn: maximum iterations with --tol")
      ->capture_default_str();
  sub->add_option("--out", args->out, "Output .npy (n, p) float64")->required();
  add_threads_option(*sub);
  sub->callback([args] { run_attention(*args); });
}

const Registrar attention_cmd_registrar{"attention", 10, add_attention};
}  // namespace

}  // namespace attnflow::cli
