// attnflow animate RUN_DIR --out movie.mp4|movie.gif [--fps N]: a movie of the token trajectories
// (the counterpart of the published sphere movies). Thin: python3 -m attnflow.animate
// draws the frames with matplotlib and encodes them with ffmpeg; see docs/usage/view.md.
#include <memory>

#include "commands.hpp"
#include "python_module.hpp"

namespace attnflow::cli {

namespace {

struct AnimateArgs {
  std::string dir, out;
  int fps = 10, size = 640, max_frames = 300, max_tokens = 2000, system = 0, trail = 6;
};

void add_animate(CLI::App& app) {
  auto a = std::make_shared<AnimateArgs>();
  CLI::App* sub = app.add_subcommand(
      "animate", "Render a run's token trajectories over time as a movie (.mp4 or .gif; matplotlib + ffmpeg)");
  sub->add_option("run_dir", a->dir, "Output directory of attnflow run, demo or sweep point")
      ->required()->check(CLI::ExistingDirectory);
  sub->add_option("--out", a->out, "Movie to write: FILE.mp4 (H.264) or FILE.gif")->required();
  sub->add_option("--fps", a->fps, "Frames per second")->capture_default_str()->check(CLI::Range(1, 120));
  sub->add_option("--size", a->size, "Width and height in pixels")->capture_default_str()->check(CLI::Range(64, 4096));
  sub->add_option("--max-frames", a->max_frames, "Snapshots drawn (evenly spaced beyond)")
      ->capture_default_str()->check(CLI::Range(1, 100000));
  sub->add_option("--max-tokens", a->max_tokens, "Tokens drawn (every k-th token beyond)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--system", a->system, "System of an ensemble to draw")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--trail", a->trail, "Trail length in frames (0 = none)")->capture_default_str()
      ->check(CLI::Range(0, 1000));
  sub->callback([a] {
    run_python_command("animate", "attnflow.animate",
                       {a->dir, "--out", a->out, "--fps", std::to_string(a->fps), "--size", std::to_string(a->size),
                        "--max-frames", std::to_string(a->max_frames), "--max-tokens", std::to_string(a->max_tokens),
                        "--system", std::to_string(a->system), "--trail", std::to_string(a->trail)});
  });
}

const Registrar animate_cmd_registrar{"animate", 5, add_animate};

}  // namespace

}  // namespace attnflow::cli
