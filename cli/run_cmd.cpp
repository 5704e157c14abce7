// attnflow run CONFIG.toml [--out DIR] [--set key=value ...] [--resume]: the experiment
// runner. Parses arguments, builds the Config, calls attnflow::run_experiment.
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "attnflow/io/config.hpp"
#include "attnflow/run/job.hpp"
#include "attnflow/run/runner.hpp"
#include "commands.hpp"
#include "distributed.hpp"
#include "plot_hook.hpp"

namespace attnflow::cli {

namespace {

struct RunArgs {
  std::string config, out;
  std::vector<std::string> sets;
  bool resume = false, print_default = false, no_plots = false, quiet = false, split_points = false;
};

// Ensembles larger than this print one line of ranges at the end instead of a line per system.
constexpr std::size_t kSystemsPrinted = 8;

void print_result(const RunResult& r, const std::string& out) {
  if (r.already_finished) {
    fmt::print("{}: already finished (summary.json says so); nothing to do\n", out);
    return;
  }
  const auto names = observable_names();
  if (r.last.size() <= kSystemsPrinted) {
    for (const auto& row : r.last) {
      std::string text;
      for (std::size_t i = 0; i < names.size(); ++i) text += fmt::format(" {} {:.6g}", names[i], row.values[i]);
      fmt::print("t = {:g} system {}:{}\n", row.t, row.system, text);
    }
  } else {  // an ensemble: the range across systems, not one line per system
    std::string text;
    for (std::size_t i = 0; i < names.size(); ++i) {
      double lo = r.last.front().values[i], hi = lo;
      for (const auto& row : r.last) lo = std::min(lo, row.values[i]), hi = std::max(hi, row.values[i]);
      text += lo == hi ? fmt::format(" {} {:.6g}", names[i], lo) : fmt::format(" {} {:.6g}..{:.6g}", names[i], lo, hi);
    }
    fmt::print("t = {:g}, {} systems (min..max over the systems; statistics per time: ensemble.csv):{}\n",
               r.last.front().t, r.last.size(), text);
  }
  if (r.interrupted) return;  // reported by run_run
  fmt::print("wrote {} (config.toml, observables.csv, {}{}summary.json{}) in {:.2f} s\n", out,
             std::filesystem::exists(out + "/ensemble.csv") ? "ensemble.csv, " : "",
             std::filesystem::exists(out + "/final.npy") ? "final.npy, " : "",
             std::filesystem::exists(out + "/snapshots") ? ", snapshots/" : "", r.seconds);
}

void run_run(const RunArgs& a) {
  if (a.print_default) {
    fmt::print("{}", default_run_config_toml());
    return;
  }
  if (a.config.empty()) throw std::invalid_argument("run: CONFIG.toml is required (or --print-default-config)");
  Config cfg = Config::from_file(a.config);
  for (const auto& s : a.sets) cfg.set(s);
  const RunConfig rc = parse_run_config(cfg);
  RunOptions opt;
  opt.out_dir = a.out.empty() ? "runs/" + std::filesystem::path(a.config).stem().string() : a.out;
  opt.resume = a.resume;
  opt.stop_after_checkpoints = stop_after_from_env();
  opt.version = ATTNFLOW_VERSION;
  opt.comm = world();  // mpirun -np P: systems across ranks (cli/distributed.hpp)
  opt.split_points = a.split_points && opt.comm && opt.comm->size() > 1;
  if (a.quiet) opt.progress = nullptr;
  const RunResult r = run_experiment(rc, cfg.resolved(), opt);
  print_result(r, opt.out_dir);
  if (r.interrupted)
    std::exit(report_stopped("run", r.signal,
                             fmt::format("stopped after {} checkpoint(s) (ATTNFLOW_STOP_AFTER_CHECKPOINTS)",
                                         r.checkpoints), opt.out_dir));
  if (r.finished && !a.no_plots && is_writer()) run_plot_hook(opt.out_dir);
}

void add_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* sub = app.add_subcommand(
      "run", "Run the token dynamics of a TOML config (measure, model, integrator, observation, output) "
             "and write observables.csv, snapshots, final.npy and summary.json");
  sub->add_option("config", a->config, "TOML config (see --print-default-config)")->check(CLI::ExistingFile);
  sub->add_option("--out", a->out, "Output directory (default: runs/<config name>)");
  sub->add_option("--set", a->sets, "Override a key: --set model.beta=4 (repeatable)")->allow_extra_args(false);
  sub->add_flag("--resume", a->resume, "Continue a killed run from DIR/checkpoint.bin (same config)");
  sub->add_flag("--print-default-config", a->print_default, "Print the full default config with comments");
  sub->add_flag("--no-plots", a->no_plots, "Do not call python3 -m attnflow.plot at the end");
  sub->add_flag("--quiet", a->quiet, "No progress lines on stderr");
  sub->add_flag("--split-points", a->split_points,
                "Under mpirun, one system (sa or usa, n >= 32768): each rank holds only its rows of the tokens "
                "(docs/usage/mpi.md); without mpirun it changes nothing");
  add_threads_option(*sub);
  sub->callback([a] {
    install_stop_handlers();  // SIGINT / SIGTERM: checkpoint at the next observation, then stop
    run_run(*a);
  });
}

const Registrar run_cmd_registrar{"run", 2, add_run};

}  // namespace

}  // namespace attnflow::cli
