// The experiment runner, attnflow's main job (docs/ARCHITECTURE.md "The main job"):
// sample the initial measure of each system, advance the flow of docs/math.md section 5 to
// t_end, observe at t = k * every (and t_end), and write the output directory:
//   config.toml       the resolved configuration
//   observables.csv   one row per observation time and system (streamed, flushed per row);
//                     ensembles with [observe] per_system = false: the header only
//   ensemble.csv      ensembles (systems > 1): per time, count / mean / stderr / quantiles of
//                     every observable across systems (columns t, statistic, observables)
//   snapshots/snap_KKKKKK.npy   positions at observation K: (n, d) or (systems, n, d)
//   final.npy         final positions, same shapes
//   summary.json      "kind": "run", status, timing, final observables
//   checkpoint.bin    while running (checkpoint.hpp); a resumed run equals an uninterrupted one
// The directory is an in-place job (job.hpp): a stop request (SIGINT, SIGTERM, see
// install_stop_handlers) checkpoints at the next observation and returns interrupted.
// Everything is a pure function of the config: bit-identical on any thread count.
#pragma once

#include <array>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "attnflow/flow/integrate.hpp"
#include "attnflow/flow/observe.hpp"
#include "attnflow/run/run_config.hpp"

namespace attnflow {

class Collective;
class StartCache;

// One observation of one system (the columns of observables.csv after t and system).
struct ObservationRow {
  double t = 0.0;
  Index system = 0;
  // In the order of observable_names() (observe.hpp); fixed size: an ensemble makes one row
  // per system at every observation, and a vector each was an allocation each.
  std::array<double, kObservableCount> values{};
};

struct RunOptions {
  std::string out_dir;
  bool resume = false;  // continue from out_dir/checkpoint.bin (or restart if none yet)
  // Test hook: > 0 stops right after writing this many checkpoints, as if the process were
  // killed there (no final.npy, no summary.json); the CLI reads ATTNFLOW_STOP_AFTER_CHECKPOINTS.
  long stop_after_checkpoints = 0;
  std::FILE* progress = stderr;  // null: silent
  int progress_tty = -1;         // -1 detect, 0 plain lines, 1 bar
  std::string label = "run";     // prefix of progress lines
  std::string version = "unknown";
  // Called after each observation with one row per system (the demo prints them).
  std::function<void(const std::vector<ObservationRow>&)> on_observation;
  // Several processes (collective.hpp; null or one = this one alone): each advances and
  // observes a contiguous block of the systems; rank 0 gathers every observation and writes
  // the directory. Outputs are byte-identical to one process's; on_observation, progress and
  // the returned rows and states are rank 0's only. The ranks read the config and, on a
  // resume, out_dir/checkpoint.bin themselves (a shared file system across machines).
  const Collective* comm = nullptr;
  // With comm and one system (`attnflow run --split-points`): each process holds only its rows
  // of the state (FlowOptions::split), instead of the whole state with the kernel passes split.
  // Rank 0 gathers the rows at each observation to observe and write them (the same files, bit
  // for bit). Refused, naming the option, where flow_split_refusal() refuses, for an ensemble
  // and for another device than the CPU.
  bool split_points = false;
  // The sweep's shared starts (start_cache.hpp; null: none): the systems start from the
  // points (or, on the reduced path, the span form) another run left there for the same
  // measure, seed and systems, or sample them and leave them there. The outputs are the same,
  // byte for byte, with or without.
  StartCache* starts = nullptr;
  // Observation times handed to the ensemble per call (Ensemble::advance_observe_each) between
  // safe points; 0: automatic (up to 256 on the GPU path, where they go many per launch; one
  // on the CPU). Checkpoints and stop requests are taken between calls; snapshots make it one.
  // The outputs are the same, byte for byte, whatever it is.
  std::int64_t observations_per_call = 0;
  // Tests: the ensemble's GPU path with its block algorithm run on the host
  // (Ensemble::gpu_emulation), whatever the device and the build.
  bool gpu_emulation = false;
};

struct RunResult {
  bool finished = false;     // reached t_end and wrote final.npy + summary.json
  bool interrupted = false;  // stopped by stop_after_checkpoints or a stop request (job.hpp)
  int signal = 0;            // the stop request's signal (SIGINT, SIGTERM); 0 = none
  bool already_finished = false;  // resume found a finished run: nothing done
  std::int64_t observations = 0;  // observation times written so far
  long checkpoints = 0;           // checkpoints written by this call
  std::vector<IntegratorState> states;  // per system
  std::vector<ObservationRow> last;     // last observation of each system
  double seconds = 0.0;
  std::string device = "cpu";  // where the kernel's reductions ran (summary.json "device")
  bool points_split = false;   // the tokens were split across processes (summary.json "points_split")
};

// Column names of observables.csv: t, system, then observable_names() of observe.hpp
// (log_energy, energy, mean_cosine, min_cosine, clusters, largest_cluster, clustered_pairs,
// order). Pair observables skipped above observe.pair_limit read min_cosine = 2, clusters = -1.
std::vector<std::string> observable_columns();

// The initial positions of system k (k < systems): sampled from stream k of the seed, or
// read from measure.file. Public so that tests and the sweep can reproduce a run's start.
Matrix initial_positions(const RunConfig& cfg, Index system);

// Runs (or resumes) the experiment into options.out_dir. `resolved_config` is the TOML text
// written to config.toml and stored in checkpoints (a resume must match it). Throws
// std::invalid_argument for a bad setup (naming the key or path) before creating anything;
// if a fresh run fails later, the files it wrote are removed again (and the directory, if it
// created it); a directory that is not empty and holds no run is refused.
RunResult run_experiment(const RunConfig& cfg, const std::string& resolved_config, const RunOptions& options);

}  // namespace attnflow
