// Over-relaxed Sinkhorn (SinkhornOptions::overrelax, docs/math.md section 3.3): the plan of
// plain Sinkhorn and of the dense reference, in fewer iterations; the columns of every
// returned plan exact; checkpoints resumed bit for bit at relaxed and plain iterations; refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "attnflow/base/parallel.hpp"
#include "attnflow/ot/divergence.hpp"
#include "attnflow/ot/ot.hpp"
#include "ot_dense_reference.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace overrelax_test {

using test::all_close;
using test::throws_with;

// Uniform points in the unit square, eps = 0.01 of the max cost (about 2): the regime where
// plain Sinkhorn contracts by about 0.9 per iteration.
struct Problem {
  Matrix x, y;
  Vector a, b;
  double eps = 0.02;
};

Problem problem(Index n, Index m, std::uint64_t seed) {
  Rng rng(seed);
  Problem p;
  p.x = Matrix(n, 2);
  p.y = Matrix(m, 2);
  for (Index i = 0; i < n; ++i) p.x.row(i) << rng.uniform(), rng.uniform();
  for (Index j = 0; j < m; ++j) p.y.row(j) << rng.uniform(), rng.uniform();
  p.a = test::random_weights(n, rng);
  p.b = test::random_weights(m, rng);
  return p;
}

SinkhornOptions options(double eps, double omega, double tol = 1e-9) {
  SinkhornOptions o;
  o.eps = eps;
  o.tol = tol;
  o.overrelax = omega;
  return o;
}

bool same(const Vector& u, const Vector& v) {
  return u.size() == v.size() && std::memcmp(u.data(), v.data(), sizeof(double) * u.size()) == 0;
}

TEST(OtOverrelax, SamePlanAsDenseReferenceInFewerIterations) {
  const Problem p = problem(300, 250, 5);
  const TransportCost cost = TransportCost::sqeuclidean(p.x, p.y);
  const SinkhornResult plain = sinkhorn(p.a, p.b, cost, options(p.eps, 1.0));
  const SinkhornResult fast = sinkhorn(p.a, p.b, cost, options(p.eps, 1.6));
  ASSERT_TRUE(plain.converged) << plain.message;
  ASSERT_TRUE(fast.converged) << fast.message;
  EXPECT_EQ(plain.stages, fast.stages);
  // At this eps plain Sinkhorn spends most iterations at the target; 1.6 needs under half.
  EXPECT_LT(fast.iterations - fast.stages, (plain.iterations - plain.stages) / 2)
      << plain.iterations << " plain, " << fast.iterations << " over-relaxed";
  // The same plan as the dense double-precision reference, to the tolerance's order.
  const Matrix c = test::dense_sqeuclidean(p.x, p.y);
  const Matrix ref = test::dense_sinkhorn_plan(c, p.a, p.b, p.eps, 1e-12);
  const Matrix pi = transport_plan(cost, fast);
  EXPECT_LE((pi - ref).cwiseAbs().sum(), 1e-8);
  EXPECT_NEAR(fast.cost, plain.cost, 1e-8 * plain.cost);
  // The plan returned has exact columns (a plain g-update last) and the reported row error.
  EXPECT_TRUE(all_close(Vector(pi.colwise().sum().transpose()), p.b, 0.0, 1e-15 * 250));
  const double rows = (pi.rowwise().sum() - p.a).cwiseAbs().sum();
  EXPECT_LE(fast.marginal_error, 1e-9);
  EXPECT_NEAR(rows, fast.marginal_error, 1e-12);
}

TEST(OtOverrelax, StoppedAtMaxIterationsReturnsExactColumnsAndItsTrueError) {
  const Problem p = problem(200, 150, 6);
  const TransportCost cost = TransportCost::sqeuclidean(p.x, p.y);
  SinkhornOptions o = options(p.eps, 1.6);
  const SinkhornResult whole = sinkhorn(p.a, p.b, cost, o);
  ASSERT_TRUE(whole.converged);
  o.max_iterations = whole.stages + 4;  // its last g-update is relaxed (from stages + 1 on)
  const SinkhornResult r = sinkhorn(p.a, p.b, cost, o);
  EXPECT_FALSE(r.converged);
  EXPECT_EQ(r.iterations, whole.stages + 4);
  EXPECT_NE(r.message.find("not converged after"), std::string::npos) << r.message;
  const Matrix pi = transport_plan(cost, r);
  EXPECT_TRUE(all_close(Vector(pi.colwise().sum().transpose()), p.b, 0.0, 1e-15 * 150));
  const double rows = (pi.rowwise().sum() - p.a).cwiseAbs().sum();
  EXPECT_GT(rows, o.tol);
  EXPECT_NEAR(rows, r.marginal_error, 1e-9 * rows);
}

TEST(OtOverrelax, ResumedAtRelaxedAndPlainIterationsEqualsUninterruptedBitForBit) {
  const Problem p = problem(120, 90, 7);
  const TransportCost cost = TransportCost::sqeuclidean(p.x, p.y);
  const SinkhornOptions opt = options(p.eps, 1.6);
  std::vector<bool> relaxed;  // per iteration, from 1
  SinkhornOptions watch = opt;
  watch.on_checkpoint = [&](const SinkhornIterate& it) {
    relaxed.push_back(it.relaxed);
    return false;
  };
  const SinkhornResult whole = sinkhorn(p.a, p.b, cost, watch);
  ASSERT_TRUE(whole.converged);
  ASSERT_EQ(static_cast<int>(relaxed.size()), whole.iterations);
  // The stages (the last one at the target eps) are plain, the measured iterations after them
  // relaxed, and the last one before the stop is plain again (its rows were within tol after a
  // relaxed g).
  for (int it = 1; it <= whole.stages; ++it) EXPECT_FALSE(relaxed[it - 1]) << it;
  EXPECT_TRUE(relaxed[whole.stages]);
  EXPECT_FALSE(relaxed.back());
  int plain_again = 0;  // a plain iteration after relaxed ones
  for (int it = whole.stages + 2; it <= whole.iterations; ++it)
    if (!relaxed[it - 1] && relaxed[it - 2]) plain_again = it;
  ASSERT_GT(plain_again, 0);
  for (int stop : {whole.stages + 3, plain_again - 1, plain_again}) {
    SinkhornResumePoint at;
    SinkhornOptions cut = opt;
    cut.on_checkpoint = [&](const SinkhornIterate& it) {
      at = {it.iteration, it.f, it.g, it.relaxed};
      return it.iteration == stop;
    };
    ASSERT_TRUE(sinkhorn(p.a, p.b, cost, cut).interrupted);
    EXPECT_EQ(at.relaxed, relaxed[stop - 1]) << stop;
    SinkhornOptions rest = opt;
    rest.resume = &at;
    const SinkhornResult r = sinkhorn(p.a, p.b, cost, rest);
    EXPECT_TRUE(same(r.f, whole.f) && same(r.g, whole.g)) << "stopped at " << stop;
    EXPECT_EQ(r.iterations, whole.iterations);
    EXPECT_EQ(std::memcmp(&r.marginal_error, &whole.marginal_error, sizeof(double)), 0);
  }
}

TEST(OtOverrelax, BitIdenticalOnOneAndTwoThreads) {
  const Problem p = problem(700, 600, 8);
  const TransportCost cost = TransportCost::sqeuclidean(p.x, p.y);
  set_num_threads(1);
  const SinkhornResult r1 = sinkhorn(p.a, p.b, cost, options(p.eps, 1.5, 1e-7));
  set_num_threads(2);
  const SinkhornResult r2 = sinkhorn(p.a, p.b, cost, options(p.eps, 1.5, 1e-7));
  set_num_threads(0);
  ASSERT_TRUE(r1.converged);
  EXPECT_TRUE(same(r1.f, r2.f) && same(r1.g, r2.g));
  EXPECT_EQ(r1.iterations, r2.iterations);
}

TEST(OtOverrelax, DivergenceRelaxesItsCrossTermAndRefusalsNameTheRule) {
  const Problem p = problem(80, 60, 9);
  const Measure mu(p.x, p.a, "mu"), nu(p.y, p.b, "nu");
  const SinkhornDivergence plain = sinkhorn_divergence(mu, nu, options(0.05, 1.0, 1e-11));
  const SinkhornDivergence fast = sinkhorn_divergence(mu, nu, options(0.05, 1.5, 1e-11));
  ASSERT_TRUE(plain.converged && fast.converged);
  EXPECT_NEAR(fast.value, plain.value, 1e-9);

  const TransportCost cost = TransportCost::sqeuclidean(p.x, p.y);
  for (double bad : {0.0, 2.0, -1.0, std::numeric_limits<double>::quiet_NaN()}) {
    EXPECT_TRUE(throws_with([&] { sinkhorn(p.a, p.b, cost, options(0.05, bad)); }, "sinkhorn: overrelax = "))
        << bad;
  }
  EXPECT_TRUE(throws_with([&] { sinkhorn(p.a, p.b, cost, options(0.05, 2.0)); },
                          "sinkhorn: overrelax = 2, must be in (0, 2) (1 = plain Sinkhorn)"));
  const TransportCost self = TransportCost::sqeuclidean(p.x, p.x);
  EXPECT_TRUE(throws_with([&] { sinkhorn_symmetric(p.a, self, options(0.05, 1.5)); },
                          "sinkhorn_symmetric: overrelax = 1.5, must be 1"));
}

}  // namespace overrelax_test
}  // namespace attnflow
