// Known behaviour of the flows (docs/math.md section 5): energy E_beta non-decreasing along SA and
// USA (Q = K = V = I) for every integrator, d >= 3 random starts ending in one cluster, the
// exactly equiangular solution following docs/math.md section 6's scalar ODE, and the noisy model:
// spherical Brownian motion decorrelating at rate (d - 1) / kappa, resume and threads bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "attnflow/flow/ensemble.hpp"
#include "attnflow/flow/flow.hpp"
#include "attnflow/flow/observe.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/measure/sample.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::bit_equal;

TEST(FlowDynamics, EnergyNonDecreasingAlongSaAndUsaForEveryIntegrator) {
  // log E computed by two kernel passes: a few ulps of noise on a value of order 1.
  constexpr double kRoundOff = 1e-13;
  const Index n = 24, d = 3;
  for (FieldKind kind : {FieldKind::sa, FieldKind::usa}) {
    for (Method m : {Method::euler, Method::rk4, Method::dopri5}) {
      for (double beta : {1.0, 4.0}) {
        Rng rng(31);
        FlowOptions o;
        o.kind = kind;
        o.beta = beta;
        // USA moves e^beta times faster than SA: rescale time by e^beta so that the same
        // steps resolve it (monotonicity is invariant under a constant time change).
        if (kind == FieldKind::usa) o.usa_log_shift = beta;
        const Flow f(o, n, d);
        Matrix x = f.initial_state(sample_sphere(n, d, rng));
        FlowState st = f.initial_flow_state();
        IntegratorOptions io;
        io.method = m;
        io.dt = 0.05;
        io.rtol = io.atol = 1e-8;
        double prev = log_energy(x, Vector(), beta);
        const double first = prev;
        for (int k = 1; k <= 40; ++k) {
          f.advance(x, st, 0.25 * k, io);
          const double e = log_energy(x, Vector(), beta);
          ASSERT_GE(e, prev - kRoundOff) << to_string(kind) << " " << to_string(m) << " beta "
                                         << beta << " t " << st.integrator.t;
          prev = e;
        }
        EXPECT_GT(prev, first + 1e-3) << "energy should grow noticeably";
      }
    }
  }
}

TEST(FlowDynamics, RandomStartsInDimensionThreeAndUpEndInOneCluster) {
  for (Index d : {3, 5}) {
    for (std::uint64_t seed = 1; seed <= 3; ++seed) {
      Rng rng(seed);
      const Index n = 32;
      FlowOptions o;
      o.beta = 1.0;
      const Flow f(o, n, d);
      Matrix x = f.initial_state(sample_sphere(n, d, rng));
      FlowState st = f.initial_flow_state();
      IntegratorOptions io;
      io.method = Method::rk4;
      io.dt = 0.2;
      f.advance(x, st, 40.0, io);
      ObserveOptions oo;
      oo.delta = 1e-4;
      const Observables ob = observe(x, Vector(), oo);
      EXPECT_EQ(ob.clusters, 1) << "d " << d << " seed " << seed;
      EXPECT_GT(ob.min_cosine, 1.0 - 1e-4);
    }
  }
}

// docs/math.md section 6: from x_i = sqrt(1 - rho0) e_i + sqrt(rho0) e_{n+1}, all inner products
// stay equal to rho(t), SA: drho/dt = 2 e^{beta rho} (1 - rho)((n - 1) rho + 1) / (e^beta + (n - 1)
// e^{beta rho}).
TEST(FlowDynamics, EquiangularStartFollowsTheScalarOde) {
  const Index n = 6, d = 7;
  const double beta = 2.0, rho0 = 0.1, t_end = 1.5;
  FlowOptions o;
  o.beta = beta;
  const Flow f(o, n, d);
  Matrix x = f.initial_state(equiangular(n, d, rho0));
  FlowState st = f.initial_flow_state();
  IntegratorOptions io;
  io.method = Method::rk4;
  io.dt = 0.01;
  f.advance(x, st, t_end, io);
  const double nn = static_cast<double>(n);
  const Ode scalar{[&](double, const Matrix& r, Matrix& dr) {
                     const double p = r(0, 0);
                     dr(0, 0) = 2 * std::exp(beta * p) * (1 - p) * ((nn - 1) * p + 1) /
                                (std::exp(beta) + (nn - 1) * std::exp(beta * p));
                   },
                   nullptr};
  Matrix rho(1, 1);
  rho(0, 0) = rho0;
  IntegratorState rs;
  advance(scalar, rho, rs, t_end, io);
  // RK4 at dt = 0.01 on both: global error ~1e-10; the particle system adds round-off.
  constexpr double kOdeTol = 1e-9;
  for (Index i = 0; i < n; ++i)
    for (Index j = i + 1; j < n; ++j) EXPECT_NEAR(x.row(i).dot(x.row(j)), rho(0, 0), kOdeTol);
  EXPECT_GT(rho(0, 0), rho0 + 0.1);
}

// docs/math.md section 5: with uniform weights USA is n times the gradient of E_beta (in R^d; on
// the sphere its tangent projection). Checked against central finite differences of E.
TEST(FlowDynamics, UsaIsNTimesTheGradientOfTheEnergy) {
  Rng rng(32);
  const Index n = 7, d = 3;
  const double beta = 1.5;
  const Matrix x = 0.8 * test::random_matrix(n, d, rng);
  FlowOptions o;
  o.kind = FieldKind::usa;
  o.beta = beta;
  o.sphere = false;
  const Flow f(o, n, d);
  Matrix v(n, d);
  f.field(0.0, x, v);
  const auto energy = [&](const Matrix& y) { return std::exp(log_energy(y, Vector(), beta)); };
  // Five-point central differences, error h^4 f^(5) / 30 ~ 1e-11 (f^(5) ~ E beta^5 ~ 1e3)
  // plus round-off 1.5 delta / h ~ 1e-10, where delta ~ 1e-13 is the energy's own rounding
  // (E ~ 50 through exp(log_energy), a few ulp). The three-point formula at h = 1e-5 had
  // round-off delta / h ~ 1e-8, as large as its tolerance.
  const double h = 1e-3;
  Matrix grad(n, d);
  for (Index i = 0; i < n; ++i)
    for (Index t = 0; t < d; ++t) {
      const auto at = [&](double s) {
        Matrix y = x;
        y(i, t) += s * h;
        return energy(y);
      };
      grad(i, t) = (-at(2) + 8 * at(1) - 8 * at(-1) + at(-2)) / (12 * h);
    }
  constexpr double kFdTol = 1e-9;
  EXPECT_TRUE(test::all_close(v, static_cast<double>(n) * grad, kFdTol, kFdTol));
}

// Kuramoto on angles and SA on the circle give the same trajectory (docs/math.md section 5).
TEST(FlowDynamics, KuramotoTrajectoryEqualsSaOnTheCircle) {
  Rng rng(33);
  const Index n = 20;
  const Matrix p0 = sample_sphere(n, 2, rng);
  IntegratorOptions io;
  io.method = Method::rk4;
  io.dt = 0.01;
  for (Normalization norm : {Normalization::softmax, Normalization::none}) {
    FlowOptions ko;
    ko.kind = FieldKind::kuramoto;
    ko.beta = 3.0;
    ko.kuramoto_normalization = norm;
    FlowOptions so = ko;
    so.kind = norm == Normalization::softmax ? FieldKind::sa : FieldKind::usa;
    const Flow kf(ko, n, 2), sf(so, n, 2);
    Matrix th = kf.initial_state(p0), x = sf.initial_state(p0);
    FlowState ks = kf.initial_flow_state(), ss = sf.initial_flow_state();
    kf.advance(th, ks, 2.0, io);
    sf.advance(x, ss, 2.0, io);
    // Two RK4 discretizations (angles vs retracted points) of one ODE: O(dt^4) apart.
    constexpr double kCoordTol = 1e-8;
    EXPECT_TRUE(test::all_close(kf.positions(th), x, kCoordTol, kCoordTol));
  }
}

// With one token per system the drift P_x x vanishes, so each system is Brownian motion on
// S^{d-1} with generator (1/kappa) Laplacian: E <x(t), x(0)> = exp(-(d - 1) t / kappa).
TEST(FlowDynamics, NoiseIsSphericalBrownianMotionWithRateDMinusOneOverKappa) {
  const Index systems = 1000, d = 3;
  const double kappa = 2.0, t_end = 0.5;
  std::vector<FlowOptions> flows;
  std::vector<Matrix> x0;
  Rng rng(41);
  for (Index s = 0; s < systems; ++s) {
    FlowOptions o;
    o.kappa = kappa;
    o.noise_seed = 7;
    o.noise_stream = static_cast<std::uint64_t>(s);
    flows.push_back(o);
    x0.push_back(sample_sphere(1, d, rng));
  }
  IntegratorOptions io;
  io.method = Method::euler;
  io.dt = 0.005;
  Ensemble e(flows, x0, io);
  e.advance(t_end);
  double mean = 0.0;
  for (Index s = 0; s < systems; ++s) {
    EXPECT_NEAR(e.state(s).row(0).norm(), 1.0, 1e-14);
    mean += e.state(s).row(0).dot(x0[s].row(0));
  }
  mean /= static_cast<double>(systems);
  const double expected = std::exp(-(d - 1) * t_end / kappa);
  // Standard error of the mean of a cosine: <= sqrt(1 - expected^2) / sqrt(1000) ~ 0.025;
  // 4 standard errors, plus the O(dt) weak error of Euler-Maruyama (~0.005).
  constexpr double kStatTol = 0.1;
  EXPECT_NEAR(mean, expected, kStatTol);
  // A wrong scale sqrt(1/kappa) would give exp(-0.25) = 0.78, no noise 1.0: both excluded.
  EXPECT_LT(std::abs(mean - expected), std::abs(std::exp(-0.25) - expected));
}

TEST(FlowDynamics, NoisyRunResumesAndIsThreadIndependentBitForBit) {
  Rng rng(42);
  const Index n = 300, d = 3;
  const Matrix p0 = sample_sphere(n, d, rng);
  FlowOptions o;
  o.kind = FieldKind::usa;
  o.beta = 2.0;
  o.kappa = 5.0;
  o.noise_seed = 3;
  const Flow f(o, n, d);
  IntegratorOptions io;
  io.method = Method::euler;
  io.dt = 0.1;
  const auto run = [&](std::vector<double> stops, int threads) {
    set_num_threads(threads);
    Matrix x = f.initial_state(p0);
    FlowState st = f.initial_flow_state();
    for (double t : stops) {
      // A checkpoint: copy out and restore state and FlowState, as a resumed process would.
      FlowState saved = st;
      Matrix xs = x;
      f.advance(xs, saved, t, io);
      x = xs;
      st = saved;
    }
    set_num_threads(0);
    return x;
  };
  const Matrix one = run({1.0}, 1);
  EXPECT_TRUE(bit_equal(one, run({0.3, 0.5, 0.8, 1.0}, 1)));
  EXPECT_TRUE(bit_equal(one, run({1.0}, 2)));
  EXPECT_TRUE(bit_equal(one, run({0.7, 1.0}, 2)));
  // And the noise mattered.
  FlowOptions quiet = o;
  quiet.kappa = 0.0;
  const Flow g(quiet, n, d);
  Matrix x = g.initial_state(p0);
  FlowState st = g.initial_flow_state();
  g.advance(x, st, 1.0, io);
  EXPECT_GT((x - one).norm(), 0.1);
}

}  // namespace
}  // namespace attnflow
