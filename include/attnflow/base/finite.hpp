// Finiteness of an array of floating-point values, branch-free: every entry's exponent field
// is tested (all ones: infinity or NaN) and the results or-ed, a pass that vectorizes. Eigen's
// allFinite stops at each entry and cost as much as the batched ensemble step it checked.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "attnflow/base/types.hpp"

namespace attnflow {

template <class T>
bool all_finite(const T* p, Index size) {
  static_assert(std::is_same_v<T, double> || std::is_same_v<T, float>, "all_finite: double or float");
  using Bits = std::conditional_t<std::is_same_v<T, double>, std::uint64_t, std::uint32_t>;
  constexpr Bits kExponent = std::is_same_v<T, double> ? Bits(0x7ff0000000000000ULL) : Bits(0x7f800000u);
  Bits bad = 0;
  for (Index i = 0; i < size; ++i) {
    Bits bits;
    std::memcpy(&bits, p + i, sizeof bits);
    bad |= static_cast<Bits>((bits & kExponent) == kExponent);
  }
  return bad == 0;
}

}  // namespace attnflow
