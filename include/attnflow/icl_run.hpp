// Orchestration of `attnflow icl` and `attnflow largeprompt` (issue 6, SPEC.md section 7):
// TOML config -> typed options (validated, naming the key: "icl.toml: train.lr = 0, must be
// > 0"), the run, and the output directory (config.toml, risk.csv / concentration.csv,
// final.json, summary.json), all written atomically at the end so a failure leaves nothing.
// Schemas: --print-default-config of each command, documented in docs/usage/icl.md.
#pragma once

#include <functional>
#include <string>

#include "attnflow/concentration.hpp"
#include "attnflow/config.hpp"
#include "attnflow/icl.hpp"

namespace attnflow {

struct IclRunConfig {
  IclData data;
  IclTrainOptions train;
  double init_scale = 0.1;          // balanced start A = alpha Theta Theta^T / |.|_F, b = alpha
  std::uint64_t init_seed = 0;
  Index eval_prompts = 2048;        // final risk estimate on fresh prompts (finite L); 0 = skip
  double converged_tol = 1e-3;      // converged: |b S A - I|_F below this
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
};
IclRunSummary run_icl(const IclRunConfig& config, const std::string& resolved_toml,
                      const std::string& out_dir, const std::string& version, bool quiet = false);
IclRunSummary run_largeprompt(const LargePromptRunConfig& config,
                              const std::string& resolved_toml, const std::string& out_dir,
                              const std::string& version, bool quiet = false);

}  // namespace attnflow
