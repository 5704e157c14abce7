// The eps-scaling schedule is checked before it is built (H1): coordinates whose
// cost overflows, an eps of 5e-324 and a scaling of 0.9999999999999999 used to loop forever
// while memory grew; each is now an error naming the value and the rule.
#include <gtest/gtest.h>

#include "attnflow/ot/ot.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::throws_with;

SinkhornOptions with_eps(double eps) {
  SinkhornOptions o;
  o.eps = eps;
  return o;
}

TEST(OtSinkhornSchedule, OverflowingCostIsRefused) {
  Matrix x(2, 1), y(2, 1);
  x << 0.0, 1.4e154;
  y << -1.4e154, 0.5;
  const TransportCost cost = TransportCost::sqeuclidean(x, y);
  EXPECT_TRUE(throws_with([&] { sinkhorn(Vector(), Vector(), cost, with_eps(0.1)); },
                          "sinkhorn: cost scale = inf, must be finite (the cost overflows"));
}

TEST(OtSinkhornSchedule, TinyEpsIsRefused) {
  Rng rng(3);
  const TransportCost cost = TransportCost::sqeuclidean(test::random_matrix(4, 2, rng),
                                                        test::random_matrix(3, 2, rng));
  EXPECT_TRUE(throws_with([&] { sinkhorn(Vector(), Vector(), cost, with_eps(5e-324)); },
                          "sinkhorn: eps = 5e-324, must be >= cost scale / 1.8e308"));
}

TEST(OtSinkhornSchedule, ScalingNearOneIsRefusedByScheduleLength) {
  Rng rng(4);
  const TransportCost cost = TransportCost::sqeuclidean(test::random_matrix(4, 2, rng),
                                                        test::random_matrix(3, 2, rng));
  SinkhornOptions o = with_eps(1e-3);
  o.scaling = 0.9999999999999999;
  EXPECT_TRUE(throws_with([&] { sinkhorn(Vector(), Vector(), cost, o); },
                          "sinkhorn: eps-scaling stages = log(eps_start / eps) / -log(scaling) = "));
  EXPECT_TRUE(throws_with([&] { sinkhorn(Vector(), Vector(), cost, o); },
                          "must be <= 1e+06"));
  // A long but bounded schedule still runs (and converges to the target eps).
  o.scaling = 0.99;
  const SinkhornResult r = sinkhorn(Vector(), Vector(), cost, o);
  EXPECT_EQ(r.eps, 1e-3);
  EXPECT_GT(r.stages, 100);
}

}  // namespace
}  // namespace attnflow
