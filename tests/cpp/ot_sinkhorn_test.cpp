// Log-domain Sinkhorn (docs/math.md section 3) against the dense reference of
// ot_dense_reference.hpp, exact OT (eps -> 0), the product coupling (eps -> inf), invariances,
// status and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "attnflow/ot/divergence.hpp"
#include "attnflow/ot/exact_ot.hpp"
#include "attnflow/ot/ot.hpp"
#include "attnflow/base/parallel.hpp"
#include "ot_dense_reference.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::all_close;
using test::random_matrix;
using test::random_weights;
using test::throws_with;

// Both solvers run to a 1e-12 row violation; plans then agree to rounding of the
// exponentials (potentials of size cost/eps ~ 1e2 lose ~1e-14 relative each).
constexpr double kSolveTol = 1e-12;
constexpr double kPlanAtol = 1e-11;
constexpr double kPlanRtol = 1e-8;
// Costs are O(1) sums of n m terms computed in different orders.
constexpr double kCostRtol = 1e-9;

SinkhornOptions options(double eps, double tol = kSolveTol) {
  SinkhornOptions o;
  o.eps = eps;
  o.tol = tol;
  o.max_iterations = 100000;
  return o;
}

TEST(OtSinkhorn, SqeuclideanMatchesDenseReference) {
  Rng rng(11);
  const Matrix x = random_matrix(40, 3, rng), y = random_matrix(30, 3, rng, 1.5);
  const Vector a = random_weights(40, rng), b = random_weights(30, rng);
  const TransportCost cost = TransportCost::sqeuclidean(x, y);
  const double eps = 0.05 * cost.max_cost();
  const SinkhornResult r = sinkhorn(a, b, cost, options(eps));
  ASSERT_TRUE(r.converged) << r.message;
  EXPECT_LE(r.marginal_error, kSolveTol);
  const Matrix c = test::dense_sqeuclidean(x, y);
  const Matrix ref = test::dense_sinkhorn_plan(c, a, b, eps, kSolveTol);
  const Matrix pi = transport_plan(cost, r);
  EXPECT_TRUE(all_close(pi, ref, kPlanRtol, kPlanAtol));
  EXPECT_NEAR(r.cost, (ref.array() * c.array()).sum(), kCostRtol * r.cost);
  // Marginals: columns exact after the g-update, rows within tol.
  EXPECT_TRUE(all_close(Vector(pi.colwise().sum().transpose()), b, 0.0, 1e-15 * 30));
  EXPECT_LE((pi.rowwise().sum() - a).cwiseAbs().sum(), kSolveTol * 1.0001);
  // Entropic objective <C, pi> + eps KL(pi | a b^T) of the dense reference plan.
  double kl = 0.0;
  for (Index i = 0; i < 40; ++i)
    for (Index j = 0; j < 30; ++j) kl += ref(i, j) * std::log(ref(i, j) / (a[i] * b[j]));
  EXPECT_NEAR(r.objective, r.cost + eps * kl, kCostRtol * r.objective);
}

TEST(OtSinkhorn, BilinearAndDenseCostsMatchDenseReference) {
  Rng rng(12);
  const Matrix x = random_matrix(25, 4, rng), y = random_matrix(35, 4, rng);
  const Matrix q = random_matrix(2, 4, rng), k = random_matrix(2, 4, rng);
  const Vector a = random_weights(25, rng), b = random_weights(35, rng);
  const double beta = 0.7;
  const TransportCost bil = TransportCost::bilinear(x, y, beta, q, k);
  const Matrix c = -beta * (x * q.transpose()) * (y * k.transpose()).transpose();
  for (Index i = 0; i < 25; i += 7)
    for (Index j = 0; j < 35; j += 9) EXPECT_NEAR(bil(i, j), c(i, j), 1e-13 * (1 + std::abs(c(i, j))));
  const Matrix ref = test::dense_sinkhorn_plan(c, a, b, 1.0, kSolveTol);
  const SinkhornResult rb = sinkhorn(a, b, bil, options(1.0));
  ASSERT_TRUE(rb.converged) << rb.message;
  EXPECT_TRUE(all_close(transport_plan(bil, rb), ref, kPlanRtol, kPlanAtol));
  const TransportCost dense = TransportCost::dense(c);
  const SinkhornResult rd = sinkhorn(a, b, dense, options(1.0));
  ASSERT_TRUE(rd.converged) << rd.message;
  EXPECT_TRUE(all_close(transport_plan(dense, rd), ref, kPlanRtol, kPlanAtol));
  EXPECT_NEAR(rd.cost, (ref.array() * c.array()).sum(), kCostRtol * std::abs(rd.cost));
  EXPECT_NEAR(rb.cost, rd.cost, kCostRtol * std::abs(rd.cost));
}

// eps -> 0: <C, pi_eps> tends to the exact OT cost. For uniform weights
// 0 <= <C, pi_eps> - OT_0 <= eps KL(pi* | a b^T) <= eps log n; eps = 1e-4 of the cost scale must
// stay finite (every exponential is max-shifted) and within that bound.
TEST(OtSinkhorn, SmallEpsApproachesExactOt) {
  // A row violation tol lets the cost move by at most tol * max cost.
  constexpr double kTol = 1e-7;
  Rng rng(13);
  const Index n = 8;
  Matrix x(n, 2), y(n, 2);
  rng.fill_normal(x);
  rng.fill_normal(y);
  y.array() += 3.0;
  const TransportCost cost = TransportCost::sqeuclidean(x, y);
  const double cmax = cost.max_cost();
  const ExactOtResult exact = exact_ot(Vector(), Vector(), test::dense_sqeuclidean(x, y));
  ASSERT_TRUE(exact.converged);
  EXPECT_NEAR(exact.cost, test::brute_force_assignment(test::dense_sqeuclidean(x, y)), 1e-10);
  for (double rel : {1e-2, 1e-4}) {
    const double eps = rel * cmax;
    const SinkhornResult r = sinkhorn(Vector(), Vector(), cost, options(eps, kTol));
    ASSERT_TRUE(r.converged) << r.message;
    EXPECT_TRUE(std::isfinite(r.cost) && r.f.allFinite() && r.g.allFinite());
    const double gap = r.cost - exact.cost;
    EXPECT_GE(gap, -kTol * cmax) << "eps = " << eps;
    EXPECT_LE(gap, eps * std::log(double(n)) + kTol * cmax) << "eps = " << eps;
  }
  // Sinkhorn needs up to O(max C / eps) iterations at small eps: on 30 random points 2000
  // iterations do not reach 1e-7, which must be a reported status with finite, sensible output.
  Rng rng2(14);
  const Matrix x2 = random_matrix(30, 2, rng2), y2 = random_matrix(30, 2, rng2).array() + 3.0;
  const TransportCost cost2 = TransportCost::sqeuclidean(x2, y2);
  SinkhornOptions o = options(1e-4 * cost2.max_cost(), kTol);
  o.max_iterations = 2000;
  const SinkhornResult r2 = sinkhorn(Vector(), Vector(), cost2, o);
  EXPECT_FALSE(r2.converged);
  EXPECT_NE(r2.message.find("not converged after 2000 iterations"), std::string::npos);
  EXPECT_TRUE(std::isfinite(r2.cost) && r2.f.allFinite() && r2.g.allFinite());
  const double ot0 = exact_ot(Vector(), Vector(), test::dense_sqeuclidean(x2, y2)).cost;
  // Moving the violating mass costs at most marginal_error * max C.
  EXPECT_LE(std::abs(r2.cost - ot0), o.eps * std::log(30.0) + r2.marginal_error * cost2.max_cost());
}

// eps -> inf: pi -> a (x) b with |pi - a b^T| = O(max C / eps).
TEST(OtSinkhorn, LargeEpsGivesProductCoupling) {
  Rng rng(14);
  const Matrix x = random_matrix(20, 3, rng), y = random_matrix(15, 3, rng);
  const Vector a = random_weights(20, rng), b = random_weights(15, rng);
  const TransportCost cost = TransportCost::sqeuclidean(x, y);
  const double eps = 1e6 * cost.max_cost();
  const SinkhornResult r = sinkhorn(a, b, cost, options(eps));
  ASSERT_TRUE(r.converged);
  const Matrix prod = a * b.transpose();
  // |exp(t) - 1| <= 2|t| for |t| <= 1e-5 and t = (f + g - C)/eps, |t| <= 2 max C / eps.
  EXPECT_TRUE(all_close(transport_plan(cost, r), prod, 4e-6, 0.0));
}

TEST(OtSinkhorn, DuplicationAndPermutationInvariance) {
  Rng rng(15);
  const Matrix x = random_matrix(12, 2, rng), y = random_matrix(10, 2, rng);
  const Vector a = random_weights(12, rng), b = random_weights(10, rng);
  const double eps = 0.2;
  const SinkhornResult base = sinkhorn(a, b, TransportCost::sqeuclidean(x, y), options(eps));
  // Split atom 0 of x into two copies of half its weight.
  Matrix x2(13, 2);
  x2 << x, x.row(0);
  Vector a2(13);
  a2 << a, 0.5 * a[0];
  a2[0] *= 0.5;
  const SinkhornResult dup = sinkhorn(a2, b, TransportCost::sqeuclidean(x2, y), options(eps));
  EXPECT_NEAR(dup.cost, base.cost, kCostRtol * base.cost);
  EXPECT_NEAR(dup.objective, base.objective, kCostRtol * std::abs(base.objective));
  // Reverse the order of y and b: the plan's columns are permuted, the cost unchanged.
  const Matrix yr = y.colwise().reverse();
  const Vector br = b.reverse();
  const TransportCost cr = TransportCost::sqeuclidean(x, yr);
  const SinkhornResult perm = sinkhorn(a, br, cr, options(eps));
  EXPECT_NEAR(perm.cost, base.cost, kCostRtol * base.cost);
  const Matrix pi = transport_plan(TransportCost::sqeuclidean(x, y), base);
  EXPECT_TRUE(all_close(transport_plan(cr, perm), Matrix(pi.rowwise().reverse()), kPlanRtol, kPlanAtol));
}

TEST(OtSinkhorn, BitIdenticalOnOneAndTwoThreads) {
  Rng rng(16);
  const Matrix x = random_matrix(300, 3, rng), y = random_matrix(200, 3, rng);
  const TransportCost cost = TransportCost::sqeuclidean(x, y);
  set_num_threads(1);
  const SinkhornResult r1 = sinkhorn(Vector(), Vector(), cost, options(1.0, 1e-8));
  set_num_threads(2);
  const SinkhornResult r2 = sinkhorn(Vector(), Vector(), cost, options(1.0, 1e-8));
  set_num_threads(0);
  EXPECT_EQ(r1.iterations, r2.iterations);
  EXPECT_EQ(r1.cost, r2.cost);
  EXPECT_TRUE(r1.f == r2.f && r1.g == r2.g);
}

// A solve stopped at a checkpoint (on_checkpoint) and continued from it (resume), during the
// eps-scaling stages and at the target eps, twice in a row: the uninterrupted result bit for
// bit, and the interrupted one carries no cost pass.
TEST(OtSinkhorn, ResumedFromACheckpointEqualsUninterruptedBitForBit) {
  Rng rng(12);
  const Matrix x = random_matrix(90, 2, rng), y = random_matrix(70, 2, rng);
  const Vector a = random_weights(90, rng), b = random_weights(70, rng);
  const TransportCost cost = TransportCost::sqeuclidean(x, y);
  SinkhornOptions opt;
  opt.eps = 0.05;
  opt.tol = 1e-9;
  const SinkhornResult whole = sinkhorn(a, b, cost, opt);
  ASSERT_TRUE(whole.converged);
  ASSERT_GT(whole.stages, 5);
  auto same = [](const Vector& u, const Vector& v) {
    return u.size() == v.size() && std::memcmp(u.data(), v.data(), sizeof(double) * u.size()) == 0;
  };
  for (int stop : {3, whole.stages + 2}) {
    SinkhornResumePoint at;
    SinkhornOptions cut = opt;
    cut.on_checkpoint = [&](const SinkhornIterate& it) {
      at = {it.iteration, it.f, it.g};
      return it.iteration == stop;
    };
    const SinkhornResult first = sinkhorn(a, b, cost, cut);
    ASSERT_TRUE(first.interrupted);
    EXPECT_FALSE(first.converged);
    EXPECT_EQ(first.iterations, stop);
    EXPECT_TRUE(std::isnan(first.marginal_error));
    // A second stop five iterations later, then the rest.
    const SinkhornResumePoint from = at;
    cut.resume = &from;
    cut.on_checkpoint = [&](const SinkhornIterate& it) {
      at = {it.iteration, it.f, it.g};
      return it.iteration == stop + 5;
    };
    ASSERT_TRUE(sinkhorn(a, b, cost, cut).interrupted);
    const SinkhornResumePoint again = at;
    SinkhornOptions rest = opt;
    rest.resume = &again;
    const SinkhornResult r = sinkhorn(a, b, cost, rest);
    EXPECT_FALSE(r.interrupted);
    EXPECT_TRUE(same(r.f, whole.f) && same(r.g, whole.g)) << "stopped at " << stop;
    EXPECT_EQ(r.iterations, whole.iterations);
    EXPECT_EQ(std::memcmp(&r.cost, &whole.cost, sizeof(double)), 0);
    EXPECT_EQ(std::memcmp(&r.marginal_error, &whole.marginal_error, sizeof(double)), 0);
  }
  // A resume point of the wrong sizes, or with a warm start, is refused.
  const SinkhornResumePoint bad{2, Vector::Zero(3), Vector::Zero(70)};
  SinkhornOptions wrong = opt;
  wrong.resume = &bad;
  EXPECT_TRUE(throws_with([&] { sinkhorn(a, b, cost, wrong); }, "resume point of 2 iterations with f (3)"));
  const Vector g0 = Vector::Zero(70);
  EXPECT_TRUE(throws_with([&] { sinkhorn(a, b, cost, wrong, &g0); }, "g_init and resume both given"));
}

TEST(OtSinkhorn, WarmStartConvergesAtOnceAndStatusReportsFailure) {
  Rng rng(17);
  const Matrix x = random_matrix(30, 3, rng), y = random_matrix(30, 3, rng);
  const TransportCost cost = TransportCost::sqeuclidean(x, y);
  const SinkhornResult r = sinkhorn(Vector(), Vector(), cost, options(0.5, 1e-10));
  ASSERT_TRUE(r.converged) << r.message;
  EXPECT_GT(r.stages, 1);  // eps-scaling ran
  const SinkhornOptions o = options(0.5, 1e-10);
  const SinkhornResult warm = sinkhorn(Vector(), Vector(), cost, o, &r.g);
  EXPECT_TRUE(warm.converged);
  EXPECT_LE(warm.iterations, 2);
  EXPECT_EQ(warm.stages, 1);
  SinkhornOptions few = options(0.001, 1e-14);
  few.eps_scaling = false;
  few.max_iterations = 3;
  const SinkhornResult bad = sinkhorn(Vector(), Vector(), cost, few);
  EXPECT_FALSE(bad.converged);
  EXPECT_EQ(bad.iterations, 3);
  EXPECT_GT(bad.marginal_error, 1e-14);
  EXPECT_NE(bad.message.find("not converged after 3 iterations"), std::string::npos) << bad.message;
  // max_iterations includes the eps-scaling stages: a longer schedule keeps its last stages.
  SinkhornOptions capped = options(2.0, 1e-8);
  const SinkhornResult full = sinkhorn(Vector(), Vector(), cost, capped);
  ASSERT_GT(full.stages, 3);
  capped.max_iterations = 3;
  const SinkhornResult cut = sinkhorn(Vector(), Vector(), cost, capped);
  EXPECT_EQ(cut.stages, 3);
  EXPECT_EQ(cut.iterations, 3);
  EXPECT_FALSE(cut.converged);
  EXPECT_NE(cut.message.find("not converged after 3 iterations"), std::string::npos) << cut.message;
}

TEST(OtSinkhorn, BadInputNamesArgumentValueAndRule) {
  Rng rng(18);
  const Matrix x = random_matrix(5, 3, rng), y = random_matrix(4, 3, rng);
  const TransportCost cost = TransportCost::sqeuclidean(x, y);
  EXPECT_TRUE(throws_with([&] { sinkhorn(Vector(), Vector(), cost, options(-0.1)); },
                          "sinkhorn: eps = -0.1, must be > 0"));
  EXPECT_TRUE(throws_with([&] { sinkhorn(Vector(), Vector(), cost, options(0.0)); },
                          "sinkhorn: eps = 0, must be > 0"));
  EXPECT_TRUE(throws_with([&] { sinkhorn(Vector(), Vector(), cost, options(0.1, 0.0)); },
                          "sinkhorn: tol = 0, must be > 0"));
  Vector neg = Vector::Ones(5);
  neg[2] = -1.0;
  EXPECT_TRUE(throws_with([&] { sinkhorn(neg, Vector(), cost, options(0.1)); },
                          "sinkhorn: a: weights[2] = -1, must be >= 0"));
  EXPECT_TRUE(throws_with([&] { sinkhorn(Vector(), Vector::Zero(4), cost, options(0.1)); },
                          "sinkhorn: b: total weight = 0, must be > 0"));
  EXPECT_TRUE(throws_with([&] { sinkhorn(Vector::Ones(3), Vector(), cost, options(0.1)); },
                          "weights size = 3, must equal the number of points (5)"));
  EXPECT_TRUE(throws_with([&] { TransportCost::sqeuclidean(x, random_matrix(4, 2, rng)); },
                          "ot: x has dimension 3 and y has dimension 2, must be equal"));
  Matrix xn = x;
  xn(1, 2) = NAN;
  EXPECT_TRUE(throws_with([&] { TransportCost::sqeuclidean(xn, y); }, "ot: x[1, 2] = nan, must be finite"));
  EXPECT_TRUE(throws_with([&] { parse_cost_type("cosine"); },
                          "ot: cost = \"cosine\", must be one of sqeuclidean, bilinear, dense"));
  SinkhornOptions o = options(0.1);
  o.scaling = 1.0;
  EXPECT_TRUE(throws_with([&] { sinkhorn(Vector(), Vector(), cost, o); },
                          "sinkhorn: scaling = 1, must be in (0, 1)"));
  const SinkhornResult r = sinkhorn(Vector(), Vector(), cost, options(0.1));
  EXPECT_TRUE(throws_with([&] { transport_plan(cost, r, 10); },
                          "ot: plan n * m = 5 * 4 = 20, must be <= 10"));
}

TEST(OtDivergence, ZeroForIdenticalPositiveOtherwise) {
  Rng rng(19);
  // Self-transport with scattered weights converges slowly at small eps (POT behaves the
  // same); eps = 2 on points of scale 1 converges in a few hundred iterations.
  const SinkhornOptions o = options(2.0, 1e-10);
  for (int trial = 0; trial < 5; ++trial) {
    const Measure mu(random_matrix(20, 2, rng), random_weights(20, rng));
    const Measure nu(random_matrix(25, 2, rng, 1.0 + 0.2 * trial), random_weights(25, rng));
    const SinkhornDivergence same = sinkhorn_divergence(mu, mu, o);
    EXPECT_TRUE(same.converged);
    EXPECT_EQ(same.value, 0.0);
    const SinkhornDivergence diff = sinkhorn_divergence(mu, nu, o);
    EXPECT_TRUE(diff.converged) << diff.message;
    EXPECT_GT(diff.value, 0.0) << "trial " << trial;
  }
  // A translation by t: |x - y - t|^2 = |x - y|^2 - 2<x - y, t> + |t|^2, and the linear terms
  // are absorbed by the potentials, so OT_eps(mu, mu + t) = OT_eps(mu, mu) + |t|^2 for every
  // eps (uniform weights, same mean shift) and S = |t|^2 exactly.
  const Matrix x = random_matrix(30, 2, rng);
  Matrix y = x;
  y.col(0).array() += 0.5;
  y.col(1).array() -= 0.2;
  const SinkhornDivergence tr = sinkhorn_divergence(Measure(x), Measure(y), options(0.5, 1e-11));
  ASSERT_TRUE(tr.converged) << tr.message;
  EXPECT_NEAR(tr.value, 0.29, 1e-9);
}

TEST(OtDivergence, BarycentricMapMatchesDensePlan) {
  Rng rng(20);
  const Matrix x = random_matrix(15, 3, rng), y = random_matrix(18, 3, rng);
  const Vector a = random_weights(15, rng), b = random_weights(18, rng);
  const TransportCost cost = TransportCost::sqeuclidean(x, y);
  const SinkhornResult r = sinkhorn(a, b, cost, options(0.3));
  const Matrix ref_plan = test::dense_sinkhorn_plan(test::dense_sqeuclidean(x, y), a, b, 0.3, kSolveTol);
  const Matrix ref = (ref_plan * y).array().colwise() / a.array();
  EXPECT_TRUE(all_close(barycentric_map(cost, r, y), ref, 1e-9, 1e-11));
}


// The engine (sinkhorn.hpp) itself: the symmetric update against the dense reference, the
// observer, the iteration conventions, and the one validate().
TEST(OtSinkhornEngine, SymmetricSolveMatchesDenseReferencePlanAndObjective) {
  Rng rng(51);
  const Matrix x = random_matrix(25, 2, rng);
  const Vector a = random_weights(25, rng);
  const double eps = 0.4;
  const TransportCost cost = TransportCost::sqeuclidean(x, x);
  const SinkhornResult r = sinkhorn_symmetric(a, cost, options(eps));
  ASSERT_TRUE(r.converged) << r.message;
  EXPECT_LE(r.marginal_error, kSolveTol);
  EXPECT_TRUE(r.f == r.g);  // one potential
  const Matrix c = test::dense_sqeuclidean(x, x);
  const Matrix ref = test::dense_sinkhorn_plan(c, a, a, eps, 1e-13);
  Matrix pi(25, 25);
  for (Index i = 0; i < 25; ++i)
    for (Index j = 0; j < 25; ++j)
      pi(i, j) = a[i] * a[j] * std::exp((r.f[i] + r.f[j] - c(i, j)) / eps);
  EXPECT_TRUE(all_close(pi, ref, kPlanRtol, kPlanAtol));
  EXPECT_TRUE(all_close(pi, Matrix(pi.transpose()), 0.0, 0.0));
  // Objective and cost equal the alternating solve's (same problem, same optimum).
  const SinkhornResult alt = sinkhorn(a, a, cost, options(eps));
  ASSERT_TRUE(alt.converged);
  EXPECT_NEAR(r.objective, alt.objective, kCostRtol * std::abs(alt.objective));
  EXPECT_NEAR(r.cost, alt.cost, kCostRtol * std::abs(alt.cost));
  EXPECT_NEAR(r.cost, (c.array() * ref.array()).sum(), kCostRtol * r.cost);
  EXPECT_TRUE(throws_with([&] { sinkhorn_symmetric(Vector(), TransportCost::sqeuclidean(x, random_matrix(3, 2, rng)), options(eps)); },
                          "sinkhorn: symmetric cost is 25 x 3, must be square"));
}

TEST(OtSinkhornEngine, ObserverSeesEveryIterationAndTheConventionsHold) {
  Rng rng(52);
  const Matrix u = random_matrix(12, 3, rng), v = random_matrix(9, 3, rng);
  const Vector a = random_weights(12, rng), b = random_weights(9, rng);
  const Vector loga = log_weights(a), logb = log_weights(b);
  const SinkhornHalfStep steps = affinity_half_steps(u, v, loga, logb);
  for (const auto measure : {SinkhornLoop::Measure::rows, SinkhornLoop::Measure::columns}) {
    SinkhornLoop loop;
    loop.measure = measure;
    std::vector<int> seen;
    std::vector<double> errors;
    Vector last_f, last_g;
    loop.observer = [&](const SinkhornIterate& it) {
      seen.push_back(it.iteration);
      errors.push_back(it.marginal_error);
      last_f = it.f;
      last_g = it.g;
    };
    const SinkhornControl control{.tol = 1e-12, .max_iterations = 1000};
    const SinkhornRun run = sinkhorn_loop(steps, a, b, control, loop);
    ASSERT_TRUE(run.status.converged) << run.status.message;
    ASSERT_EQ(static_cast<int>(seen.size()), run.status.iterations);
    for (size_t k = 0; k < seen.size(); ++k) EXPECT_EQ(seen[k], static_cast<int>(k) + 1);
    EXPECT_TRUE(std::isnan(errors.front()));  // nothing measured in iteration 1
    EXPECT_FALSE(std::isnan(errors.back()));
    EXPECT_TRUE(last_f == run.f && last_g == run.g);  // stopped before updating anything
    // The measured marginal is within tol; the other one is exact (it was just updated).
    Matrix pi(12, 9);
    for (Index i = 0; i < 12; ++i)
      for (Index j = 0; j < 9; ++j) pi(i, j) = a[i] * b[j] * std::exp(run.f[i] + run.g[j] + u.row(i).dot(v.row(j)));
    const double row_err = (pi.rowwise().sum() - a).cwiseAbs().sum();
    const double col_err = (pi.colwise().sum().transpose() - b).cwiseAbs().sum();
    const bool rows = measure == SinkhornLoop::Measure::rows;
    EXPECT_NEAR(rows ? row_err : col_err, run.status.marginal_error, 1e-14);
    EXPECT_LE(rows ? col_err : row_err, 1e-14);
  }
  // Columns measured, fixed iterations: iteration 1 is one f-update from g = 0 (softmax); with
  // final_check off nothing is measured and the error is NaN, yet the run is exact by definition.
  SinkhornLoop loop;
  loop.measure = SinkhornLoop::Measure::columns;
  loop.final_check = false;
  const SinkhornRun one = sinkhorn_loop(steps, a, b, SinkhornControl{.iterations = 1}, loop);
  EXPECT_TRUE(one.status.converged);
  EXPECT_EQ(one.status.iterations, 1);
  EXPECT_TRUE(std::isnan(one.status.marginal_error));
  EXPECT_TRUE(one.g == Vector::Zero(9));
  EXPECT_TRUE(one.f == steps(false, Vector::Zero(9), 1.0));
  loop.final_check = true;
  const SinkhornRun checked = sinkhorn_loop(steps, a, b, SinkhornControl{.iterations = 1}, loop);
  EXPECT_TRUE(checked.status.converged);
  EXPECT_GT(checked.status.marginal_error, 0.0);
}

TEST(OtSinkhornEngine, OneValidateForEveryCaller) {
  EXPECT_TRUE(throws_with([] { SinkhornControl{.tol = 0.0}.validate("layer", "sinkhorn."); },
                          "layer: sinkhorn.tol = 0, must be > 0"));
  EXPECT_TRUE(throws_with([] { SinkhornControl{.iterations = -1}.validate("x"); },
                          "x: iterations = -1, must be >= 0"));
  EXPECT_TRUE(throws_with([] { SinkhornControl{.max_iterations = 0}.validate("x"); },
                          "x: max_iterations = 0, must be in [1, 1e8]"));
  EXPECT_TRUE(throws_with([] { SinkhornControl{.max_iterations = kMaxSinkhornIterations + 1}.validate("x"); },
                          "x: max_iterations = 100000001, must be in [1, 1e8]"));
  SinkhornOptions o = options(0.1);
  o.iterations = 3;
  EXPECT_TRUE(throws_with([&] { o.validate(); }, "sinkhorn: iterations = 3, must be 0"));
  // Defaults are defined once: OT overrides tol only.
  EXPECT_EQ(SinkhornOptions{}.max_iterations, SinkhornControl{}.max_iterations);
  EXPECT_EQ(SinkhornOptions{}.tol, 1e-6);
}


// The eps schedule is bounded whatever the options: a factor next to 1, a subnormal eps and a
// cost scale that overflows are refused at once with the value named (never an unbounded loop),
// and a long legal schedule is capped by max_iterations (its last stages kept).
TEST(OtSinkhornEngine, EpsScheduleIsBoundedForExtremeOptions) {
  Rng rng(53);
  const Matrix x = random_matrix(8, 2, rng), y = random_matrix(7, 2, rng);
  const TransportCost cost = TransportCost::sqeuclidean(x, y);
  SinkhornOptions slow = options(0.1, 1e-8);
  slow.scaling = std::nextafter(1.0, 0.0);  // 0.9999999999999999
  EXPECT_TRUE(throws_with([&] { sinkhorn(Vector(), Vector(), cost, slow); },
                          "must be <= 1e+06 (eps_start = "));
  SinkhornOptions capped = options(0.1, 1e-8);
  capped.scaling = 0.9999;  // about 3e4 stages, legal; the cap keeps the last 49 and eps
  capped.max_iterations = 50;
  const SinkhornResult r = sinkhorn(Vector(), Vector(), cost, capped);
  EXPECT_EQ(r.stages, 50);
  EXPECT_EQ(r.iterations, 50);
  EXPECT_EQ(r.eps, 0.1);
  EXPECT_TRUE(throws_with([&] { sinkhorn(Vector(), Vector(), cost, options(5e-324, 1e-8)); },
                          "sinkhorn: eps = 5e-324, must be >= cost scale / 1.8e308"));
  const Matrix huge = Matrix::Constant(3, 2, 1e200);
  Matrix huge_y = huge;
  huge_y(0, 0) = -1e200;
  EXPECT_TRUE(throws_with(
      [&] { sinkhorn(Vector(), Vector(), TransportCost::sqeuclidean(huge, huge_y), options(0.1)); },
      "sinkhorn: cost scale = inf, must be finite"));
}

}  // namespace
}  // namespace attnflow
