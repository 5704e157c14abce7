#include <algorithm>
#include "attnflow/base/error.hpp"

#include <cmath>

namespace attnflow {

namespace {
std::string index_text(Index k, Index cols) {
  if (cols <= 1) return fmt::format("[{}]", k);
  return fmt::format("[{}, {}]", k / cols, k % cols);
}
}  // namespace

std::string echoed_value(std::string_view text, std::size_t max_chars) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (out.size() >= max_chars) {
      out += fmt::format("... ({} bytes in all)", text.size());
      break;
    }
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) out.push_back(static_cast<char>(c));
    else if (c == '\n') out += "\\n";
    else out += fmt::format("\\x{:02x}", c);
  }
  return out;
}

void require_finite(std::string_view context, std::string_view name, const double* data,
                    Index size, Index cols, Index first_row) {
  for (Index k = 0; k < size; ++k) {
    if (!std::isfinite(data[k])) {
      throw std::invalid_argument(fmt::format("{}: {}{} = {}, must be finite", context, name,
                                              index_text(k + first_row * std::max<Index>(cols, 1), cols), data[k]));
    }
  }
}

void check_output_finite(std::string_view context, std::string_view name, const double* data,
                         Index size, Index cols, std::string_view likely_cause) {
  for (Index k = 0; k < size; ++k) {
    if (!std::isfinite(data[k])) {
      throw std::runtime_error(fmt::format("{}: output {}{} = {} is not finite ({})", context,
                                           name, index_text(k, cols), data[k], likely_cause));
    }
  }
}

void require_output_finite(std::string_view context, std::string_view name, const double* data,
                           Index size, Index cols, std::string_view cause, Index first_row) {
  for (Index k = 0; k < size; ++k) {
    if (!std::isfinite(data[k])) {
      throw std::invalid_argument(fmt::format("{}: output {}{} = {} is not finite ({})", context, name,
                                              index_text(k + first_row * std::max<Index>(cols, 1), cols), data[k],
                                              cause));
    }
  }
}

}  // namespace attnflow
