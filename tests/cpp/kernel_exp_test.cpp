// The kernel's vector exp against std::exp: relative accuracy over the whole range the kernel
// uses, exact zeros below the subnormal range, NaN kept.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "attnflow/kernel/kernel.hpp"

namespace attnflow {
namespace {

// Either variant of simd_exp.hpp (AVX-512 table + degree-6 minimax, measured 1.7 ulp; or
// degree-13 Taylor): a few ulp (2.2e-16 each).
constexpr double kEps = std::numeric_limits<double>::epsilon();
constexpr double kRelTol = 8 * kEps;

// Points from lo to hi in steps of `step`, and [-1, 1] in steps of 1e-4.
std::vector<double> grid(double lo, double hi, double step) {
  std::vector<double> x;
  for (double v = lo; v <= hi; v += step) x.push_back(v);
  for (double v = -1.0; v <= 1.0; v += 1e-4) x.push_back(v);
  return x;
}

// Largest relative error of y against ref(x) over the entries whose reference is positive
// and at least `floor`.
template <class Ref>
double worst_relative(const std::vector<double>& x, const std::vector<double>& y, Ref ref,
                      double floor = 0.0) {
  double worst = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double r = ref(x[i]);
    if (r > 0.0 && r >= floor) worst = std::max(worst, std::abs(y[i] - r) / r);
  }
  return worst;
}

TEST(KernelExp, MatchesStdExpToFewUlp) {
  std::vector<double> x = grid(-708.0, 709.0, 0.0137);
  x.push_back(0.0);
  x.push_back(-0.34657359027997264);  // -ln2/2, the reduction boundary
  std::vector<double> y = x;
  exp_inplace(y.data(), static_cast<Index>(y.size()));
  EXPECT_LE(worst_relative(x, y, [](double v) { return std::exp(v); }), kRelTol);
}

// Special inputs, 8 values (a full vector): infinities, values below the normal range,
// zero and NaN; `expect` has NaN where NaN must come out. Within 2 ulp relative, so zeros and
// exact powers of two must come out exactly.
template <class Fn>
void expect_special(Fn fn, std::vector<double> x, const std::vector<double>& expect) {
  fn(x.data(), static_cast<Index>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(expect[i]))
      EXPECT_TRUE(std::isnan(x[i])) << "entry " << i;
    else
      EXPECT_LE(std::abs(x[i] - expect[i]), 2 * kEps * expect[i]) << "entry " << i << ": " << x[i];
  }
}

TEST(KernelExp, SpecialValues) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  expect_special([](double* x, Index n) { exp_inplace(x, n); },
                 {-inf, -1e300, -800.0, -708.5, 0.0, nan, -745.0, -1.0},
                 {0.0, 0.0, 0.0, 0.0, 1.0, nan, 0.0, std::exp(-1.0)});
}

// simd_exp2 (log2 units, for the symmetric reduction): the same accuracy against std::exp2
// over the whole normal range, and its boundaries.
TEST(KernelExp2, MatchesStdExp2ToFewUlp) {
  std::vector<double> x = grid(-1022.0, 1023.0, 0.0197);
  for (int m = -64; m <= 64; ++m) {  // the table's and the rounding's boundaries, 1/32 apart
    x.push_back(m / 32.0);
    x.push_back(std::nextafter(m / 32.0, 1.0));
    x.push_back(std::nextafter(m / 32.0, -1.0));
  }
  std::vector<double> y = x;
  exp2_inplace(y.data(), static_cast<Index>(y.size()));
  EXPECT_LE(worst_relative(x, y, [](double v) { return std::exp2(v); }), kRelTol);
}

// The symmetric reduction's variant (finite arguments <= 1023): the same accuracy on normal
// results, and subnormal results within one subnormal ulp (2^-1074) of std::exp2 (the
// AVX-512 version; the portable one flushes them to 0, within 2^-1022).
TEST(KernelExp2, FiniteVariantKeepsSubnormals) {
  std::vector<double> x = grid(-1100.0, 1023.0, 0.0197);
  x.push_back(-4096.0);  // the reduction's padding
  std::vector<double> y = x;
  exp2_inplace(y.data(), static_cast<Index>(y.size()), true);
  const double normal = std::numeric_limits<double>::min();
  EXPECT_LE(worst_relative(x, y, [](double v) { return std::exp2(v); }, normal), kRelTol);
  double worst_sub = 0.0;
  for (size_t i = 0; i < x.size(); ++i)
    if (std::exp2(x[i]) < normal) worst_sub = std::max(worst_sub, std::abs(y[i] - std::exp2(x[i])));
#if defined(__AVX512F__)
  EXPECT_LE(worst_sub, std::numeric_limits<double>::denorm_min());
#else
  EXPECT_LE(worst_sub, std::numeric_limits<double>::min());
#endif
  EXPECT_EQ(y.back(), 0.0);
}

TEST(KernelExp2, SpecialValues) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  expect_special([](double* x, Index n) { exp2_inplace(x, n); },
                 {-inf, -1e300, -1100.0, -1022.5, 0.0, nan, 3.0, -1.0},
                 {0.0, 0.0, 0.0, 0.0, 1.0, nan, 8.0, 0.5});
}

}  // namespace
}  // namespace attnflow
