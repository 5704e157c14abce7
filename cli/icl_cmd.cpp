// attnflow icl CONFIG.toml --out DIR [--set key=value ...] [--resume]: in-context linear regression
// training (docs/math.md section 7): mini-batch SGD on fresh prompts of length L, or the
// infinite-prompt gradient flow (--set train.prompt=infinite). Writes DIR/config.toml,
// risk.csv, final.json, summary.json (checkpoint.bin while running; --resume continues from it).
// Argument parsing only; the work is attnflow::run_icl_job.
#include <fmt/format.h>

#include <cstdlib>
#include <memory>

#include "attnflow/io/config.hpp"
#include "attnflow/run/icl_run.hpp"
#include "attnflow/run/job.hpp"
#include "commands.hpp"
#include "plot_hook.hpp"

namespace attnflow::cli {

namespace {

struct IclArgs {
  std::string config, out;
  std::vector<std::string> sets;
  bool resume = false, print_default = false, no_plots = false, quiet = false;
};

void run_icl_cmd(const IclArgs& a) {
  if (a.print_default) {
    fmt::print("{}", default_icl_config_toml());
    return;
  }
  if (a.config.empty()) throw std::invalid_argument("icl: CONFIG.toml is required (or --print-default-config)");
  if (a.out.empty()) throw std::invalid_argument("icl: --out DIR is required");
  Config cfg = Config::from_file(a.config);
  for (const auto& s : a.sets) cfg.set(s);
  const IclRunConfig rc = parse_icl_config(cfg);
  IclRunOptions opt;
  opt.out_dir = a.out;
  opt.resume = a.resume;
  opt.stop_after_checkpoints = stop_after_from_env();
  opt.version = ATTNFLOW_VERSION;
  opt.quiet = a.quiet;
  const IclRunSummary s = run_icl_job(rc, cfg.resolved(), opt);
  if (ended_early("icl", s.already_finished, s.interrupted, s.signal, s.checkpoints, a.out)) return;
  fmt::print("{}wrote {} (config.toml, risk.csv, final.json, summary.json)\n", s.text, a.out);
  // Divergence is an error (exit status 1) naming the step; the directory keeps the finite part.
  if (!s.finite) throw std::runtime_error(fmt::format("{} (see {}/summary.json)", s.message, a.out));
  if (!a.no_plots) run_plot_hook(a.out);
}

void add_icl(CLI::App& app) {
  auto a = std::make_shared<IclArgs>();
  CLI::App* sub = app.add_subcommand(
      "icl", "In-context linear regression with one softmax (or linear) attention layer: SGD on "
             "fresh prompts of length L, or the infinite-prompt gradient flow; writes risk.csv, "
             "final.json (A, b) and summary.json");
  sub->add_option("config", a->config, "TOML config (see --print-default-config)")->check(CLI::ExistingFile);
  sub->add_option("--out", a->out, "Output directory");
  sub->add_option("--set", a->sets, "Override a key: --set train.prompt=infinite (repeatable)")
      ->allow_extra_args(false);
  sub->add_flag("--resume", a->resume, "Continue a killed run from DIR/checkpoint.bin (same config)");
  sub->add_flag("--print-default-config", a->print_default, "Print the full default config with comments");
  sub->add_flag("--no-plots", a->no_plots, "Do not call python3 -m attnflow.plot at the end");
  sub->add_flag("--quiet", a->quiet, "No progress lines on stderr");
  add_threads_option(*sub);
  sub->callback([a] {
    install_stop_handlers();  // SIGINT / SIGTERM: checkpoint at the next step, then stop
    run_icl_cmd(*a);
  });
}

const Registrar icl_cmd_registrar{"icl", 65, add_icl};

}  // namespace

}  // namespace attnflow::cli
