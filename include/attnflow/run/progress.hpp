// Progress reporting for long runs: on a terminal a one-line bar redrawn in place with the
// elapsed time and an ETA (linear in the fraction done); otherwise (logs, pipes, tests) plain
// lines, at most one every `min_interval` seconds plus the final one, so logs stay short.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

namespace attnflow {

class Progress {
 public:
  static constexpr double kOpenEnded = 0.0;
  // total > 0 units of work; `label` starts every line; output goes to `out` (stderr by
  // default). `tty` < 0 detects whether `out` is a terminal; 0 / 1 force plain / bar mode.
  // total = kOpenEnded: work of unknown length (an iterative solver that stops on a tolerance):
  // lines carry the status and the elapsed time, no percentage, bar or ETA.
  Progress(double total, std::string label, std::FILE* out = stderr, int tty = -1,
           double min_interval = 2.0);
  // Reports `done` units (monotone) and a short status text ("t = 3.0 clusters 4 ...").
  void update(double done, const std::string& status);
  // Final line (newline in bar mode).
  void finish(const std::string& status);
  bool is_tty() const { return tty_; }

  // "1m05s", "3.2s", "2h01m": the ETA / elapsed format.
  static std::string format_seconds(double s);

 private:
  double elapsed() const;
  std::string line(double done, const std::string& status) const;

  double total_;  // 0: open-ended
  std::string label_;
  std::FILE* out_;
  bool tty_;
  double min_interval_;
  double last_print_ = -1e300;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace attnflow
