// The umbrella header alone gives every module's API (include/attnflow/attnflow.hpp): a
// computation through several layers (measure -> attention -> ot) with nothing else included.
#include "attnflow/attnflow.hpp"

#include <gtest/gtest.h>

namespace attnflow {
namespace {

TEST(Umbrella, OneIncludeReachesEveryLayer) {
  Matrix x(3, 2);
  x << 0.0, 1.0, 1.0, 0.0, -1.0, 0.5;
  const Measure mu(x, "x");
  AttentionOptions opt;
  opt.beta = 2.0;
  const AttentionResult a = self_attention(mu, opt);
  // Softmax attention of the first token, by hand: weights exp(beta <x_0, x_j>) normalized.
  Vector w(3);
  for (Index j = 0; j < 3; ++j) w(j) = std::exp(2.0 * x.row(0).dot(x.row(j)));
  w /= w.sum();
  const Eigen::RowVectorXd expected = w.transpose() * x;
  EXPECT_NEAR((a.out.row(0) - expected).norm(), 0.0, 1e-14);
  SinkhornOptions s;
  s.eps = 1.0;
  const SinkhornResult r = sinkhorn(mu, mu, s);
  EXPECT_TRUE(r.converged);
  EXPECT_EQ(parse_device("cpu"), Device::cpu);
}

}  // namespace
}  // namespace attnflow
