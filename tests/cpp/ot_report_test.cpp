// solve_ot (the report behind `attnflow ot` and attnflow.solve_ot) against independent
// references: a dense log-domain Sinkhorn plan and a brute-force assignment; its request
// rules name the field, the value and the rule, under the names the caller gives.
#include "attnflow/ot/ot_report.hpp"

#include <gtest/gtest.h>

#include "ot_dense_reference.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::random_matrix;
using test::random_weights;
using test::throws_with;

TEST(OtReport, SinkhornReportMatchesDenseReference) {
  Rng rng(7);
  const Matrix x = random_matrix(12, 3, rng), y = random_matrix(9, 3, rng);
  const Measure mu(x, random_weights(12, rng)), nu(y, random_weights(9, rng));
  OtRequest req;
  req.sinkhorn.eps = 0.5;
  req.sinkhorn.tol = 1e-12;
  req.plan = true;
  const OtReport r = solve_ot(mu, nu, req);
  ASSERT_TRUE(r.converged) << r.message;
  EXPECT_EQ(r.method, "sinkhorn");
  EXPECT_EQ(r.cost_type, "sqeuclidean");
  EXPECT_EQ(r.n, 12);
  EXPECT_EQ(r.m, 9);
  EXPECT_EQ(r.dim, 3);
  EXPECT_TRUE(r.has_plan);
  EXPECT_EQ(r.eps, 0.5);
  EXPECT_EQ(r.tol, 1e-12);
  EXPECT_EQ(r.eps_scaling, SinkhornOptions{}.scaling);
  EXPECT_LE(r.marginal_error, 1e-12);
  const Matrix c = test::dense_sqeuclidean(x, y);
  const Matrix ref = test::dense_sinkhorn_plan(c, mu.weights(), nu.weights(), 0.5, 1e-13);
  // Both converged to 1e-12 in marginal error; entries are O(1e-2).
  EXPECT_LE((r.plan - ref).cwiseAbs().maxCoeff(), 1e-11);
  EXPECT_NEAR(r.cost, (ref.array() * c.array()).sum(), 1e-10);
}

TEST(OtReport, ExactReportMatchesBruteForceAssignment) {
  Rng rng(11);
  const Matrix x = random_matrix(6, 2, rng), y = random_matrix(6, 2, rng);
  OtRequest req;
  req.exact = true;
  const OtReport r = solve_ot(Measure(x), Measure(y), req);
  ASSERT_TRUE(r.converged) << r.message;
  EXPECT_EQ(r.method, "exact");
  EXPECT_EQ(r.p, 2);
  EXPECT_EQ(r.iterations, 0);
  EXPECT_FALSE(r.has_plan);
  EXPECT_EQ(r.plan.size(), 0);
  const double ref = test::brute_force_assignment(test::dense_sqeuclidean(x, y));  // mean over a permutation
  EXPECT_NEAR(r.cost, ref, 1e-10);
  EXPECT_NEAR(r.wasserstein, std::sqrt(ref), 1e-9);
}

TEST(OtReport, RejectsBadRequestsNamingTheField) {
  const Measure mu(Matrix::Zero(3, 2)), nu(Matrix::Zero(4, 2)), nu3(Matrix::Zero(4, 3));
  OtRequest req;
  EXPECT_TRUE(throws_with([&] { solve_ot(mu, nu, req); }, "ot: eps = 0, must be > 0 (or use exact)"));
  req.sinkhorn.eps = 0.1;
  req.cost = "cosine";
  EXPECT_TRUE(throws_with([&] { solve_ot(mu, nu, req); },
                          "ot: cost = \"cosine\", must be sqeuclidean or euclidean"));
  req.cost = "euclidean";
  EXPECT_TRUE(throws_with([&] { solve_ot(mu, nu, req); }, "must be sqeuclidean with eps"));
  req.cost = "sqeuclidean";
  req.sinkhorn.tol = 0.0;
  EXPECT_TRUE(throws_with([&] { solve_ot(mu, nu, req); }, "sinkhorn: tol = 0, must be > 0"));
  req.sinkhorn.tol = 1e-6;
  EXPECT_TRUE(throws_with([&] { solve_ot(mu, nu3, req); },
                          "ot: x has dimension 2 and y has dimension 3, must be equal"));
  req.exact = true;
  EXPECT_TRUE(throws_with([&] { solve_ot(mu, nu, req); }, "ot: eps = 0.1, must be 0 with exact"));
  // The CLI's names.
  OtRequest cli;
  cli.names = {.eps = "--eps", .exact = "--exact", .cost = "--cost", .plan = "--plan", .x = "--x", .y = "--y"};
  EXPECT_TRUE(throws_with([&] { solve_ot(mu, nu, cli); }, "ot: --eps = 0, must be > 0 (or use --exact)"));
  cli.sinkhorn.eps = 1.0;
  cli.plan = true;
  const Measure big_x(Matrix::Zero(5001, 1)), big_y(Matrix::Zero(5000, 1));
  EXPECT_TRUE(throws_with([&] { solve_ot(big_x, big_y, cli); },
                          "ot: --plan with n * m = 5001 * 5000 = 25005000, must be <= 25000000"));
}

}  // namespace
}  // namespace attnflow
