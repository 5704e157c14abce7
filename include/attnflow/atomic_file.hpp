// Atomic file writes: content goes to "<path>.tmp.<pid>" in the same directory, is flushed,
// then renamed over <path>, so a reader (or a resumed run) never sees a half-written file and
// a failed command leaves no output behind. A target that exists and is not a regular file
// (a directory, a device such as /dev/full, a FIFO, a socket) is refused, never replaced.
#pragma once

#include <string>
#include <string_view>

namespace attnflow {

// Test hook: ATTNFLOW_FAIL_AFTER_WRITES=K (environment) makes every write after the K-th of the
// process fail as on a full disk, so that tests can check what a failing command leaves.
void write_file_atomic(const std::string& path, std::string_view content);
std::string read_file(const std::string& path);
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

}  // namespace attnflow
