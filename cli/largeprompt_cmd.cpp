// attnflow largeprompt CONFIG.toml --out DIR [--set key=value ...]: concentration of the
// large-prompt softmax operator in the prompt length (docs/math.md section 7). Writes
// DIR/config.toml, concentration.csv and summary.json (log-log slopes with 95% bands).
// Argument parsing only; the work is attnflow::run_largeprompt.
#include <fmt/format.h>

#include <memory>
#include <stdexcept>

#include "attnflow/io/config.hpp"
#include "attnflow/run/icl_run.hpp"
#include "commands.hpp"
#include "plot_hook.hpp"

namespace attnflow::cli {

namespace {

struct LargePromptArgs {
  std::string config, out;
  std::vector<std::string> sets;
  bool print_default = false, no_plots = false, quiet = false;
};

void run_largeprompt_cmd(const LargePromptArgs& a) {
  if (a.print_default) {
    fmt::print("{}", default_largeprompt_config_toml());
    return;
  }
  if (a.config.empty())
    throw std::invalid_argument("largeprompt: CONFIG.toml is required (or --print-default-config)");
  if (a.out.empty()) throw std::invalid_argument("largeprompt: --out DIR is required");
  Config cfg = Config::from_file(a.config);
  for (const auto& s : a.sets) cfg.set(s);
  const LargePromptRunConfig rc = parse_largeprompt_config(cfg);
  const IclRunSummary s = run_largeprompt(rc, cfg.resolved(), a.out, ATTNFLOW_VERSION, a.quiet);
  fmt::print("{}wrote {} (config.toml, concentration.csv, summary.json)\n", s.text, a.out);
  if (!s.finite) throw std::runtime_error(fmt::format("{} (see {}/summary.json)", s.message, a.out));
  if (!a.no_plots) run_plot_hook(a.out);
}

void add_largeprompt(CLI::App& app) {
  auto a = std::make_shared<LargePromptArgs>();
  CLI::App* sub = app.add_subcommand(
      "largeprompt", "Concentration of softmax attention on long prompts: error between the "
                     "L-token and the infinite-prompt operator (outputs, gradients in U and V) "
                     "as L grows, with log-log slopes; writes concentration.csv and summary.json");
  sub->add_option("config", a->config, "TOML config (see --print-default-config)")->check(CLI::ExistingFile);
  sub->add_option("--out", a->out, "Output directory");
  sub->add_option("--set", a->sets, "Override a key: --set tokens.law=rademacher (repeatable)")
      ->allow_extra_args(false);
  sub->add_flag("--print-default-config", a->print_default, "Print the full default config with comments");
  sub->add_flag("--no-plots", a->no_plots, "Do not call python3 -m attnflow.plot at the end");
  sub->add_flag("--quiet", a->quiet, "No progress lines on stderr");
  add_threads_option(*sub);
  sub->callback([a] { run_largeprompt_cmd(*a); });
}

const Registrar largeprompt_cmd_registrar{"largeprompt", 66, add_largeprompt};

}  // namespace

}  // namespace attnflow::cli
