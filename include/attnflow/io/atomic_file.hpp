// Atomic file writes: content goes to "<path>.tmp.<pid>" in the same directory, is flushed,
// then renamed over <path>, so a reader (or a resumed run) never sees a half-written file and
// a failed command leaves no output behind. A target that exists and is not a regular file
// (a directory, a device such as /dev/full, a FIFO, a socket) is refused, never replaced.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace attnflow {

// Test hooks (environment): ATTNFLOW_FAIL_AFTER_WRITES=K makes every write after the K-th of
// the process fail as on a full disk, so that tests can check what a failing command leaves;
// ATTNFLOW_PAUSE_IN_WRITES=1 makes every write wait 60 s between its temporary and the rename,
// so that tests can interrupt a command while its output is half written.
void write_file_atomic(const std::string& path, std::string_view content);
std::string read_file(const std::string& path);
// The file's size and FNV-1a 64 hash (base/checksum.hpp), as "<size> bytes, fnv1a64 <hex>",
// read in blocks (never held whole): what a resumable job records of its inputs. Throws
// std::invalid_argument naming the file if it cannot be read.
std::string file_fingerprint(const std::string& path);
// Creates a directory (and parents) if missing; throws with the path on failure.
void ensure_directory(const std::string& path);

// The project's one temporary-name pattern: "<path>.tmp.<pid>" (atomic files, staged output
// directories). temp_name_pid returns the <pid> of a file name that matches it, or 0.
std::string temporary_name(const std::string& path);
long temp_name_pid(std::string_view file_name);
// The name matches the pattern and its process is gone (a leftover of a killed command).
bool is_stale_temporary(std::string_view file_name);
// Removes, under `dir` (recursively), the files and directories whose names match the temp
// pattern and whose process is gone: leftovers of a killed command. Nothing else is touched.
// Returns how many entries were removed.
int remove_stale_temporaries(const std::string& dir);

// ---- Outputs in progress ------------------------------------------------------------------
// Every path a command is writing and has not yet put in place (an atomic file's temporary, a
// staged job's directory) is registered while it exists. A command interrupted by SIGINT or
// SIGTERM without a checkpoint to keep (job.hpp, StopMode::abandon) removes them all before it
// exits, so an interrupted command leaves nothing behind; a SIGKILLed one leaves temporaries
// that the next job on the same directory removes (remove_stale_temporaries).
class PendingOutput {
 public:
  PendingOutput() = default;
  // Registers `path`; `note` is what the interruption message says of it (e.g. the --out
  // directory a staged job would have written).
  explicit PendingOutput(std::string path, std::string note = {});
  ~PendingOutput();  // unregisters (the path was renamed into place or removed)
  PendingOutput(const PendingOutput&) = delete;
  PendingOutput& operator=(const PendingOutput&) = delete;

 private:
  std::uint64_t id_ = 0;
};
// While the returned lock is held (a commit moving files into place) no interruption removes
// anything: the stop handler waits for the commit to finish.
std::unique_lock<std::recursive_mutex> defer_interruption();
// Removes every registered path (recursively for directories) and returns their notes (the
// non-empty ones). Leaves the registry locked for good: the process is about to exit, and a
// thread still writing blocks before it creates another file.
std::vector<std::string> remove_pending_outputs();

}  // namespace attnflow
