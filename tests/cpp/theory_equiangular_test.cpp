// Equiangular ODEs (docs/math.md section 6): the right-hand side equals the closed forms of
// docs/math.md section 6.1; a particle simulation of an exactly equiangular start stays equiangular
// and follows the ODE (SA, USA, every normalization scheme); the linearized decay laws are
// recovered from the ODE solution; fixed points; option validation.
#include "attnflow/theory/equiangular.hpp"

#include <gtest/gtest.h>

#include <Eigen/Cholesky>

#include <cmath>

#include "attnflow/flow/flow.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/measure/sample.hpp"
#include "test_util.hpp"
#include "theory_particles.hpp"

namespace attnflow {
namespace {

// Both solvers run dopri5 at rtol = atol = 1e-12; 1e-6 is the bar for "follows the
// ODE", far above the ~1e-10 the two tolerance-controlled solutions differ by.
constexpr double kFollowRtol = 1e-6;
// Spread of pairwise cosines of an equiangular start: only round-off (n d flops) breaks symmetry.
constexpr double kEquiangularSpread = 1e-10;

double spec_drho_sa(double rho, Index n, double beta) {  // docs/math.md section 6, verbatim
  const double nm1 = static_cast<double>(n - 1);
  return 2.0 * std::exp(beta * rho) * (1.0 - rho) * (nm1 * rho + 1.0) /
         (std::exp(beta) + nm1 * std::exp(beta * rho));
}
double spec_drho_usa(double rho, Index n, double beta) {
  const double nm1 = static_cast<double>(n - 1);
  return (2.0 / static_cast<double>(n)) * std::exp(beta * rho) * (1.0 - rho) * (nm1 * rho + 1.0);
}

TEST(TheoryEquiangular, RatesEqualSpecClosedForms) {
  for (Index n : {2, 5, 32})
    for (double beta : {0.1, 1.0, 9.0})
      for (double rho : {-1.0 / static_cast<double>(n - 1), -0.01, 0.0, 0.4, 0.99}) {
        EquiangularOptions o;
        o.n = n;
        o.beta = beta;
        const double sa = -equiangular_rates(o, 0.0, 1.0 - rho, 1.0).du;
        EXPECT_NEAR(sa, spec_drho_sa(rho, n, beta), 1e-14 * (1.0 + std::abs(sa)));
        o.model = TheoryModel::usa;
        const double usa = -equiangular_rates(o, 0.0, 1.0 - rho, 1.0).du;
        EXPECT_NEAR(usa, spec_drho_usa(rho, n, beta), 1e-13 * (1.0 + std::abs(usa)));
      }
}

// Exact equiangular points for any rho0 in [-1/(n-1), 1): rows of the Cholesky factor of the
// Gram matrix (1 - rho) I + rho 1 1^T (sample.hpp's equiangular() covers rho0 >= 0 only).
Matrix equiangular_any(Index n, Index d, double rho0) {
  if (rho0 >= 0.0) return equiangular(n, d, rho0);
  const Matrix gram = (1.0 - rho0) * Matrix::Identity(n, n) + rho0 * Matrix::Ones(n, n);
  Matrix x = Matrix::Zero(n, d);
  x.leftCols(n) = Matrix(gram.llt().matrixL());
  return x;
}

// Simulates the particles from the exact equiangular start and compares with the ODE.
void check_particles_follow_ode(const EquiangularOptions& o, double t_end) {
  const Index n = o.n, d = n + 1;
  Matrix x(n, d + 1);
  x.leftCols(d) = equiangular_any(n, d, o.rho0);
  x.col(d).setConstant(o.r0);
  IntegratorOptions io;
  io.method = Method::dopri5;
  io.rtol = 1e-12;
  io.atol = 1e-12;
  io.dt = 1e-3 * t_end;
  IntegratorState st;
  Vector times(4);
  times << 0.25 * t_end, 0.5 * t_end, 0.75 * t_end, t_end;
  const EquiangularSolution sol = solve_equiangular(o, times);
  const bool mix = o.scheme == Scheme::mix_ln;
  for (Index k = 0; k < times.size(); ++k) {
    if (mix && st.t < o.tau && times[k] > o.tau) advance(test::scheme_ode(o, false), x, st, o.tau, io);
    advance(test::scheme_ode(o, mix && st.t >= o.tau), x, st, times[k], io);
    const auto [lo, hi] = test::cosine_range(x);
    const std::string what = to_string(o.model) + " " + to_string(o.scheme) +
                             " n=" + std::to_string(n) + " beta=" + std::to_string(o.beta) +
                             " t=" + std::to_string(times[k]);
    EXPECT_LT(hi - lo, kEquiangularSpread) << what;
    EXPECT_NEAR(lo, sol.rho[k], kFollowRtol * std::abs(sol.rho[k])) << what;
    EXPECT_NEAR(1.0 - lo, sol.one_minus_rho[k], kFollowRtol * sol.one_minus_rho[k]) << what;
    EXPECT_NEAR(x(0, d), sol.r[k], kFollowRtol * sol.r[k]) << what;
    EXPECT_LT((x.col(d).array() - x(0, d)).abs().maxCoeff(), kEquiangularSpread) << what;
  }
}

TEST(TheoryEquiangular, ParticlesFollowOdeSaUsa) {
  set_num_threads(1);  // a handful of particles: thread start-up would dominate
  for (TheoryModel m : {TheoryModel::sa, TheoryModel::usa})
    for (Index n : {3, 8})
      for (double beta : {1.0, 4.0})
        for (double rho0 : {0.0, 0.3, -0.2 / static_cast<double>(n - 1)}) {
          EquiangularOptions o;
          o.model = m;
          o.n = n;
          o.beta = beta;
          o.rho0 = rho0;
          // Horizon of a few time scales 1/lambda0, so 1 - rho stays well above round-off.
          const double t_end = m == TheoryModel::sa ? 3.0 : 3.0 * std::exp(-beta);
          check_particles_follow_ode(o, t_end);
        }
}

TEST(TheoryEquiangular, ParticlesFollowOdeEveryScheme) {
  set_num_threads(1);
  for (TheoryModel m : {TheoryModel::sa, TheoryModel::usa})
    for (Scheme s :
         {Scheme::post_ln, Scheme::pre_ln, Scheme::mix_ln,
          Scheme::peri_ln, Scheme::ngpt, Scheme::sqrt_scaling}) {
      EquiangularOptions o;
      o.model = m;
      o.scheme = s;
      o.n = 5;
      o.beta = 2.0;
      o.rho0 = 0.1;
      o.r0 = 1.5;
      o.alpha = 0.7;
      const double t_end = m == TheoryModel::sa ? 4.0 : 4.0 * std::exp(-o.beta);
      o.tau = 0.4 * t_end;
      check_particles_follow_ode(o, t_end);
    }
}

// The same check with the flow engine's own fields (flow.hpp: FieldKind sa/usa, Scheme).
// mix-LN is left to the test-local field above: the engine switches at t >= tau inside a
// step, so its accuracy at the switch is the step's, not the tolerance's.
TEST(TheoryEquiangular, FlowEngineFollowsOde) {
  set_num_threads(1);
  for (TheoryModel m : {TheoryModel::sa, TheoryModel::usa})
    for (Scheme s : {Scheme::post_ln, Scheme::pre_ln,
                                Scheme::peri_ln, Scheme::ngpt,
                                Scheme::sqrt_scaling}) {
      EquiangularOptions o;
      o.model = m;
      o.scheme = s;
      o.n = 6;
      o.beta = 1.5;
      o.rho0 = 0.2;
      o.r0 = s == Scheme::post_ln ? 1.0 : 1.5;
      o.alpha = 0.7;
      FlowOptions fo;
      fo.kind = m == TheoryModel::sa ? FieldKind::sa : FieldKind::usa;
      fo.beta = o.beta;
      fo.scheme.scheme = s == Scheme::post_ln ? Scheme::none : s;
      fo.scheme.alpha = o.alpha;
      const Index d = o.n + 1;
      const Flow flow(fo, o.n, d);
      Matrix state = flow.initial_state(o.r0 * equiangular(o.n, d, o.rho0));
      FlowState fs = flow.initial_flow_state();
      IntegratorOptions io;
      io.method = Method::dopri5;
      io.rtol = 1e-12;
      io.atol = 1e-12;
      const double t_end = m == TheoryModel::sa ? 3.0 : 3.0 * std::exp(-o.beta);
      io.dt = 1e-3 * t_end;
      Vector times(1);
      times << t_end;
      const EquiangularSolution sol = solve_equiangular(o, times);
      flow.advance(state, fs, t_end, io);
      Matrix theta_r(o.n, d + 1);  // [theta | r] for cosine_range
      theta_r.leftCols(d) = state.leftCols(d);
      theta_r.col(d) = s == Scheme::post_ln ? Vector::Ones(o.n) : Vector(state.col(d));
      const auto [lo, hi] = test::cosine_range(theta_r);
      const std::string what = to_string(m) + " " + to_string(s);
      EXPECT_LT(hi - lo, kEquiangularSpread) << what;
      EXPECT_NEAR(1.0 - lo, sol.one_minus_rho[0], kFollowRtol * sol.one_minus_rho[0]) << what;
      EXPECT_NEAR(theta_r(0, d), sol.r[0], kFollowRtol * sol.r[0]) << what;
    }
}

// Fits -d log u / d g between two late output times of the ODE solution.
double late_slope(const EquiangularOptions& o, double t1, double t2) {
  Vector times(2);
  times << t1, t2;
  const EquiangularSolution s = solve_equiangular(o, times);
  const DecayKind kind = linearized_law(o).kind;
  return -(std::log(s.one_minus_rho[1]) - std::log(s.one_minus_rho[0])) /
         (decay_variable(kind, t2, s.r[1]) - decay_variable(kind, t1, s.r[0]));
}

TEST(TheoryEquiangular, LinearizedRatesRecoveredFromOde) {
  // The rate at finite u differs from its u -> 0 limit by O((beta + 1) u); at the late times
  // below u < 1e-9, so 1e-6 leaves room for the 1e-12 integration tolerance too.
  constexpr double kRateRtol = 1e-6;
  EquiangularOptions o;
  o.n = 16;
  o.beta = 3.0;
  o.rho0 = 0.2;
  EXPECT_EQ(linearized_law(o).rate, 2.0);
  EXPECT_NEAR(late_slope(o, 14.0, 16.0), 2.0, kRateRtol * 2.0);
  o.model = TheoryModel::usa;
  const double usa = 2.0 * std::exp(o.beta);
  EXPECT_NEAR(linearized_law(o).rate, usa, 1e-15 * usa);
  EXPECT_NEAR(late_slope(o, 14.0 / usa * 2.0, 16.0 / usa * 2.0), usa, kRateRtol * usa);
  for (TheoryModel m : {TheoryModel::sa, TheoryModel::usa}) {
    o.model = m;
    o.scheme = Scheme::ngpt;
    o.alpha = 0.5;
    EXPECT_NEAR(late_slope(o, 30.0, 34.0), 1.0, kRateRtol);
    o.scheme = Scheme::sqrt_scaling;
    const double lam = m == TheoryModel::sa ? 2.0 : usa;
    // 2 lam (sqrt(t + 1) - 1) = 40 and 44: u < 1e-10 even after USA's slow start at rho0.
    const double t1 = std::pow(1.0 + 20.0 / lam, 2.0) - 1.0, t2 = std::pow(1.0 + 22.0 / lam, 2.0) - 1.0;
    EXPECT_NEAR(late_slope(o, t1, t2), 2.0 * lam, kRateRtol * 2.0 * lam);
    for (Scheme s : {Scheme::pre_ln, Scheme::peri_ln}) {
      o.scheme = s;
      EXPECT_EQ(linearized_law(o).kind, DecayKind::power);
      // u ~ r^-2 with r ~ t: at t ~ 1e6 (r ~ 1e6, u ~ 1e-12) the slope in log r is 2 + O(u).
      EXPECT_NEAR(late_slope(o, 1e6, 2e6), 2.0, kRateRtol) << to_string(s);
    }
  }
}

TEST(TheoryEquiangular, PreLnDecaysLikeTMinusTwo) {
  // The statement of docs/math.md section 6.1, 1 - rho ~ t^-2: the slope in log t approaches 2 like
  // 2 (1 - c / t) (r = c + t asymptotically), so at t ~ 1e6 it is within 1e-4 of 2 for c = O(10).
  constexpr double kPowerTol = 1e-4;
  EquiangularOptions o;
  o.scheme = Scheme::pre_ln;
  o.n = 8;
  o.beta = 1.0;
  Vector times(2);
  times << 1e6, 2e6;
  const EquiangularSolution s = solve_equiangular(o, times);
  const double slope = -std::log(s.one_minus_rho[1] / s.one_minus_rho[0]) / std::log(2.0);
  EXPECT_NEAR(slope, 2.0, kPowerTol);
}

TEST(TheoryEquiangular, FixedPointsAndMixSwitch) {
  EquiangularOptions o;
  o.n = 6;
  o.beta = 2.0;
  Vector times(3);
  times << 0.0, 1.0, 5.0;
  o.rho0 = 1.0;  // a single cluster stays
  EXPECT_EQ(solve_equiangular(o, times).one_minus_rho.maxCoeff(), 0.0);
  o.rho0 = -1.0 / 5.0;  // the regular simplex is a fixed point (1 + (n-1) rho = 0)
  const EquiangularSolution simplex = solve_equiangular(o, times);
  EXPECT_NEAR(simplex.rho[2], -0.2, 1e-15);
  // mix-LN equals post-LN up to tau and then moves the radius.
  o.rho0 = 0.0;
  o.tau = 1.0;
  const EquiangularSolution post = solve_equiangular(o, times);
  o.scheme = Scheme::mix_ln;
  const EquiangularSolution mix = solve_equiangular(o, times);
  EXPECT_EQ(mix.rho[1], post.rho[1]);
  EXPECT_EQ(mix.r[1], 1.0);
  EXPECT_GT(mix.r[2], 1.0);
  EXPECT_GT(mix.one_minus_rho[2], post.one_minus_rho[2]);  // pre-LN phase is slower
}

TEST(TheoryEquiangular, RejectsBadOptions) {
  Vector times(1);
  times << 1.0;
  EquiangularOptions o;
  o.n = 1;
  EXPECT_TRUE(test::throws_with([&] { solve_equiangular(o, times); },
                                "theory equiangular: n = 1, must be >= 2"));
  o = EquiangularOptions{};
  o.rho0 = 1.5;
  EXPECT_TRUE(test::throws_with([&] { solve_equiangular(o, times); }, "rho0 = 1.5, must be in"));
  o = EquiangularOptions{};
  o.beta = -1.0;
  EXPECT_TRUE(test::throws_with([&] { solve_equiangular(o, times); }, "beta = -1, must be > 0"));
  o = EquiangularOptions{};
  Vector bad(2);
  bad << 2.0, 1.0;
  EXPECT_TRUE(test::throws_with([&] { solve_equiangular(o, bad); }, "times[1] = 1, must be >= times[0]"));
  EXPECT_TRUE(test::throws_with([] { parse_scheme("layer-ln", "theory"); },
                                "theory: scheme = \"layer-ln\", must be one of"));
  EquiangularOptions none;
  none.scheme = Scheme::none;
  EXPECT_TRUE(test::throws_with([&] { none.validate(); }, "scheme = \"none\", must be a normalization scheme"));
  EXPECT_TRUE(test::throws_with([] { parse_theory_model("mlp"); }, "model = mlp, must be one of sa, usa"));
}

}  // namespace
}  // namespace attnflow
