// `attnflow fit` and `attnflow apply` orchestration: the TOML schema of a fitting job
// ([task], [model], [train]) turned into TaskOptions / ModelSpec / FitOptions with errors naming
// the key, the job itself writing DIR/{config.toml, loss.csv, model.afm, summary.json}, and the
// model file on disk (format in model.hpp, written atomically). Schema in docs/usage/model.md.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

#include "attnflow/io/config.hpp"
#include "attnflow/model/model.hpp"
#include "attnflow/model/model_fit.hpp"
#include "attnflow/model/model_tasks.hpp"

namespace attnflow {

struct FitConfig {
  TaskOptions task;
  ModelSpec model;
  std::uint64_t model_seed = 1;  // initialization stream
  FitOptions fit;
};

// Reads every key (recording defaults so config.resolved() is complete), validates naming the
// key, and rejects unknown keys.
FitConfig parse_fit_config(Config& config);
// The fully commented default config (`attnflow fit --print-default-config`).
std::string default_fit_config_toml();

struct FitRunResult {
  FitResult fit;
  double seconds = 0.0;
  Index parameters = 0;
};

// Builds the task, initializes and fits the model, writes the outputs into out_dir (created
// if missing; files written atomically, only after the fit succeeded). Progress lines (each
// evaluation's losses) go to `progress` (null = silent).
FitRunResult run_fit(const FitConfig& config, const std::string& resolved_toml,
                     const std::string& out_dir, const std::string& version, std::FILE* progress = nullptr);

// Model files: save writes atomically; load rejects corrupt, truncated or other-version files
// with a message naming the path.
void save_model(const std::string& path, const Model& model);
Model load_model(const std::string& path);

}  // namespace attnflow
