// all_finite (finite.hpp): false exactly when an entry is infinite or NaN, for double and
// float, wherever the entry stands (the or-ed pass has no early exit to get wrong), and true
// for the extremes that are finite (largest, smallest subnormal, negative zero).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "attnflow/base/finite.hpp"

namespace attnflow {
namespace {

template <class T>
void check() {
  using L = std::numeric_limits<T>;
  std::vector<T> v(37);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<T>(i) - T(18.5);
  v[3] = L::max();
  v[4] = -L::max();
  v[5] = L::denorm_min();
  v[6] = -T(0);
  v[7] = L::min();
  EXPECT_TRUE(all_finite(v.data(), static_cast<Index>(v.size())));
  EXPECT_TRUE(all_finite(v.data(), 0));
  for (const T bad : {L::infinity(), -L::infinity(), L::quiet_NaN(), -L::quiet_NaN(), L::signaling_NaN()})
    for (const std::size_t at : {std::size_t{0}, std::size_t{16}, v.size() - 1}) {
      std::vector<T> w = v;
      w[at] = bad;
      EXPECT_FALSE(all_finite(w.data(), static_cast<Index>(w.size()))) << bad << " at " << at;
      EXPECT_EQ(all_finite(w.data(), static_cast<Index>(at)), true) << "before " << at;  // only the first `size`
    }
  for (std::size_t i = 0; i < v.size(); ++i) EXPECT_TRUE(std::isfinite(v[i]));  // the reference agrees
}

TEST(Finite, DoubleAndFloat) {
  check<double>();
  check<float>();
}

}  // namespace
}  // namespace attnflow
