// Orchestration of `attnflow icl` and `attnflow largeprompt` (docs/math.md section 7):
// TOML config -> typed options (validated, naming the key: "icl.toml: train.lr = 0, must be
// > 0"), the run, and the output directory (config.toml, risk.csv / concentration.csv,
// final.json, summary.json), written atomically at the end; a failed fresh run leaves nothing.
// `attnflow icl` writes DIR/checkpoint.bin every train.checkpoint_every steps (checkpoint.hpp)
// and continues from it with --resume; the resumed run's risk.csv and final.json equal the
// uninterrupted run's byte for byte.
// Schemas: --print-default-config of each command, documented in docs/usage/icl.md.
#pragma once

#include <functional>
#include <string>

#include "attnflow/icl/concentration.hpp"
#include "attnflow/io/config.hpp"
#include "attnflow/icl/icl.hpp"

namespace attnflow {

struct IclRunConfig {
  IclData data;
  IclTrainOptions train;
  double init_scale = 0.1;          // balanced start A = alpha Theta Theta^T / |.|_F, b = alpha
  std::uint64_t init_seed = 0;
  Index eval_prompts = 2048;        // final risk estimate on fresh prompts (finite L); 0 = skip
  double converged_tol = 1e-3;      // converged: |b S A - I|_F below this
  long checkpoint_every = 1000;     // steps between checkpoints (0 = never)
};

IclRunConfig parse_icl_config(Config& config);
std::string default_icl_config_toml();

struct LargePromptRunConfig {
  ConcentrationOptions options;
};
LargePromptRunConfig parse_largeprompt_config(Config& config);
std::string default_largeprompt_config_toml();

// Progress lines go to stderr (attnflow::Progress); `quiet` silences them.
struct IclRunSummary {
  std::string text;  // a few lines for stdout
  bool finished = false;          // wrote risk.csv, final.json, summary.json
  bool interrupted = false;       // stopped by stop_after_checkpoints or a stop request (job.hpp)
  int signal = 0;                 // the stop request's signal; 0 = none
  bool already_finished = false;  // resume found a finished run: nothing done
  long checkpoints = 0;           // checkpoints written by this call
  // Status of a finished job, as in summary.json: finite = false when training diverged
  // (diverged_step names the first non-finite step, message says what); converged = finite
  // and |b S A - I|_F < converged_tol (largeprompt: every estimate finite).
  bool finite = true;
  bool converged = false;
  long diverged_step = -1;
  std::string message;
};

struct IclRunOptions {
  std::string out_dir;
  bool resume = false;  // continue from out_dir/checkpoint.bin (or start over if none yet)
  // Test hook: > 0 stops right after writing this many checkpoints, as if the process were
  // killed there; the CLI reads ATTNFLOW_STOP_AFTER_CHECKPOINTS (as `attnflow run` does).
  long stop_after_checkpoints = 0;
  std::string version = "unknown";
  bool quiet = false;
};

// Runs (or resumes) the training into options.out_dir. Refuses a directory that already holds
// a run unless resuming, and a resume whose resolved config differs from the checkpoint's.
// Throws std::invalid_argument before creating anything for a bad setup; if the run fails
// later, a directory this call created is removed again.
IclRunSummary run_icl_job(const IclRunConfig& config, const std::string& resolved_toml,
                          const IclRunOptions& options);
// A fresh run without the test hook (the Python binding's entry point).
IclRunSummary run_icl(const IclRunConfig& config, const std::string& resolved_toml,
                      const std::string& out_dir, const std::string& version, bool quiet = false);
IclRunSummary run_largeprompt(const LargePromptRunConfig& config,
                              const std::string& resolved_toml, const std::string& out_dir,
                              const std::string& version, bool quiet = false);

}  // namespace attnflow
