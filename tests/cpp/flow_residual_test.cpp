// Method::residual: one layer equals a dense hand-written formula for the
// plain SA flow and every normalization scheme; residual and euler converge to the same flow
// as dt -> 0 (first order each), and differ at first order at dt = 0.1.
#include <gtest/gtest.h>

#include <cmath>

#include "attnflow/flow/flow.hpp"
#include "attnflow/flow/integrate.hpp"
#include "attnflow/measure/sample.hpp"
#include "attnflow/flow/scheme.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

// Dense softmax(beta X X^T) X (uniform weights), written out entry by entry.
Matrix dense_sa_average(const Matrix& x, double beta, bool usa = false) {
  const Index n = x.rows();
  Matrix a = Matrix::Zero(n, x.cols());
  for (Index i = 0; i < n; ++i) {
    double z = 0.0;
    for (Index j = 0; j < n; ++j) {
      const double e = std::exp(beta * x.row(i).dot(x.row(j))) / static_cast<double>(n);
      z += e;
      a.row(i) += e * x.row(j);
    }
    if (!usa) a.row(i) /= z;
  }
  return a;
}

Matrix normalized(Matrix y) {
  for (Index i = 0; i < y.rows(); ++i) y.row(i) /= y.row(i).norm();
  return y;
}

Matrix tokens(Index n, Index d, std::uint64_t seed) {
  Rng rng(seed);
  return sample_sphere(n, d, rng);
}

Matrix run(const Flow& f, const Matrix& x0, double t_end, Method m, double dt) {
  Matrix x = f.initial_state(x0);
  FlowState st = f.initial_flow_state();
  IntegratorOptions io;
  io.method = m;
  io.dt = dt;
  f.advance(x, st, t_end, io);
  return f.positions(x);
}

TEST(FlowResidual, ParsesAndNames) {
  EXPECT_EQ(parse_method("residual"), Method::residual);
  EXPECT_EQ(to_string(Method::residual), "residual");
}

TEST(FlowResidual, SaStepIsNormalizeOfXPlusDtA) {
  const Matrix x0 = tokens(12, 4, 3);
  for (const FieldKind kind : {FieldKind::sa, FieldKind::usa}) {
    FlowOptions o;
    o.kind = kind;
    o.beta = 2.5;
    const Flow f(o, 12, 4);
    const Matrix got = run(f, x0, 0.1, Method::residual, 0.1);
    const Matrix want = normalized(x0 + 0.1 * dense_sa_average(x0, 2.5, kind == FieldKind::usa));
    EXPECT_TRUE(test::all_close(got, want, 1e-12, 1e-14)) << to_string(kind);
    // Not the euler step (tangent projection first): they differ at O(dt^2) per step.
    const Matrix euler = run(f, x0, 0.1, Method::euler, 0.1);
    EXPECT_GT((euler - got).norm(), 1e-5);
  }
}

// The residual step is the euler step with the per-token step dt / (1 + dt <x, A>).
TEST(FlowResidual, EqualsEulerWithShortenedTangentStep) {
  const Matrix x0 = tokens(10, 3, 5);
  const double dt = 0.1, beta = 4.0;
  const Matrix a = dense_sa_average(x0, beta);
  Matrix want(x0.rows(), x0.cols());
  for (Index i = 0; i < x0.rows(); ++i) {
    const double xa = x0.row(i).dot(a.row(i));
    const Eigen::RowVectorXd pa = a.row(i) - xa * x0.row(i);
    want.row(i) = x0.row(i) + (dt / (1.0 + dt * xa)) * pa;
  }
  FlowOptions o;
  o.beta = beta;
  const Flow f(o, 10, 3);
  EXPECT_TRUE(test::all_close(run(f, x0, dt, Method::residual, dt), normalized(want), 1e-12, 1e-14));
}

// Each scheme's layer map on [theta | r], against the formulas of scheme.hpp.
TEST(FlowResidual, SchemeLayersMatchTheirFormulas) {
  const Index n = 9, d = 3;
  const double h = 0.2, beta = 1.5;
  Matrix x0 = tokens(n, d, 8);
  for (Index i = 0; i < n; ++i) x0.row(i) *= 0.5 + 0.25 * static_cast<double>(i);  // radii differ
  const Matrix theta = normalized(x0);
  const Matrix a = dense_sa_average(theta, beta);
  Vector r(n);
  for (Index i = 0; i < n; ++i) r[i] = x0.row(i).norm();
  const double t = 0.7;
  struct Case {
    Scheme scheme;
    double tau;
  };
  for (const Case c : {Case{Scheme::post_ln, 1}, Case{Scheme::pre_ln, 1}, Case{Scheme::peri_ln, 1},
                       Case{Scheme::ngpt, 1}, Case{Scheme::sqrt_scaling, 1},
                       Case{Scheme::mix_ln, 1.0}, Case{Scheme::mix_ln, 0.5}}) {
    Scheme s = c.scheme;
    if (s == Scheme::mix_ln) s = t < c.tau ? Scheme::post_ln : Scheme::pre_ln;
    Matrix want(n, d);  // positions r' theta'
    for (Index i = 0; i < n; ++i) {
      const Eigen::RowVectorXd th = theta.row(i), ai = a.row(i);
      Eigen::RowVectorXd y;
      double radius = r[i];
      if (s == Scheme::post_ln) y = th + h * ai;
      if (s == Scheme::sqrt_scaling) y = th + h / std::sqrt(t + 1.0) * ai;
      if (s == Scheme::ngpt) y = th + 0.8 * h * (ai / ai.norm() - th);
      if (s == Scheme::pre_ln) y = r[i] * th + h * ai;
      if (s == Scheme::peri_ln) y = r[i] * th + h * ai / ai.norm();
      if (s == Scheme::pre_ln || s == Scheme::peri_ln) radius = y.norm();
      want.row(i) = radius * y / y.norm();
    }
    FlowOptions o;
    o.beta = beta;
    o.scheme.scheme = c.scheme;
    o.scheme.tau = c.tau;
    o.scheme.alpha = 0.8;
    const Flow f(o, n, d);
    Matrix state = f.initial_state(x0);
    f.layer(t, h, state);
    EXPECT_TRUE(test::all_close(f.positions(state), want, 1e-12, 1e-14))
        << to_string(c.scheme) << " tau " << c.tau;
  }
}

// Both methods are first order and converge to the same flow (an rk4 reference with a tiny
// step); their difference is first order too: it halves with dt and is O(dt) at dt = 0.1.
TEST(FlowResidual, ResidualAndEulerConvergeToTheSameFlow) {
  const Matrix x0 = tokens(16, 3, 11);
  for (const Scheme scheme : {Scheme::none, Scheme::pre_ln}) {
    FlowOptions o;
    o.beta = 3.0;
    o.scheme.scheme = scheme;
    const Flow f(o, 16, 3);
    const double t_end = 2.0;
    const Matrix ref = run(f, x0, t_end, Method::rk4, 1e-3);
    double prev_res = 0, prev_eul = 0, prev_gap = 0;
    for (const double dt : {0.1, 0.05, 0.025}) {
      const Matrix res = run(f, x0, t_end, Method::residual, dt);
      const Matrix eul = run(f, x0, t_end, Method::euler, dt);
      const double e_res = (res - ref).norm(), e_eul = (eul - ref).norm(), gap = (res - eul).norm();
      if (dt == 0.1) {
        EXPECT_GT(gap, 0.1 * e_eul) << "first-order difference at dt = 0.1";
        EXPECT_GT(gap, 1e-3);
      } else {
        // First order: halving dt about halves each error and the gap.
        EXPECT_NEAR(prev_res / e_res, 2.0, 0.35) << to_string(scheme) << " dt " << dt;
        EXPECT_NEAR(prev_eul / e_eul, 2.0, 0.35) << to_string(scheme) << " dt " << dt;
        EXPECT_NEAR(prev_gap / gap, 2.0, 0.35) << to_string(scheme) << " dt " << dt;
      }
      prev_res = e_res;
      prev_eul = e_eul;
      prev_gap = gap;
    }
    EXPECT_LT(prev_res, 0.05 * std::sqrt(16.0));
  }
}

TEST(FlowResidual, PlainOdeWithoutLayerTakesTheEulerStep) {
  const Ode ode{[](double, const Matrix& x, Matrix& dx) { dx = -x; }, {}};
  Matrix a = Matrix::Constant(1, 1, 1.0), b = a;
  fixed_step(ode, a, 0.0, 0.1, Method::residual);
  fixed_step(ode, b, 0.0, 0.1, Method::euler);
  EXPECT_EQ(a(0, 0), b(0, 0));
  EXPECT_DOUBLE_EQ(a(0, 0), 0.9);
}

}  // namespace
}  // namespace attnflow
