// attnflow ot: entropic (log-domain Sinkhorn, eps-scaling) or exact (network simplex) optimal
// transport between two weighted point clouds read from .npy files. Writes DIR/report.json and
// DIR/summary.json ("kind": "ot"), DIR/f.npy, DIR/g.npy and, with --plan, DIR/plan.npy.
// The solve is solve_ot (ot_report.hpp; the report's JSON is ot_report_json), run as a resumable
// job by run_ot_job (ot_run.hpp): checkpoint.bin holds the potentials while it runs (every
// --checkpoint-every seconds, and on SIGINT / SIGTERM), --resume continues from it, and the
// outputs are written last. Only parses and formats.
#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <optional>
#include <utility>
#include <nlohmann/json.hpp>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/run/ot_run.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"
#include "attnflow/run/job.hpp"
#include "attnflow/run/progress.hpp"
#include "attnflow/io/npy.hpp"
#include "attnflow/ot/ot_report.hpp"
#include "attnflow/run/reports.hpp"
#include "commands.hpp"
#include "distributed.hpp"
#include "plot_hook.hpp"

namespace attnflow::cli {

namespace {
struct OtArgs {
  std::string x, y, a, b, out;
  OtRequest request = cli_request();  // defaults from the library (ot_report.hpp, ot.hpp)
  bool no_scaling = false;
  bool quiet = false;
  bool resume = false;
  double checkpoint_every = OtRunOptions{}.checkpoint_every;

  static OtRequest cli_request() {
    OtRequest r;
    r.names = {.eps = "--eps", .exact = "--exact", .cost = "--cost", .plan = "--plan",
               .x = "--x", .y = "--y"};
    return r;
  }
};

// mpirun -np P, an entropic solve without a plan on the CPU, from .npy files whose sizes the
// split takes (TransportCost::splittable): each rank reads and holds only its rows of x and y.
// Otherwise (nullopt) every rank holds the whole points.
std::optional<SplitRows> split_points(const OtArgs& args, const OtRequest& req) {
  const Collective* comm = world();
  if (!comm || comm->size() == 1 || req.exact || req.plan || current_device().device != Device::cpu ||
      is_csv(args.x) || is_csv(args.y))
    return std::nullopt;
  const auto [n, dx] = npy_rows_cols(args.x, "--x");
  const auto [m, dy] = npy_rows_cols(args.y, "--y");
  if (dx != dy || !TransportCost::splittable(n, m, dx)) return std::nullopt;  // the whole path's checks
  return SplitRows{comm, kernel_row_parts(n, comm->size()), kernel_row_parts(m, comm->size())};
}

// What a resume must find unchanged: the options that shape the solve and the input files'
// contents (sizes and hashes; not their paths, not the thread or process count).
std::string fingerprint(const OtArgs& args) {
  const OtRequest& r = args.request;
  const SinkhornOptions& k = r.sinkhorn;
  std::string text = fmt::format(
      "ot {}, cost {}, eps {:a}, tol {:a}, max-iter {}, eps-scaling {}, scaling {:a}, plan {}\n",
      r.exact ? "exact" : "entropic", r.cost, k.eps, k.tol, k.max_iterations, !args.no_scaling, k.scaling, r.plan);
  if (k.overrelax != 1.0) text += fmt::format("overrelax {:a}\n", k.overrelax);  // plain: as before it existed
  const std::pair<const char*, const std::string*> files[] = {
      {"--x", &args.x}, {"--y", &args.y}, {"--a", &args.a}, {"--b", &args.b}};
  for (const auto& [option, path] : files)
    text += fmt::format("{} {}\n", option, path->empty() ? "(none)" : file_fingerprint(*path));
  return text;
}

void run_ot(OtArgs args) {
  OtRequest& req = args.request;
  req.sinkhorn.eps_scaling = !args.no_scaling;
  req.sinkhorn.comm = world();  // mpirun -np P: the rows of every half-step across ranks
  req.validate();  // before reading the files
  const Vector a = args.a.empty() ? Vector() : load_vector(args.a, "--a");
  const Vector b = args.b.empty() ? Vector() : load_vector(args.b, "--b");
  const std::optional<SplitRows> split = split_points(args, req);
  Matrix x, y;
  std::optional<Measure> mu, nu;
  if (split) {
    x = load_rows(args.x, "--x", split->queries());
    y = load_rows(args.y, "--y", split->keys());
  } else {
    x = load_matrix(args.x, "--x");
    y = load_matrix(args.y, "--y");
    mu.emplace(std::move(x), a, "ot: source (--x, --a)");
    nu.emplace(std::move(y), b, "ot: target (--y, --b)");
    req.check_measures(*mu, *nu);
  }

  // mpirun: the network simplex is not distributed, and the dense plan comes from the gathered
  // potentials; rank 0 alone computes either (the others would repeat it, and hold the plan).
  const auto solve = [&](const OtRequest& r) {
    if (!is_writer() && r.exact) return OtReport{};
    OtRequest q = r;
    if (!is_writer()) q.plan = false;
    return split ? solve_ot_split(x, y, split->n(), split->m(), a, b, q, *world()) : solve_ot(*mu, *nu, q);
  };
  OtRunOptions opt{.out_dir = args.out, .resume = args.resume, .checkpoint_every = args.checkpoint_every,
                   .stop_after_checkpoints = stop_after_from_env(), .version = ATTNFLOW_VERSION,
                   .fingerprint = is_writer() ? fingerprint(args) : std::string(),
                   .progress = args.quiet || !is_writer() ? nullptr : stderr, .comm = world()};
  const OtRunSummary s = run_ot_job(solve, req, opt);
  // Every rank takes the same exit (under mpirun the others' stdout is /dev/null).
  if (ended_early("ot", s.already_finished, s.interrupted, s.signal, s.checkpoints, args.out)) return;
  if (!is_writer()) return;
  const OtReport& r = s.report;
  fmt::print("ot ({}): cost {:.10g}, {} iterations, marginal error {:.3g}, {} in {:.2f} s -> {}\n",
             r.method, r.cost, r.iterations, r.marginal_error,
             r.converged ? "converged" : "NOT converged", r.seconds, args.out);
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
  OtRequest& req = args->request;
  auto* eps = sub->add_option("--eps", req.sinkhorn.eps, "Entropic regularization, in cost units (> 0)");
  auto* exact = sub->add_flag("--exact", req.exact,
                              "Exact OT by network simplex (n * m <= 4e6); reports W2 (or W1)");
  eps->excludes(exact);
  sub->add_option("--cost", req.cost,
                  "sqeuclidean (|x - y|^2) | euclidean (|x - y|, --exact only: W1)")
      ->capture_default_str();
  sub->add_option("--tol", req.sinkhorn.tol, "Stop at marginal violation sum_i |sum_j pi_ij - a_i| <= tol")
      ->capture_default_str();
  sub->add_option("--max-iter", req.sinkhorn.max_iterations, "Maximum Sinkhorn iterations (scaling stages included)")
      ->capture_default_str();
  sub->add_option("--scaling", req.sinkhorn.scaling, "eps-scaling factor in (0, 1)")->capture_default_str();
  sub->add_flag("--no-eps-scaling", args->no_scaling, "Start directly at the target eps");
  sub->add_option("--overrelax", req.sinkhorn.overrelax,
                  "Over-relaxation omega in (0, 2) at the target eps: 1 = plain Sinkhorn; 1.5 with --scaling 0.5 "
                  "takes about 3x fewer iterations when eps is about 0.01 of the max cost (docs/math.md section 3.3)")
      ->capture_default_str();
  sub->add_flag("--quiet", args->quiet, "No progress lines on stderr");
  sub->add_flag("--resume", args->resume,
                "Continue an interrupted or killed solve from DIR/checkpoint.bin (same inputs and options)");
  sub->add_option("--checkpoint-every", args->checkpoint_every,
                  "Seconds between checkpoints of the potentials (0: every iteration; SIGINT / SIGTERM also "
                  "checkpoint, then stop)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  sub->add_flag("--plan", req.plan, "Also write the dense plan DIR/plan.npy (n * m <= 2.5e7)");
  sub->add_option("--out", args->out, "Output directory (report.json, summary.json, f.npy, g.npy)")
      ->required();
  add_threads_option(*sub);
  sub->callback([args] {
    install_stop_handlers();  // SIGINT / SIGTERM: checkpoint at the next iteration, then stop
    run_ot(*args);
  });
}

const Registrar ot_cmd_registrar{"ot", 30, add_ot};
}  // namespace

}  // namespace attnflow::cli
