// Private to src/run: observables.csv streamed row by row (flushed after each observation so
// a killed run keeps its data), resumable by truncating to the length saved in a checkpoint.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "attnflow/run/runner.hpp"

namespace attnflow::detail {

class ObservablesCsv {
 public:
  // Truncates `path` to `keep_bytes` (0 = start afresh) and appends from there; writes the
  // header when the file is empty.
  ObservablesCsv(const std::string& path, std::uint64_t keep_bytes, const std::vector<std::string>& columns);
  ~ObservablesCsv();
  ObservablesCsv(const ObservablesCsv&) = delete;
  ObservablesCsv& operator=(const ObservablesCsv&) = delete;

  void write(const std::vector<ObservationRow>& rows);  // appends and flushes
  std::uint64_t bytes() const { return bytes_; }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  std::uint64_t bytes_ = 0;
};

}  // namespace attnflow::detail
