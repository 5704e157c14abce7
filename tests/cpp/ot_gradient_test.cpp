// Envelope-theorem gradients of OT_eps and the Sinkhorn divergence against central finite
// differences of the values sinkhorn() and sinkhorn_divergence() compute (tight tolerance,
// so the envelope gradient of the converged problem is the derivative of the value).
#include "attnflow/ot/ot_gradient.hpp"

#include <gtest/gtest.h>

#include <functional>

#include "attnflow/attention/attention_grad.hpp"
#include "attnflow/ot/divergence.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::all_close;
using test::random_matrix;
using test::random_weights;

SinkhornOptions tight() {
  SinkhornOptions o;
  o.eps = 1.0;  // converges in few iterations (the self-transport terms are slow at small eps)
  o.tol = 1e-12;
  o.max_iterations = 100000;
  return o;
}

template <typename A>
A central(A& a, const std::function<double()>& value) {
  A g(a.rows(), a.cols());
  const double h = 1e-5;
  for (Index i = 0; i < a.size(); ++i) {
    const double keep = a.data()[i];
    a.data()[i] = keep + h;
    const double vp = value();
    a.data()[i] = keep - h;
    const double vm = value();
    a.data()[i] = keep;
    g.data()[i] = (vp - vm) / (2 * h);
  }
  return g;
}

void check(bool divergence) {
  Rng rng(divergence ? 22 : 21);
  Matrix x = random_matrix(6, 2, rng), y = random_matrix(5, 2, rng);
  Vector a = random_weights(6, rng), b = random_weights(5, rng);
  const SinkhornOptions o = tight();
  auto value = [&]() {
    return divergence ? sinkhorn_divergence(Measure(x, a), Measure(y, b), o).value
                      : sinkhorn(Measure(x, a), Measure(y, b), o).objective;
  };
  const OtGradient g = divergence ? sinkhorn_divergence_gradient(Measure(x, a), Measure(y, b), o)
                                  : ot_cost_gradient(Measure(x, a), Measure(y, b), o);
  EXPECT_TRUE(g.converged) << g.message;
  EXPECT_EQ(g.value, value());  // the library's value, bit for bit
  const double tol = 1e-6;
  EXPECT_TRUE(all_close(g.dx, central(x, value), tol, tol)) << "dx";
  EXPECT_TRUE(all_close(g.dy, central(y, value), tol, tol)) << "dy";
  EXPECT_TRUE(all_close(normalized_weights_gradient(a, g.da), central(a, value), tol, tol)) << "da";
  EXPECT_TRUE(all_close(normalized_weights_gradient(b, g.db), central(b, value), tol, tol)) << "db";
}

TEST(OtGradient, CostMatchesFiniteDifferences) { check(false); }
TEST(OtGradient, DivergenceMatchesFiniteDifferences) { check(true); }

TEST(OtGradient, DivergenceGradientVanishesAtEqualMeasures) {
  Rng rng(23);
  const Matrix x = random_matrix(5, 3, rng);
  const OtGradient g = sinkhorn_divergence_gradient(Measure(x), Measure(x), tight());
  EXPECT_NEAR(g.value, 0.0, 1e-12);
  EXPECT_LT(g.dx.cwiseAbs().maxCoeff(), 1e-9);
}

}  // namespace
}  // namespace attnflow
