// `attnflow ot` as a resumable job (docs/usage/ot.md): the entropic solve checkpoints its
// potentials (checkpoint.bin, OtCheckpoint) every `checkpoint_every` seconds and when asked to
// stop (SIGINT, SIGTERM: stop_signal(), job.hpp); `--resume` continues from the checkpoint and
// gives the uninterrupted solve's outputs bit for bit. The outputs, written last: f.npy,
// g.npy, plan.npy (when asked), report.json and summary.json. Under mpirun every process runs
// the job; rank 0 owns the directory and writes, and the processes agree to stop at the same
// iteration.
#pragma once

#include <cstdio>
#include <functional>
#include <string>

#include "attnflow/base/collective.hpp"
#include "attnflow/ot/ot_report.hpp"

namespace attnflow {

struct OtRunOptions {
  std::string out_dir;
  bool resume = false;
  // Seconds between checkpoints (0: after every iteration); the exact solve has none.
  double checkpoint_every = 600.0;
  // Test hook: > 0 stops right after writing this many checkpoints, as if the process were
  // killed there (the CLI reads ATTNFLOW_STOP_AFTER_CHECKPOINTS, as `attnflow run` does).
  long stop_after_checkpoints = 0;
  std::string version = "unknown";
  // The inputs and options as text: a resume whose fingerprint differs is refused.
  std::string fingerprint;
  std::FILE* progress = stderr;      // progress lines (null: none)
  const Collective* comm = nullptr;  // several processes: rank 0 writes
};

struct OtRunSummary {
  bool already_finished = false;  // a resume found summary.json finished: nothing done
  bool interrupted = false;       // stopped at a checkpoint (signal, or the test hook)
  int signal = 0;                 // the stopping signal (0: the test hook)
  long checkpoints = 0;           // written by this process
  OtReport report;                // the finished solve (seconds summed over resumes)
};

// Runs (or resumes) the solve `solve(request)` into options.out_dir: request.sinkhorn's
// on_iteration (progress) is set here, and on_checkpoint and resume for the checkpoints.
// Refuses a directory that holds anything else, and a resume with another fingerprint.
OtRunSummary run_ot_job(const std::function<OtReport(const OtRequest&)>& solve, OtRequest request,
                        const OtRunOptions& options);

}  // namespace attnflow
