// attnflow fit CONFIG.toml --out DIR [--set key=value ...]: learn an in-context map.
// Writes DIR/config.toml, DIR/loss.csv (step, train_loss, test_loss), DIR/model.afm and
// DIR/summary.json ("kind": "fit").
#include <fmt/format.h>

#include <filesystem>
#include <memory>

#include "attnflow/io/config.hpp"
#include "attnflow/run/fit_run.hpp"
#include "commands.hpp"
#include "plot_hook.hpp"

namespace attnflow::cli {

namespace {

struct FitArgs {
  std::string config, out;
  std::vector<std::string> sets;
  bool print_default = false, no_plots = false, quiet = false;
};

void run_fit_cmd(const FitArgs& a) {
  if (a.print_default) {
    fmt::print("{}", default_fit_config_toml());
    return;
  }
  if (a.config.empty()) throw std::invalid_argument("fit: CONFIG.toml is required (or --print-default-config)");
  Config cfg = Config::from_file(a.config);
  for (const auto& s : a.sets) cfg.set(s);
  const FitConfig fc = parse_fit_config(cfg);
  const std::string out = a.out.empty() ? "runs/" + std::filesystem::path(a.config).stem().string() : a.out;
  const FitRunResult r = run_fit(fc, cfg.resolved(), out, ATTNFLOW_VERSION, a.quiet ? nullptr : stderr);
  fmt::print("fit {} ({}, {} parameters): train loss {:.6g}, test loss {:.6g} ({:.3g} of the identity map's)\n",
             to_string(fc.task.kind), to_string(fc.model.normalization), r.parameters,
             r.fit.final_train_loss, r.fit.final_test_loss, r.fit.final_test_loss / r.fit.identity_test_loss);
  if (!r.fit.finite) fmt::print("warning: {}\n", r.fit.message);
  fmt::print("wrote {} (config.toml, loss.csv, model.afm, summary.json) in {:.2f} s\n", out, r.seconds);
  if (!a.no_plots) run_plot_hook(out);
}

void add_fit(CLI::App& app) {
  auto a = std::make_shared<FitArgs>();
  CLI::App* sub = app.add_subcommand(
      "fit", "Fit a transformer (attention + MLP layers, softmax | sinkhorn | none) to a target in-context "
             "map on measures; writes loss.csv, model.afm and summary.json");
  sub->add_option("config", a->config, "TOML config (see --print-default-config)")->check(CLI::ExistingFile);
  sub->add_option("--out", a->out, "Output directory (default: runs/<config name>)");
  sub->add_option("--set", a->sets, "Override a config key: section.key=value (repeatable)");
  sub->add_flag("--print-default-config", a->print_default, "Print the documented default config and exit");
  sub->add_flag("--no-plots", a->no_plots, "Do not run the Python plot hook");
  sub->add_flag("--quiet", a->quiet, "No progress lines");
  add_threads_option(*sub);
  sub->callback([a] { run_fit_cmd(*a); });
}

const Registrar fit_cmd_registrar{"fit", 80, add_fit};

}  // namespace

}  // namespace attnflow::cli
