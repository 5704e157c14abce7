// attnflow ot: entropic (log-domain Sinkhorn, eps-scaling) or exact (network simplex) optimal
// transport between two weighted point clouds read from .npy files. Writes DIR/report.json and
// DIR/summary.json ("kind": "ot"), DIR/f.npy, DIR/g.npy and, with --plan, DIR/plan.npy.
// Everything is computed first, then written as one staged job (job.hpp): a failure leaves no output.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/ot/divergence.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/ot/exact_ot.hpp"
#include "attnflow/run/job.hpp"
#include "attnflow/io/npy.hpp"
#include "attnflow/ot/ot.hpp"
#include "commands.hpp"
#include "distributed.hpp"
#include "plot_hook.hpp"

namespace attnflow::cli {

namespace {
struct OtArgs {
  std::string x, y, a, b, out, cost = "sqeuclidean";
  // Defaults from the library (ot.hpp), never restated here.
  double eps = 0.0, tol = SinkhornOptions{}.tol, scaling = SinkhornOptions{}.scaling;
  int max_iter = SinkhornOptions{}.max_iterations;
  bool exact = false, plan = false, no_scaling = false;
};

struct OtOutput {
  nlohmann::json report;
  Vector f, g;
  Matrix plan;
};

// Exact OT: sqeuclidean (W2^2) or euclidean (W1) cost, dense (size-limited).
OtOutput run_exact(const Measure& mu, const Measure& nu, const OtArgs& args) {
  const int p = args.cost == "euclidean" ? 1 : 2;
  ExactOtResult r;
  const double w = wasserstein(mu, nu, p, &r);
  OtOutput o;
  o.report = {{"method", "exact"}, {"cost", r.cost}, {"objective", r.cost},
              {"iterations", 0}, {"marginal_error", r.marginal_error}, {"converged", r.converged},
              {"eps", 0.0}, {"message", r.message}, {fmt::format("w{}", p), w}};
  o.f = r.f;
  o.g = r.g;
  if (args.plan) o.plan = r.dense_plan();
  return o;
}

OtOutput run_sinkhorn(const Measure& mu, const Measure& nu, const OtArgs& args) {
  if (args.cost != "sqeuclidean")
    throw_invalid("ot", "--cost", fmt::format("\"{}\"", args.cost), "sqeuclidean with --eps "
                  "(euclidean is available with --exact)");
  const TransportCost cost = TransportCost::sqeuclidean(mu.points(), nu.points());
  SinkhornOptions opt;
  opt.eps = args.eps;
  opt.tol = args.tol;
  opt.max_iterations = args.max_iter;
  opt.eps_scaling = !args.no_scaling;
  opt.scaling = args.scaling;
  opt.comm = world();  // mpirun -np P: the rows of every half-step across ranks
  opt.validate();
  // Progress on stderr about every 2 s (large problems take minutes).
  auto last = std::chrono::steady_clock::now();
  opt.on_iteration = [&last](int it, double eps, double err) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last < std::chrono::seconds(2)) return;
    last = now;
    fmt::print(stderr, "ot: iteration {}, eps {:.3g}, marginal error {:.3g}\n", it, eps, err);
  };
  const SinkhornResult r = sinkhorn(mu.weights(), nu.weights(), cost, opt);
  OtOutput o;
  o.report = {{"method", "sinkhorn"}, {"cost", r.cost}, {"objective", r.objective},
              {"iterations", r.iterations}, {"stages", r.stages},
              {"marginal_error", r.marginal_error}, {"converged", r.converged}, {"eps", r.eps},
              {"tol", args.tol}, {"eps_scaling", opt.eps_scaling ? opt.scaling : 0.0},
              {"max_cost_bound", cost.scale()}, {"message", r.message}};
  o.f = r.f;
  o.g = r.g;
  if (args.plan) o.plan = transport_plan(cost, r);
  return o;
}

void run_ot(const OtArgs& args) {
  if (!args.exact && !(args.eps > 0.0))
    throw_invalid("ot", "--eps", args.eps, "> 0 (or use --exact)");
  if (args.cost != "sqeuclidean" && args.cost != "euclidean")
    throw_invalid("ot", "--cost", fmt::format("\"{}\"", args.cost), "sqeuclidean or euclidean");
  const Matrix x = load_matrix(args.x, "--x"), y = load_matrix(args.y, "--y");
  const Vector a = args.a.empty() ? Vector() : load_vector(args.a, "--a");
  const Vector b = args.b.empty() ? Vector() : load_vector(args.b, "--b");
  const Measure mu(x, a, "ot: source (--x, --a)"), nu(y, b, "ot: target (--y, --b)");
  if (mu.dim() != nu.dim())
    throw std::invalid_argument(fmt::format(
        "ot: --x has dimension {} and --y has dimension {}, must be equal", mu.dim(), nu.dim()));
  // Refuse an oversized plan before spending minutes on the solve.
  const double entries = static_cast<double>(mu.size()) * static_cast<double>(nu.size());
  if (args.plan && entries > static_cast<double>(kMaxPlanEntries))
    throw std::invalid_argument(fmt::format(
        "ot: --plan with n * m = {} * {} = {}, must be <= {} (dense plan; drop --plan)",
        mu.size(), nu.size(), entries, kMaxPlanEntries));

  Job job({.kind = "ot", .out_dir = args.out, .version = ATTNFLOW_VERSION, .resumable = false, .resume = false,
           .outputs = {"f.npy", "g.npy", "plan.npy", "report.json"}, .noun = "run", .marker = ""});
  const auto t0 = std::chrono::steady_clock::now();
  OtOutput o = args.exact ? run_exact(mu, nu, args) : run_sinkhorn(mu, nu, args);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  o.report.update(job.summary("finished"));  // not converging is reported in "converged"
  o.report["cost_type"] = args.cost;
  o.report["n"] = mu.size();
  o.report["m"] = nu.size();
  o.report["dim"] = mu.dim();
  o.report["seconds"] = seconds;
  o.report["plan"] = args.plan;

  if (!is_writer()) return;  // mpirun: rank 0 writes (the same numbers on every rank)
  job.start();
  write_npy(job.path("f.npy"), o.f);
  write_npy(job.path("g.npy"), o.g);
  if (args.plan) write_npy(job.path("plan.npy"), o.plan);
  write_file_atomic(job.path("report.json"), o.report.dump(2) + "\n");
  job.write_summary(o.report);
  job.commit();
  fmt::print("ot ({}): cost {:.10g}, {} iterations, marginal error {:.3g}, {} in {:.2f} s -> {}\n",
             o.report["method"].get<std::string>(), o.report["cost"].get<double>(),
             o.report["iterations"].get<int>(), o.report["marginal_error"].get<double>(),
             o.report["converged"].get<bool>() ? "converged" : "NOT converged", seconds, args.out);
  run_plot_hook(args.out);
}

void add_ot(CLI::App& app) {
  auto args = std::make_shared<OtArgs>();
  CLI::App* sub = app.add_subcommand(
      "ot", "Optimal transport between weighted point clouds: entropic (log-domain Sinkhorn "
            "with eps-scaling, O(n + m) memory) with --eps, or exact (network simplex) with --exact");
  sub->add_option("--x", args->x, "Source points X (n, d) .npy")->required()->check(CLI::ExistingFile);
  sub->add_option("--y", args->y, "Target points Y (m, d) .npy")->required()->check(CLI::ExistingFile);
  sub->add_option("--a", args->a, "Source weights (n) .npy (default uniform; normalized to 1)")
      ->check(CLI::ExistingFile);
  sub->add_option("--b", args->b, "Target weights (m) .npy (default uniform; normalized to 1)")
      ->check(CLI::ExistingFile);
  auto* eps = sub->add_option("--eps", args->eps, "Entropic regularization, in cost units (> 0)");
  auto* exact = sub->add_flag("--exact", args->exact,
                              "Exact OT by network simplex (n * m <= 4e6); reports W2 (or W1)");
  eps->excludes(exact);
  sub->add_option("--cost", args->cost,
                  "sqeuclidean (|x - y|^2) | euclidean (|x - y|, --exact only: W1)")
      ->capture_default_str();
  sub->add_option("--tol", args->tol, "Stop at marginal violation sum_i |sum_j pi_ij - a_i| <= tol")
      ->capture_default_str();
  sub->add_option("--max-iter", args->max_iter, "Maximum Sinkhorn iterations (scaling stages included)")
      ->capture_default_str();
  sub->add_option("--scaling", args->scaling, "eps-scaling factor in (0, 1)")->capture_default_str();
  sub->add_flag("--no-eps-scaling", args->no_scaling, "Start directly at the target eps");
  sub->add_flag("--plan", args->plan, "Also write the dense plan DIR/plan.npy (n * m <= 2.5e7)");
  sub->add_option("--out", args->out, "Output directory (report.json, summary.json, f.npy, g.npy)")
      ->required();
  add_threads_option(*sub);
  sub->callback([args] { run_ot(*args); });
}

const Registrar registrar{"ot", 30, add_ot};
}  // namespace

}  // namespace attnflow::cli
