// attnflow view RUN_DIR [--out FILE.html]: one self-contained HTML page (opens offline) showing a
// run, an ensemble or a sweep. Thin: the page is assembled by the Python package
// (python3 -m attnflow.view, which reads the run directory and inlines the viewer and its
// plotting library); see docs/usage/view.md.
#include <memory>

#include "commands.hpp"
#include "python_module.hpp"

namespace attnflow::cli {

namespace {

struct ViewArgs {
  std::string dir, out;
  int max_tokens = 2000, max_frames = 200, max_entries = 64;
};

void add_view(CLI::App& app) {
  auto a = std::make_shared<ViewArgs>();
  CLI::App* sub = app.add_subcommand(
      "view", "Write one self-contained HTML file (works offline) showing a run, ensemble or sweep: tokens on "
              "the circle/sphere (PCA for d > 3) over time with a slider, trails, clusters, observables");
  sub->add_option("run_dir", a->dir, "Output directory of attnflow run, demo or sweep")
      ->required()->check(CLI::ExistingDirectory);
  sub->add_option("--out", a->out, "HTML file to write (default: RUN_DIR/view.html)");
  sub->add_option("--max-tokens", a->max_tokens, "Tokens shown per system (every k-th token beyond)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--max-frames", a->max_frames, "Snapshots shown (evenly spaced beyond)")
      ->capture_default_str()->check(CLI::Range(2, 100000));
  sub->add_option("--max-entries", a->max_entries, "Systems or sweep points shown (the first ones)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  sub->callback([a] {
    std::vector<std::string> args{a->dir, "--max-tokens", std::to_string(a->max_tokens), "--max-frames",
                                  std::to_string(a->max_frames), "--max-entries", std::to_string(a->max_entries)};
    if (!a->out.empty()) args.insert(args.end(), {"--out", a->out});
    run_python_command("view", "attnflow.view", args);
  });
}

const Registrar view_cmd_registrar{"view", 4, add_view};

}  // namespace

}  // namespace attnflow::cli
