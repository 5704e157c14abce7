// Exact OT by LEMON's network simplex against closed forms: brute-force assignment (uniform,
// n = m, Birkhoff), 1-D quantile formulas for W1 and W2 with arbitrary weights, LP duality.
#include <gtest/gtest.h>

#include "attnflow/ot/exact_ot.hpp"
#include "ot_dense_reference.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::random_matrix;
using test::random_weights;
using test::throws_with;

// Masses are integers in units of 2^-40 (exact_ot.hpp): marginals and costs are exact up to
// n * 2^-40 ~ 1e-11 of the cost scale.
constexpr double kMassTol = 1e-10;
constexpr double kCostTol = 1e-10;

TEST(OtExact, MatchesBruteForceAssignment) {
  Rng rng(31);
  for (int trial = 0; trial < 5; ++trial) {
    const Matrix x = random_matrix(7, 2, rng), y = random_matrix(7, 2, rng);
    const Matrix c = test::dense_sqeuclidean(x, y);
    const ExactOtResult r = exact_ot(Vector(), Vector(), c);
    ASSERT_TRUE(r.converged) << r.message;
    EXPECT_NEAR(r.cost, test::brute_force_assignment(c), kCostTol);
  }
}

TEST(OtExact, OneDimensionalClosedFormsWithWeights) {
  Rng rng(32);
  for (int trial = 0; trial < 5; ++trial) {
    const Matrix x = random_matrix(23, 1, rng), y = random_matrix(17, 1, rng, 2.0);
    const Vector a = random_weights(23, rng), b = random_weights(17, rng);
    const Measure mu(x, a), nu(y, b);
    const double w1 = wasserstein(mu, nu, 1);
    const double w2 = wasserstein(mu, nu, 2);
    EXPECT_NEAR(w1, test::wasserstein_1d_pow(x.col(0), a, y.col(0), b, 1), kCostTol);
    EXPECT_NEAR(w2 * w2, test::wasserstein_1d_pow(x.col(0), a, y.col(0), b, 2), kCostTol);
  }
}

TEST(OtExact, PlanMarginalsAndStrongDuality) {
  Rng rng(33);
  const Matrix x = random_matrix(40, 3, rng), y = random_matrix(30, 3, rng);
  const Vector a = random_weights(40, rng), b = random_weights(30, rng);
  const Matrix c = test::dense_sqeuclidean(x, y);
  const ExactOtResult r = exact_ot(a, b, c);
  ASSERT_TRUE(r.converged);
  const Matrix pi = r.dense_plan();
  EXPECT_TRUE(test::all_close(Vector(pi.rowwise().sum()), a, 0.0, kMassTol));
  EXPECT_TRUE(test::all_close(Vector(pi.colwise().sum().transpose()), b, 0.0, kMassTol));
  EXPECT_LE(r.marginal_error, 70 * kMassTol);
  EXPECT_LE(static_cast<Index>(r.plan.size()), 40 + 30 - 1);  // a vertex of the polytope
  EXPECT_NEAR(r.cost, (pi.array() * c.array()).sum(), kCostTol);
  // Dual feasibility f_i + g_j <= C_ij, equality on the support, and a.f + b.g = cost.
  // Costs are solved in quanta of max|C| 2^-40; potentials are feasible up to two quanta.
  const double q = 2.0 * r.cost_quantum;
  EXPECT_NEAR(r.cost_quantum, c.maxCoeff() / 1099511627776.0, 1e-30);
  for (Index i = 0; i < 40; ++i)
    for (Index j = 0; j < 30; ++j) EXPECT_LE(r.f[i] + r.g[j], c(i, j) + q);
  for (const PlanEntry& e : r.plan) EXPECT_NEAR(r.f[e.i] + r.g[e.j], c(e.i, e.j), q);
  EXPECT_NEAR(a.dot(r.f) + b.dot(r.g), r.cost, kCostTol);
}

TEST(OtExact, SizeLimitAndBadInput) {
  EXPECT_TRUE(throws_with([] { exact_ot(Vector(), Vector(), Matrix::Zero(2001, 2000)); },
                          "exact_ot: n * m = 2001 * 2000 = 4002000, must be <= 4000000"));
  Matrix c = Matrix::Ones(3, 2);
  EXPECT_TRUE(throws_with([&] { exact_ot(Vector::Ones(2), Vector(), c); },
                          "exact_ot: a: weights size = 2, must equal the number of points (3)"));
  c(1, 1) = NAN;
  EXPECT_TRUE(throws_with([&] { exact_ot(Vector(), Vector(), c); }, "exact_ot: cost[1, 1] = nan, must be finite"));
  const Measure mu(Matrix::Zero(2, 2)), nu(Matrix::Zero(2, 3));
  EXPECT_TRUE(throws_with([&] { wasserstein(mu, nu, 2); },
                          "exact_ot: mu has dimension 2 and nu has dimension 3, must be equal"));
  EXPECT_TRUE(throws_with([&] { wasserstein(mu, mu, 3); }, "exact_ot: p = 3, must be 1 or 2"));
}

}  // namespace
}  // namespace attnflow
