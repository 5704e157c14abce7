// Depth limit (docs/math.md section 4): L residual attention layers x <- x + (1/L) X[mu_l](x) with
// the same heads converge to the time-1 flow of the Vlasov equation d/dt mu + div(mu X[mu]) = 0
// (flow.hpp's SA field in R^d, RK4), with error O(1/L): doubling L halves the error.
#include <gtest/gtest.h>

#include <cmath>

#include "attnflow/flow/flow.hpp"
#include "attnflow/model/model.hpp"
#include "model_test_util.hpp"

namespace attnflow {
namespace {

Model residual_stack(const std::vector<Head>& heads, Index d, double beta, Index layers) {
  AttentionLayer a;
  a.beta = beta;
  a.step = 1.0 / static_cast<double>(layers);
  for (const auto& h : heads)  // W = I: the layer adds exactly step * field
    a.heads.push_back(Head{h.q, h.k, h.v, Matrix::Identity(d, d)});
  Model m;
  m.dim = d;
  m.layers.assign(static_cast<size_t>(layers), Layer(a));
  return m;
}

TEST(ModelDepth, ResidualStackConvergesToVlasovFlowAtRateOneOverL) {
  const Index n = 24, d = 3;
  const double beta = 1.0;
  Rng rng(51);
  const Measure mu(test::random_matrix(n, d, rng), test::random_weights(n, rng));
  const auto heads = make_heads(2, d, "gaussian", 5);
  FlowOptions fo;
  fo.kind = FieldKind::sa;
  fo.beta = beta;
  fo.heads = heads;
  fo.sphere = false;
  fo.weights = mu.weights();
  const Flow flow(fo, n, d);
  Matrix ref = flow.initial_state(mu.points());
  FlowState st = flow.initial_flow_state();
  IntegratorOptions io;
  io.method = Method::rk4;
  io.dt = 1e-3;  // RK4 error ~1e-12, far below the O(1/L) errors measured
  flow.advance(ref, st, 1.0, io);
  double prev = 0.0;
  for (Index layers : {8, 16, 32, 64}) {
    const Matrix out = transport(residual_stack(heads, d, beta, layers), mu);
    const double err = std::sqrt(((out - ref).rowwise().squaredNorm().transpose() * mu.weights()).value());
    if (prev > 0.0) {
      // Euler's global error is C / L + O(1 / L^2): the ratio tends to 2 (within 10% at L >= 16).
      EXPECT_NEAR(prev / err, 2.0, 0.2) << "L = " << layers << " error " << err;
    }
    prev = err;
    std::printf("depth limit: L = %ld, L2(w) error vs Vlasov flow at t = 1: %.4e\n",
                static_cast<long>(layers), err);
  }
}

}  // namespace
}  // namespace attnflow
