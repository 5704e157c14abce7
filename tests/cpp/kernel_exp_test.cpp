// The kernel's vector exp against std::exp: relative accuracy over the whole range the kernel
// uses, exact zeros below the subnormal range, NaN kept.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "attnflow/kernel.hpp"

namespace attnflow {
namespace {

// Either variant of simd_exp.hpp (AVX-512 table + degree-6 minimax, measured 1.7 ulp; or
// degree-13 Taylor): a few ulp (2.2e-16 each).
constexpr double kRelTol = 8 * std::numeric_limits<double>::epsilon();

TEST(KernelExp, MatchesStdExpToFewUlp) {
  std::vector<double> x;
  for (double v = -708.0; v <= 709.0; v += 0.0137) x.push_back(v);
  for (double v = -1.0; v <= 1.0; v += 1e-4) x.push_back(v);
  x.push_back(0.0);
  x.push_back(-0.34657359027997264);  // -ln2/2, the reduction boundary
  std::vector<double> y = x;
  exp_inplace(y.data(), static_cast<Index>(y.size()));
  double worst = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double ref = std::exp(x[i]);
    worst = std::max(worst, std::abs(y[i] - ref) / ref);
  }
  EXPECT_LE(worst, kRelTol);
}

TEST(KernelExp, SpecialValues) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> x = {-inf, -1e300, -800.0, -708.5, 0.0, std::nan(""), -745.0, -1.0};
  exp_inplace(x.data(), static_cast<Index>(x.size()));  // 8 values: a full vector
  EXPECT_EQ(x[0], 0.0);
  EXPECT_EQ(x[1], 0.0);
  EXPECT_EQ(x[2], 0.0);
  EXPECT_EQ(x[3], 0.0);
  EXPECT_EQ(x[4], 1.0);
  EXPECT_TRUE(std::isnan(x[5]));
  EXPECT_EQ(x[6], 0.0);
  EXPECT_NEAR(x[7], std::exp(-1.0), 1e-16);
}

// simd_exp2 (log2 units, for the symmetric reduction): the same accuracy against std::exp2
// over the whole normal range, and its boundaries.
TEST(KernelExp2, MatchesStdExp2ToFewUlp) {
  std::vector<double> x;
  for (double v = -1022.0; v <= 1023.0; v += 0.0197) x.push_back(v);
  for (double v = -1.0; v <= 1.0; v += 1e-4) x.push_back(v);
  for (int m = -64; m <= 64; ++m) {  // the table's and the rounding's boundaries, 1/32 apart
    x.push_back(m / 32.0);
    x.push_back(std::nextafter(m / 32.0, 1.0));
    x.push_back(std::nextafter(m / 32.0, -1.0));
  }
  std::vector<double> y = x;
  exp2_inplace(y.data(), static_cast<Index>(y.size()));
  double worst = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double ref = std::exp2(x[i]);
    worst = std::max(worst, std::abs(y[i] - ref) / ref);
  }
  EXPECT_LE(worst, kRelTol);
}

// The symmetric reduction's variant (finite arguments <= 1023): the same accuracy on normal
// results, and subnormal results within one subnormal ulp (2^-1074) of std::exp2 (the
// AVX-512 version; the portable one flushes them to 0, within 2^-1022).
TEST(KernelExp2, FiniteVariantKeepsSubnormals) {
  std::vector<double> x;
  for (double v = -1100.0; v <= 1023.0; v += 0.0197) x.push_back(v);
  for (double v = -1.0; v <= 1.0; v += 1e-4) x.push_back(v);
  x.push_back(-4096.0);  // the reduction's padding
  std::vector<double> y = x;
  exp2_inplace(y.data(), static_cast<Index>(y.size()), true);
  double worst = 0.0, worst_sub = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double ref = std::exp2(x[i]);
    if (ref >= std::numeric_limits<double>::min())
      worst = std::max(worst, std::abs(y[i] - ref) / ref);
    else
      worst_sub = std::max(worst_sub, std::abs(y[i] - ref));
  }
  EXPECT_LE(worst, kRelTol);
#if defined(__AVX512F__)
  EXPECT_LE(worst_sub, std::numeric_limits<double>::denorm_min());
#else
  EXPECT_LE(worst_sub, std::numeric_limits<double>::min());
#endif
  EXPECT_EQ(y.back(), 0.0);
}

TEST(KernelExp2, SpecialValues) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> x = {-inf, -1e300, -1100.0, -1022.5, 0.0, std::nan(""), 3.0, -1.0};
  exp2_inplace(x.data(), static_cast<Index>(x.size()));  // 8 values: a full vector
  EXPECT_EQ(x[0], 0.0);
  EXPECT_EQ(x[1], 0.0);
  EXPECT_EQ(x[2], 0.0);
  EXPECT_EQ(x[3], 0.0);
  EXPECT_EQ(x[4], 1.0);
  EXPECT_TRUE(std::isnan(x[5]));
  EXPECT_EQ(x[6], 8.0);
  EXPECT_EQ(x[7], 0.5);
}

}  // namespace
}  // namespace attnflow
