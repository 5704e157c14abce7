#include "attnflow/error.hpp"

#include <cmath>

namespace attnflow {

namespace {
std::string index_text(Index k, Index cols) {
  if (cols <= 1) return fmt::format("[{}]", k);
  return fmt::format("[{}, {}]", k / cols, k % cols);
}
}  // namespace

void require_finite(std::string_view context, std::string_view name, const double* data,
                    Index size, Index cols) {
  for (Index k = 0; k < size; ++k) {
    if (!std::isfinite(data[k])) {
      throw std::invalid_argument(fmt::format("{}: {}{} = {}, must be finite", context, name,
                                              index_text(k, cols), data[k]));
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

}  // namespace attnflow
