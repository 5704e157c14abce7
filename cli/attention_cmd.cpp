// attnflow attention: softmax / sinkhorn / unnormalized attention between two weighted point
// clouds read from .npy files; writes out (n, p) float64 .npy.
#include <fmt/format.h>

#include <cstring>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "attnflow/attention/attention.hpp"
#include "attnflow/base/error.hpp"
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

AttentionOptions options(const AttentionArgs& a) {
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
  return opt;
}

// The status lines (stderr) and the output's shape (stdout; rank 0 alone prints under mpirun).
void report(const AttentionArgs& a, const AttentionResult& res, const Matrix& out, const SplitRows* split = nullptr) {
  const NormalizationStatus& st = res.status.front();
  if (split && is_writer())
    fmt::print(stderr, "attention: points split across {} processes (each held its rows of the queries and keys)\n",
               split->comm->size());
  if (a.normalization == "sinkhorn") {
    fmt::print(stderr, "sinkhorn: {} iterations, marginal error {:.3g}, {}\n", st.iterations,
               st.marginal_error, st.converged ? "converged" : "NOT converged");
  }
  if (res.device != "cpu")
    fmt::print(stderr, "attention: computed on {} ({})\n", res.device,
               precision_name(current_device().precision));
  fmt::print("wrote {} ({} x {})\n", a.out, out.rows(), out.cols());
}

// mpirun -np P on the CPU with .npy points whose sizes the split takes (attention_splittable):
// each rank reads and holds only its rows of the queries, keys and values.
std::optional<SplitRows> split_rows(const AttentionArgs& a, const AttentionOptions& opt) {
  const Collective* comm = world();
  if (!comm || comm->size() == 1 || current_device().device != Device::cpu || is_csv(a.x) ||
      (!a.y.empty() && is_csv(a.y)) || (!a.v.empty() && is_csv(a.v)))
    return std::nullopt;
  const auto [n, d] = npy_rows_cols(a.x, "--x");
  const auto [m, dy] = a.y.empty() ? std::pair{n, d} : npy_rows_cols(a.y, "--y");
  const auto [mv, p] = a.v.empty() ? std::pair{m, dy} : npy_rows_cols(a.v, "--v");
  if (d != dy || mv != m || !attention_splittable(n, m, opt, d, p)) return std::nullopt;  // the whole path's checks
  return SplitRows{comm, kernel_row_parts(n, comm->size()), kernel_row_parts(m, comm->size())};
}

// Each rank's rows of the output, in rank order, on rank 0 (empty elsewhere).
Matrix gather_output(const SplitRows& split, const Matrix& mine) {
  const std::string bytes(reinterpret_cast<const char*>(mine.data()), sizeof(double) * mine.size());
  const std::vector<std::string> parts = split.comm->gather(bytes);
  if (!split.comm->writer()) return Matrix();
  const Index n = split.n();
  Matrix out(n, mine.cols());
  std::size_t at = 0;
  for (const std::string& part : parts) {
    if (!part.empty()) std::memcpy(reinterpret_cast<char*>(out.data()) + at, part.data(), part.size());
    at += part.size();
  }
  return out;
}

void run_attention(const AttentionArgs& a) {
  AttentionOptions opt = options(a);
  if (const std::optional<SplitRows> split = split_rows(a, opt)) {
    const Matrix x = load_rows(a.x, "--x", split->queries());
    const Matrix y = a.y.empty() ? x : load_rows(a.y, "--y", split->keys());
    const std::optional<Matrix> v =
        a.v.empty() ? std::nullopt : std::optional<Matrix>(load_rows(a.v, "--v", split->keys()));
    const Vector wx = a.wx.empty() ? Vector() : load_vector(a.wx, "--wx");
    const Index n = split->n(), m = split->m();
    // As the whole path: self-attention's keys take the queries' normalized weights.
    const Vector wy = !a.wy.empty() ? load_vector(a.wy, "--wy")
                      : a.y.empty() ? normalized_weights(wx, n, "queries (--x, --wx)")
                                    : Vector();
    // The whole path's checks and messages (Measure), on this rank's rows and the weights.
    require_finite("queries (--x, --wx)", "points", x, split->queries().first);
    require_finite("keys (--y, --wy)", "points", y, split->keys().first);
    normalized_weights(wx, n, "queries (--x, --wx)");
    normalized_weights(wy, m, "keys (--y, --wy)");
    const AttentionResult res = attention_split(x, y, v ? &*v : nullptr, wx, wy, opt, *split);
    const Matrix out = gather_output(*split, res.out);
    if (is_writer()) write_npy(a.out, out);
    report(a, res, out, &*split);
    return;
  }
  const Matrix x = load_matrix(a.x, "--x");
  const Vector wx = a.wx.empty() ? Vector() : load_vector(a.wx, "--wx");
  const Measure queries(x, wx, "queries (--x, --wx)");
  const Matrix y = a.y.empty() ? x : load_matrix(a.y, "--y");
  const Vector wy = a.wy.empty() ? (a.y.empty() ? queries.weights() : Vector()) : load_vector(a.wy, "--wy");
  const Measure keys(y, wy, "keys (--y, --wy)");
  std::optional<Matrix> values;
  if (!a.v.empty()) values = load_matrix(a.v, "--v");

  const AttentionResult res = attention(queries, keys, values, opt);
  if (is_writer()) write_npy(a.out, res.out);  // mpirun: rank 0 writes
  report(a, res, res.out);
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
