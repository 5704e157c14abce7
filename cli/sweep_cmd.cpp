// attnflow sweep CONFIG.toml --out DIR [--set key=value ...] [--resume] [--jobs N]: a grid of
// runner configs (a [sweep] table of lists), run in parallel, one tidy CSV.
#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <memory>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/io/config.hpp"
#include "attnflow/run/job.hpp"
#include "attnflow/run/sweep.hpp"
#include "commands.hpp"
#include "distributed.hpp"
#include "plot_hook.hpp"

namespace attnflow::cli {

namespace {

struct SweepArgs {
  std::string config, out;
  std::vector<std::string> sets;
  bool resume = false, no_plots = false, quiet = false;
  int jobs = 0;
};

void run_sweep_cmd(const SweepArgs& a) {
  // --set applies to the whole document, [sweep] lists included (--set sweep.model.beta=[1,2]);
  // the axes keep the file's order, then the order of the --set that add axes.
  const SweepGrid grid = parse_sweep(read_file(a.config), a.config, a.sets);
  SweepOptions opt;
  opt.out_dir = a.out.empty() ? "sweeps/" + std::filesystem::path(a.config).stem().string() : a.out;
  opt.resume = a.resume;
  opt.jobs = a.jobs;
  opt.version = ATTNFLOW_VERSION;
  opt.comm = world();  // mpirun -np P: points across ranks (cli/distributed.hpp)
  if (a.quiet) opt.progress = nullptr;
  if (const char* v = std::getenv("ATTNFLOW_STOP_AFTER_POINTS"); v && *v)
    opt.stop_after_points = std::strtol(v, nullptr, 10);
  fmt::print("sweep: {} grid points over", grid.size());
  for (const auto& ax : grid.axes) fmt::print(" {} ({})", ax.key, ax.values.size());
  fmt::print("\n");
  std::fflush(stdout);
  const SweepResult r = run_sweep(grid, opt);
  if (r.interrupted)
    std::exit(report_stopped("sweep", r.signal,
                             fmt::format("stopped after {} point(s) (ATTNFLOW_STOP_AFTER_POINTS)", r.ran),
                             opt.out_dir));
  fmt::print("wrote {}/sweep.csv ({} points: {} run, {} already done) in {:.2f} s\n", opt.out_dir, r.points, r.ran,
             r.skipped, r.seconds);
  if (!a.no_plots && is_writer()) run_plot_hook(opt.out_dir);
}

void add_sweep(CLI::App& app) {
  auto a = std::make_shared<SweepArgs>();
  CLI::App* sub = app.add_subcommand(
      "sweep", "Run a grid of runner configs: a [sweep] table of lists over any keys (model.beta, measure.n, "
               "model.gamma, measure.seed, ...); writes one tidy sweep.csv plus each point's run directory");
  sub->add_option("config", a->config, "TOML runner config with a [sweep] table")->required()->check(CLI::ExistingFile);
  sub->add_option("--out", a->out, "Output directory (default: sweeps/<config name>)");
  sub->add_option("--set", a->sets, "Override a key: --set model.t_end=5, --set sweep.model.beta=[1,2]")
      ->allow_extra_args(false);
  sub->add_flag("--resume", a->resume, "Continue a killed sweep: finished points are skipped");
  sub->add_option("--jobs", a->jobs, "Grid points run at once (default: --threads or all cores)")
      ->check(integer_in("--jobs", 1, kMaxThreads));
  sub->add_flag("--no-plots", a->no_plots, "Do not call python3 -m attnflow.plot at the end");
  sub->add_flag("--quiet", a->quiet, "No progress lines on stderr");
  add_threads_option(*sub);
  sub->callback([a] {
    install_stop_handlers();  // SIGINT / SIGTERM: every point checkpoints at its next observation
    run_sweep_cmd(*a);
  });
}

const Registrar sweep_cmd_registrar{"sweep", 3, add_sweep};

}  // namespace

}  // namespace attnflow::cli
