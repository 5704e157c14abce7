// Atomic file writes: content goes to "<path>.tmp.<pid>" in the same directory, is flushed,
// then renamed over <path>, so a reader (or a resumed run) never sees a half-written file and
// a failed command leaves no output behind.
#pragma once

#include <string>
#include <string_view>

namespace attnflow {

void write_file_atomic(const std::string& path, std::string_view content);
std::string read_file(const std::string& path);
// Creates a directory (and parents) if missing; throws with the path on failure.
void ensure_directory(const std::string& path);

}  // namespace attnflow
