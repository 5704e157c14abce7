// Parameter sweeps: a runner config plus a [sweep] table of lists over any
// runner keys, e.g.  [sweep] model.beta = [1, 4, 9]  measure.seed = [0, 1]  model.gamma = [...]
// The grid is the Cartesian product (axes in the user's order: the order of the file, then of
// the --set overrides that add axes; the last varying fastest); each point
// is an ordinary run (runner.hpp) in DIR/points/point_NNNNNN, points run in parallel, and
// DIR/sweep.csv is one tidy table: point, the grid keys, then observables.csv's columns
// (ensemble points also give DIR/sweep_ensemble.csv: point, keys, then ensemble.csv's). A sweep
// over model.beta of ensembles runs as one job: points run in parallel, each point's systems
// on the batched path (ensemble.hpp), with [observe] per_system = false for compact output.
// Resumable: finished points are skipped, a half-done point continues from its checkpoint.
#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "attnflow/base/types.hpp"

namespace attnflow {

class Collective;

struct SweepAxis {
  std::string key;                  // "model.beta"
  std::vector<std::string> values;  // TOML text of each value, for Config::set ("4.0", "\"pre-ln\"")
  std::vector<std::string> labels;  // CSV form of each value ("4.0", "pre-ln")
};

struct SweepGrid {
  std::string name;      // config path, used in messages
  std::string base;      // the runner config (TOML text) without the [sweep] table
  std::vector<SweepAxis> axes;
  Index size() const;    // number of grid points (product of the axis lengths)
  // Point p's value index on each axis (row-major: the last axis varies fastest).
  std::vector<Index> coordinates(Index point) const;
};

// Splits a sweep config into the base and the axes, after applying the "key=value" overrides
// `sets` (the CLI's --set, e.g. "sweep.model.beta=[1, 2]" or "model.t_end=5"). The axes keep
// the order in which toml_text lists them; an axis only an override adds comes after, in the
// order of `sets`. Throws std::invalid_argument naming the key: a missing or empty [sweep]
// table, a value that is not a list of scalars, an empty list.
SweepGrid parse_sweep(const std::string& toml_text, const std::string& name,
                      const std::vector<std::string>& sets = {});

struct SweepOptions {
  std::string out_dir;
  bool resume = false;
  int jobs = 0;  // grid points run at once (0 = num_threads()); each then uses one kernel thread
  // Test hook: > 0 simulates a kill: once this many points have finished, the next point
  // stops after its first checkpoint and the sweep returns (CLI: ATTNFLOW_STOP_AFTER_POINTS).
  long stop_after_points = 0;
  std::FILE* progress = stderr;  // one line per finished point; null = silent
  std::string version = "unknown";
  // Several processes (collective.hpp; null or one process = this process alone): rank 0
  // creates the directory and writes the tables, every rank runs every size-th unfinished
  // point. The tables are byte-identical to one process's.
  const Collective* comm = nullptr;
};

struct SweepResult {
  Index points = 0;
  Index ran = 0;      // points run (or continued) by this call
  Index skipped = 0;  // points already finished before this call
  bool finished = false;
  bool interrupted = false;  // the test hook or a stop request (job.hpp) stopped it
  int signal = 0;            // the stop request's signal; 0 = none
  double seconds = 0.0;
};

// Validates every point's config first (nothing is written if one is bad), then runs them.
SweepResult run_sweep(const SweepGrid& grid, const SweepOptions& options);

}  // namespace attnflow
