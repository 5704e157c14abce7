#include "attnflow/run/progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace attnflow {

Progress::Progress(double total, std::string label, std::FILE* out, int tty, double min_interval)
    : total_(total > 0.0 ? total : kOpenEnded),
      label_(std::move(label)),
      out_(out),
      tty_(tty < 0 ? (out != nullptr && ::isatty(fileno(out)) != 0) : tty == 1),
      min_interval_(min_interval),
      start_(std::chrono::steady_clock::now()) {}

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string Progress::format_seconds(double s) {
  if (!std::isfinite(s) || s < 0.0) return "?";
  if (s < 60.0) return fmt::format("{:.1f}s", s);
  const long r = std::lround(s);
  if (r < 3600) return fmt::format("{}m{:02d}s", r / 60, static_cast<int>(r % 60));
  return fmt::format("{}h{:02d}m", r / 3600, static_cast<int>((r % 3600) / 60));
}

std::string Progress::line(double done, const std::string& status) const {
  if (total_ == kOpenEnded) {
    const std::string el = format_seconds(elapsed());
    return tty_ ? fmt::format("\r{}: {} | {}\x1b[K", label_, status, el)
                : fmt::format("{}: {} (elapsed {})", label_, status, el);
  }
  const double frac = std::clamp(done / total_, 0.0, 1.0), el = elapsed();
  // ETA assumes the remaining work proceeds at the average rate so far.
  const std::string eta = frac > 0.0 ? format_seconds(el * (1.0 - frac) / frac) : "?";
  if (!tty_)
    return fmt::format("{}: {:5.1f}% {} (elapsed {}, eta {})", label_, 100.0 * frac, status,
                       format_seconds(el), eta);
  constexpr int kWidth = 24;
  const int filled = static_cast<int>(frac * kWidth);
  return fmt::format("\r{} [{}{}] {:5.1f}% {} | {} eta {}\x1b[K", label_, std::string(filled, '#'),
                     std::string(kWidth - filled, '.'), 100.0 * frac, status, format_seconds(el), eta);
}

void Progress::update(double done, const std::string& status) {
  if (!out_) return;
  const double el = elapsed();
  if (!tty_ && el - last_print_ < min_interval_) return;
  last_print_ = el;
  fmt::print(out_, "{}{}", line(done, status), tty_ ? "" : "\n");
  std::fflush(out_);
}

void Progress::finish(const std::string& status) {
  if (!out_) return;
  fmt::print(out_, "{}\n", line(total_ == kOpenEnded ? 0.0 : total_, status));
  std::fflush(out_);
}

}  // namespace attnflow
