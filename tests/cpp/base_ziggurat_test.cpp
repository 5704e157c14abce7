// Tests of the ziggurat normal sampler used for in-context regression prompts: its law is
// N(0, 1) (moments, tails and the CDF at many points, each within a few standard errors of
// the exact value), and it is deterministic per seed and stream.
#include <cmath>
#include <vector>

#include "attnflow/base/ziggurat.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

// Every statistic below is an average of N i.i.d. terms: accept 5 standard errors.
constexpr double kZ = 5.0;
constexpr Index kN = 2'000'000;

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

TEST(Ziggurat, MomentsAndCdfAreStandardNormal) {
  Rng rng(42, 3);
  std::vector<double> x(kN);
  ziggurat_fill(rng, x.data(), kN);
  double m1 = 0, m2 = 0, m4 = 0;
  for (const double v : x) {
    m1 += v;
    m2 += v * v;
    m4 += v * v * v * v;
  }
  m1 /= kN;
  m2 /= kN;
  m4 /= kN;
  const double n = static_cast<double>(kN);
  EXPECT_NEAR(m1, 0.0, kZ * std::sqrt(1.0 / n));        // Var x = 1
  EXPECT_NEAR(m2, 1.0, kZ * std::sqrt(2.0 / n));        // Var x^2 = 2
  EXPECT_NEAR(m4, 3.0, kZ * std::sqrt(96.0 / n));       // Var x^4 = 105 - 9
  // CDF at points through the body, the layer edges and the tail beyond R = 3.44.
  for (const double t : {-4.0, -3.5, -2.0, -1.0, -0.3, 0.0, 0.5, 1.5, 2.5, 3.0, 3.6, 4.2}) {
    const double p = normal_cdf(t);
    double count = 0;
    for (const double v : x) count += v <= t ? 1.0 : 0.0;
    EXPECT_NEAR(count / n, p, kZ * std::sqrt(p * (1 - p) / n)) << "at " << t;
  }
}

TEST(Ziggurat, DeterministicPerStream) {
  Rng a(7, 1), b(7, 1), c(7, 2);
  std::vector<double> xa(1000), xb(1000), xc(1000);
  ziggurat_fill(a, xa.data(), 1000);
  ziggurat_fill(b, xb.data(), 1000);
  ziggurat_fill(c, xc.data(), 1000);
  EXPECT_EQ(xa, xb);
  EXPECT_NE(xa, xc);
}

}  // namespace
}  // namespace attnflow
