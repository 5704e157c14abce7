// The one job lifecycle behind every command that writes an output directory (run, demo, icl,
// sweep, fit, largeprompt, ot, apply): output-directory creation and refusal, staging and the
// final commit, "is this finished", resume, clean-up of what a failed or killed job left, the
// summary.json header, progress, and stop requests (SIGINT, SIGTERM).
//
// Two shapes of job:
//   staged (resumable = false): files are written into "<out>.tmp.<pid>" next to <out> and
//     moved into <out> by commit(), after the last one was written. A failure (or a kill)
//     before commit leaves no file in <out>.
//   in place (resumable = true: run, icl, sweep, ot): <out> itself holds the in-progress state
//     (checkpoint.bin, the streamed tables), so that a killed job can be resumed; summary.json,
//     written last, marks it finished. A fresh job that fails removes the files it wrote (and
//     <out> if it created it); an interrupted or resumed one keeps its state for --resume.
// Either way <out> must be absent, empty, or hold this command's own earlier output: a
// directory with anything else in it is refused, and nothing the job did not write is ever
// removed or replaced (a staged job replaces only the names in `outputs`).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/run/progress.hpp"

namespace attnflow {

// ---- Stop requests ---------------------------------------------------------------------
// install_stop_handlers() makes SIGINT and SIGTERM request a stop instead of killing the
// process. Two modes:
//   checkpoint (run, icl, sweep, ot, demo): the job checks stop_signal() at each safe point, writes
//     a checkpoint there and returns interrupted (the CLI prints the command that resumes it).
//   abandon (fit, apply, largeprompt, attention, theory: nothing to resume): a watcher
//     thread removes every output in progress (PendingOutput in atomic_file.hpp: the staged
//     directory, atomic files' temporaries; a commit in progress finishes first), prints
//     "<label>: interrupted by SIGINT ..." on stderr and exits with 128 + signal.
// A second signal of the same kind kills at once (the default action).
enum class StopMode { checkpoint, abandon };
void install_stop_handlers(StopMode mode = StopMode::checkpoint, const std::string& label = "attnflow");
void request_stop(int signal);  // what the handler does (tests call it directly)
int stop_signal();              // the requesting signal, 0 = none
void clear_stop_request();

struct JobSpec {
  std::string kind;  // summary.json "kind" and the prefix of messages: "run", "ot", ...
  std::string out_dir;
  std::string version = "unknown";
  bool resumable = false;  // in place (see above); otherwise staged
  bool resume = false;     // continue the unfinished job in out_dir (resumable jobs only)
  // Every top-level name the job writes into out_dir ("config.toml", "snapshots", ...);
  // summary.json (and checkpoint.bin for a resumable job) are added by the job.
  std::vector<std::string> outputs;
  // What out_dir "already holds" in the refusal of a fresh resumable job ("run", "sweep").
  std::string noun = "run";
  // Staged jobs: out_dir may hold an earlier output of the same command, recognized by its
  // summary.json: "kind" equal to `kind`, or, when `marker` is set, `marker`: true.
  std::string marker;
};

class Job {
 public:
  // Checks out_dir and decides what the job does; creates nothing (it removes only stale
  // temporaries of killed attnflow processes, "<name>.tmp.<pid>" with <pid> gone). Throws
  // std::invalid_argument naming out_dir for a directory it must not write into.
  explicit Job(JobSpec spec);
  // A job neither committed nor kept (an exception went through) cleans up: see above.
  ~Job();
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  bool finished_before() const { return finished_before_; }  // resume found a finished job
  bool resuming() const { return resuming_; }                // resume found an unfinished one
  const JobSpec& spec() const { return spec_; }

  // Creates the directory the files go to (and cleans stale temporaries of a resumed job).
  void start();
  // Where the files go now (the staging directory or out_dir), and a file in it.
  const std::string& dir() const { return dir_; }
  std::string path(std::string_view name) const;

  // The checkpoint of a resumable job (dir()/checkpoint.bin), and whether a resume has one to
  // continue from (false: it starts over).
  std::string checkpoint() const { return path("checkpoint.bin"); }
  bool has_checkpoint() const;
  // Refuses a resume whose resolved config differs from the one stored in the checkpoint.
  void require_same_config(const std::string& checkpoint_config, const std::string& resolved) const;

  // The summary.json header shared by every command: kind, attnflow_version, status.
  nlohmann::json summary(std::string_view status = "finished") const;
  // Writes dir()/summary.json (atomically); call it last, then commit().
  void write_summary(const nlohmann::json& summary);
  // Finishes the job: staged files move into out_dir; an in-place job drops checkpoint.bin.
  void commit();
  // Interrupted (stop request or test hook): keeps the in-progress state for --resume.
  void keep();

  // Progress reporting for the job (attnflow::Progress); `out` null = silent; lines start
  // with `label` (default: the kind).
  Progress progress(double total, std::FILE* out = stderr, int tty = -1, double min_interval = 2.0,
                    const std::string& label = {}) const;

 private:
  void abandon() noexcept;

  JobSpec spec_;
  std::string dir_;
  bool out_existed_ = false;
  bool finished_before_ = false;
  bool resuming_ = false;
  bool started_ = false;
  bool done_ = false;  // committed or kept
  std::vector<std::string> created_parents_;  // missing ancestors start() created, deepest first
  std::unique_ptr<PendingOutput> pending_;      // a staged job's directory, until committed
};

// The header alone, for commands without an output directory (theory ... prints JSON): kind,
// attnflow_version, status, and the device and precision of the kernel's reductions.
nlohmann::json summary_header(std::string_view kind, std::string_view version, std::string_view status);
// dir/summary.json exists and says "status": "finished".
bool summary_finished(const std::string& dir);

}  // namespace attnflow
