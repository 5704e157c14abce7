// Errors: invalid input is a std::invalid_argument whose message names the argument, its
// value and the rule, as "context: name = value, must be rule" (docs/CONTRIBUTING.md, "Errors").
// Not converging is never an exception: it travels in result structs.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>

#include "attnflow/base/types.hpp"

namespace attnflow {

// Throws std::invalid_argument("context: name = value, must be rule").
template <typename T>
[[noreturn]] void throw_invalid(std::string_view context, std::string_view name, const T& value,
                                std::string_view rule) {
  throw std::invalid_argument(fmt::format("{}: {} = {}, must be {}", context, name, value, rule));
}

// Throws std::invalid_argument with a free-form message prefixed by the context.
[[noreturn]] inline void throw_message(std::string_view context, std::string_view message) {
  throw std::invalid_argument(fmt::format("{}: {}", context, message));
}

// A user-supplied value as it may be echoed in a message: bytes outside printable ASCII are
// escaped (\xNN), and text longer than `max_chars` is cut, saying how long it was (a garbage
// .npy header or a 10 MB string must not flood the terminal).
std::string echoed_value(std::string_view text, std::size_t max_chars = 80);

// Checks a scalar option: require(cond, "sinkhorn", "eps", eps, "> 0").
template <typename T>
void require(bool ok, std::string_view context, std::string_view name, const T& value,
             std::string_view rule) {
  if (!ok) throw_invalid(context, name, value, rule);
}

// Rejects NaN/Inf in an input array, naming the first bad entry. first_row: the row of the
// whole array where `data` starts (a process's part of points split across processes).
void require_finite(std::string_view context, std::string_view name, const double* data,
                    Index size, Index cols = 1, Index first_row = 0);
inline void require_finite(std::string_view context, std::string_view name, const Matrix& a, Index first_row = 0) {
  require_finite(context, name, a.data(), a.size(), a.cols(), first_row);
}
inline void require_finite(std::string_view context, std::string_view name, const Vector& a) {
  require_finite(context, name, a.data(), a.size(), 1);
}

// Checks an output array; a non-finite entry is a std::runtime_error naming the first bad
// index and the likely cause (never a silent NaN).
void check_output_finite(std::string_view context, std::string_view name, const double* data,
                         Index size, Index cols, std::string_view likely_cause);
// The same check as a std::invalid_argument (ValueError in Python), for outputs that can only
// be non-finite because finite inputs are too large (beta = 1e308, coordinates >= 1e155):
// `cause` names the real normalization and the input to change. first_row: as for require_finite.
void require_output_finite(std::string_view context, std::string_view name, const double* data,
                           Index size, Index cols, std::string_view cause, Index first_row = 0);

}  // namespace attnflow
