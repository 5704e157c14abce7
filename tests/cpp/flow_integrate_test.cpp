// Integrators: convergence orders of Euler and RK4 (closed form and an SA flow case on S^2),
// landing exactly on t_end, the retraction, resume equals one call, option validation.
#include "attnflow/flow/integrate.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "attnflow/flow/flow.hpp"
#include "attnflow/measure/sample.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

// A smooth non-linear test problem with a closed form: rotation with growth,
// x' = A x + 0.5 x, rows (cos, sin) rotating at unit speed: x(t) = e^{t/2} R(t) x0.
Ode rotation_ode() {
  return Ode{[](double, const Matrix& x, Matrix& dx) {
               dx.col(0) = -x.col(1) + 0.5 * x.col(0);
               dx.col(1) = x.col(0) + 0.5 * x.col(1);
             },
             nullptr};
}

Matrix rotation_exact(const Matrix& x0, double t) {
  Matrix x(x0.rows(), 2);
  const double g = std::exp(0.5 * t), c = std::cos(t), s = std::sin(t);
  x.col(0) = g * (c * x0.col(0) - s * x0.col(1));
  x.col(1) = g * (s * x0.col(0) + c * x0.col(1));
  return x;
}

double error_at(Method m, double dt) {
  Matrix x0(2, 2);
  x0 << 1, 0, 0.3, -0.7;
  Matrix x = x0;
  IntegratorState st;
  IntegratorOptions o;
  o.method = m;
  o.dt = dt;
  advance(rotation_ode(), x, st, 2.0, o);
  EXPECT_EQ(st.t, 2.0);
  return (x - rotation_exact(x0, 2.0)).norm();
}

TEST(Integrate, EulerIsFirstOrderRk4IsFourthOrder) {
  const double e1 = error_at(Method::euler, 0.01), e2 = error_at(Method::euler, 0.005);
  EXPECT_NEAR(std::log2(e1 / e2), 1.0, 0.05);
  const double r1 = error_at(Method::rk4, 0.04), r2 = error_at(Method::rk4, 0.02);
  EXPECT_NEAR(std::log2(r1 / r2), 4.0, 0.1);
}

TEST(Integrate, Dopri5MeetsTolerance) {
  for (double tol : {1e-6, 1e-9, 1e-12}) {
    Matrix x0(1, 2);
    x0 << 1, 0;
    Matrix x = x0;
    IntegratorState st;
    IntegratorOptions o;
    o.method = Method::dopri5;
    o.rtol = tol;
    o.atol = tol;
    o.dt = 0.1;
    advance(rotation_ode(), x, st, 5.0, o);
    const double err = (x - rotation_exact(x0, 5.0)).norm();
    // Global error of a tolerance-controlled method: within a modest multiple of tol * scale.
    EXPECT_LT(err, 100 * tol * x.norm()) << "tol " << tol;
    EXPECT_GT(st.steps, 0);
  }
}

TEST(Integrate, ResumeInPiecesEqualsOneCallBitForBit) {
  for (Method m : {Method::euler, Method::rk4, Method::dopri5}) {
    Matrix x0(3, 2);
    x0 << 1, 0, 0, 1, 0.5, 0.5;
    IntegratorOptions o;
    o.method = m;
    o.dt = 0.05;
    Matrix a = x0, b = x0;
    IntegratorState sa, sb;
    advance(rotation_ode(), a, sa, 3.0, o);
    for (double t : {0.7, 1.5, 2.2, 3.0}) advance(rotation_ode(), b, sb, t, o);
    if (m != Method::dopri5) {
      // Fixed steps: 0.7 / 0.05 = 14 steps exactly, so the grids coincide.
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(double) * a.size())) << to_string(m);
    } else {
      EXPECT_LT((a - b).norm(), 1e-5);
    }
  }
}

TEST(Integrate, RetractionAppliedAfterEachStep) {
  Ode ode{[](double, const Matrix& x, Matrix& dx) { dx = x; },
          [](Matrix& x) { x.rowwise().normalize(); }};
  Matrix x(1, 2);
  x << 3, 4;
  IntegratorState st;
  IntegratorOptions o;
  o.method = Method::euler;
  o.dt = 0.1;
  advance(ode, x, st, 1.0, o);
  EXPECT_NEAR(x.norm(), 1.0, 1e-15);
  EXPECT_EQ(st.steps, 10);
}

// A residual layer that knows its state's finiteness (Ode::layer_finite, as the batched
// ensemble's does): the integrator asks it instead of scanning the state, and a false answer
// stops the integration naming the step even where the state holds no inf or NaN (a row
// whose squared norm overflowed is scaled to zeros).
TEST(Integrate, ResidualLayerFinitenessStopsWithTheStep) {
  int layers = 0;
  Ode ode{[](double, const Matrix&, Matrix& dx) { dx.setZero(); }, nullptr,
          [&](double, double, Matrix& x) {
            ++layers;
            x *= 0.5;
          }};
  ode.layer_finite = [&] { return layers < 3; };
  Matrix x = Matrix::Ones(4, 3);
  IntegratorState st;
  IntegratorOptions o;
  o.method = Method::residual;
  o.dt = 0.1;
  try {
    advance(ode, x, st, 1.0, o);
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("state is not finite after step 3 (t = 0.3"), std::string::npos) << e.what();
  }
  EXPECT_EQ(layers, 3);
}

// A step that leaves an inf or a NaN anywhere in the state (here the last entry of a state
// with an odd number of entries, then one in the middle) stops the integration naming the step.
TEST(Integrate, NonFiniteStateStopsWithTheStep) {
  for (const double bad : {std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(),
                           std::numeric_limits<double>::quiet_NaN()}) {
    for (const Index where : {Index{14}, Index{7}}) {
      Ode ode{[&](double t, const Matrix& x, Matrix& dx) {
                dx.setZero();
                if (t >= 0.25) dx(where / x.cols(), where % x.cols()) = bad;
              },
              nullptr};
      Matrix x = Matrix::Ones(5, 3);
      IntegratorState st;
      IntegratorOptions o;
      o.method = Method::euler;
      o.dt = 0.1;
      try {
        advance(ode, x, st, 1.0, o);
        ADD_FAILURE() << "no error for " << bad << " at entry " << where;
      } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("state is not finite after step 4 (t = 0.4)"), std::string::npos)
            << e.what();
      }
    }
  }
  // The largest finite values and subnormals are finite.
  Ode big{[](double, const Matrix&, Matrix& dx) { dx.setZero(); }, nullptr};
  Matrix x(1, 3);
  x << std::numeric_limits<double>::max(), -std::numeric_limits<double>::max(),
      std::numeric_limits<double>::denorm_min();
  IntegratorState st;
  IntegratorOptions o;
  o.method = Method::euler;
  EXPECT_NO_THROW(advance(big, x, st, 0.1, o));
}

// A flow case: SA on S^2 (n = 8, beta = 2) with the sphere retraction after every step.
// The retraction moves an O(h^5)-accurate step by O(h^5), so RK4 stays fourth order.
TEST(Integrate, SaFlowRk4IsFourthOrderAndDopri5MeetsTolerance) {
  Rng rng(71);
  const Matrix p0 = sample_sphere(8, 3, rng);
  FlowOptions fo;
  fo.beta = 2.0;
  const Flow flow(fo, 8, 3);
  const auto solve = [&](Method m, double dt, double tol) {
    Matrix x = flow.initial_state(p0);
    IntegratorState st;
    IntegratorOptions o;
    o.method = m;
    o.dt = dt;
    o.rtol = o.atol = tol;
    advance(flow.ode(), x, st, 1.0, o);
    return x;
  };
  const Matrix ref = solve(Method::rk4, 0.0025, 1e-6);  // error ~1e-12, below what is measured
  const double e1 = (solve(Method::rk4, 0.1, 1e-6) - ref).norm();
  const double e2 = (solve(Method::rk4, 0.05, 1e-6) - ref).norm();
  EXPECT_NEAR(std::log2(e1 / e2), 4.0, 0.3);
  for (double tol : {1e-6, 1e-9}) {
    const double err = (solve(Method::dopri5, 0.1, tol) - ref).norm();
    EXPECT_LT(err, 100 * tol) << "tol " << tol;  // same bound as the closed-form case above
  }
}

TEST(Integrate, RejectsBadOptions) {
  IntegratorOptions o;
  o.dt = -0.1;
  EXPECT_TRUE(test::throws_with([&] { o.validate(); }, "integrate: dt = -0.1, must be > 0"));
  o.dt = 0.1;
  o.rtol = 0;
  EXPECT_TRUE(test::throws_with([&] { o.validate(); }, "integrate: rtol = 0, must be > 0"));
  EXPECT_TRUE(test::throws_with([] { parse_method("leapfrog"); },
                                "integrate: method = \"leapfrog\", must be one of euler, residual, rk4, dopri5"));
}

}  // namespace
}  // namespace attnflow
