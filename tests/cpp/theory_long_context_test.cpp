// Long-context one-layer map (docs/math.md section 6): the finite-n cosine formula equals a direct
// attention layer (attnflow::attention on the exact equiangular configuration), the O(n)
// kernel computation equals both, and the three gamma limits are approached as n grows.
#include "attnflow/theory/long_context.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "attnflow/attention/attention.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/measure/sample.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

// Formula vs attention(): both are a few hundred double operations on O(1) numbers.
constexpr double kDirectRtol = 1e-12;

// Output cosines of one softmax attention layer at beta = gamma log n, all pairs (min, max).
std::pair<double, double> attention_cosines(Index n, double rho, double gamma) {
  const Measure mu(equiangular(n, n + 1, rho), "tokens");
  AttentionOptions opt;
  opt.beta = gamma * std::log(static_cast<double>(n));
  const Matrix out = self_attention(mu, opt).out;
  double lo = 2.0, hi = -2.0;
  for (Index i = 0; i < n; ++i)
    for (Index j = i + 1; j < n; ++j) {
      const double c = out.row(i).dot(out.row(j)) / (out.row(i).norm() * out.row(j).norm());
      lo = std::min(lo, c);
      hi = std::max(hi, c);
    }
  return {lo, hi};
}

TEST(TheoryLongContext, FormulaEqualsDirectAttention) {
  for (Index n : {2, 3, 10, 60})
    for (double rho : {0.0, 0.3, 0.8})
      for (double gamma_factor : {0.5, 1.0, 2.5}) {
        const double gamma = gamma_factor * long_context_gamma_c(rho);
        const auto [lo, hi] = attention_cosines(n, rho, gamma);
        const double formula = long_context_cosine(static_cast<double>(n), rho, gamma);
        if (n > 2) {
          EXPECT_NEAR(lo, hi, kDirectRtol) << "outputs stay equiangular";
        }
        EXPECT_NEAR(lo, formula, kDirectRtol * std::abs(formula))
            << "n=" << n << " rho=" << rho << " gamma=" << gamma;
        EXPECT_NEAR(long_context_direct(n, rho, gamma), formula, kDirectRtol * std::abs(formula));
      }
}

TEST(TheoryLongContext, KernelComputationEqualsFormulaAtLargeN) {
  // n = 1e5 through the kernel in O(n) memory; the lse differences lose ~log10(n) digits.
  constexpr double kLargeNRtol = 1e-10;
  for (double rho : {0.2, 0.6})
    for (double gamma_factor : {0.7, 1.0, 1.4}) {
      const double gamma = gamma_factor * long_context_gamma_c(rho);
      const double formula = long_context_cosine(1e5, rho, gamma);
      EXPECT_NEAR(long_context_direct(100000, rho, gamma), formula, kLargeNRtol * formula);
    }
}

TEST(TheoryLongContext, LimitsApproachedAsNGrows) {
  constexpr double kRoundoff = 1e-15;  // a few ulps of a cosine of order 1
  for (double rho : {0.1, 0.5, 0.9}) {
    const double gc = long_context_gamma_c(rho);
    EXPECT_DOUBLE_EQ(gc, 1.0 / (1.0 - rho));
    EXPECT_EQ(long_context_limit(rho, 0.5 * gc), 1.0);
    EXPECT_EQ(long_context_limit(rho, gc), 4.0 * rho / (1.0 + 3.0 * rho));
    EXPECT_EQ(long_context_limit(rho, 2.0 * gc), rho);
    EXPECT_EQ(long_context_regime(rho, 0.5 * gc), "collapse");
    EXPECT_EQ(long_context_regime(rho, gc), "critical");
    EXPECT_EQ(long_context_regime(rho, 2.0 * gc), "preserved");
    for (double gamma_factor : {0.5, 1.0, 2.0}) {
      const double gamma = gamma_factor * gc;
      const double limit = long_context_limit(rho, gamma);
      double previous = INFINITY;
      for (double n : {1e2, 1e4, 1e8, 1e16, 1e32}) {
        const double err = std::abs(long_context_cosine(n, rho, gamma) - limit);
        // Strictly closer each time, up to the round-off floor of a cosine near 1 (~1e-16).
        EXPECT_LT(err, previous + kRoundoff) << "rho=" << rho << " gamma=" << gamma << " n=" << n;
        previous = err;
      }
      // Below gamma_c, 1 - cos = (1 - rho)(a - b)^2 / den ~ n^{-2 (1 - gamma (1 - rho))}; at and
      // above it the error is O(1/n): all of them are at round-off by n = 1e32.
      EXPECT_LT(previous, 1e-12) << "rho=" << rho << " gamma=" << gamma;
    }
  }
}

TEST(TheoryLongContext, DirectIsBitIdenticalOnOneAndTwoThreads) {
  set_num_threads(1);
  const double one = long_context_direct(50000, 0.4, 1.3);
  set_num_threads(2);
  const double two = long_context_direct(50000, 0.4, 1.3);
  set_num_threads(0);
  EXPECT_EQ(one, two);
}

TEST(TheoryLongContext, RejectsBadInput) {
  EXPECT_TRUE(test::throws_with([] { long_context_cosine(1.0, 0.5, 1.0); },
                                "theory long-context: n = 1, must be >= 2"));
  EXPECT_TRUE(test::throws_with([] { long_context_cosine(10.0, 1.0, 1.0); },
                                "rho = 1, must be in [0, 1)"));
  EXPECT_TRUE(test::throws_with([] { long_context_direct(10, 0.5, -1.0); },
                                "gamma = -1, must be >= 0 and finite"));
}

}  // namespace
}  // namespace attnflow
