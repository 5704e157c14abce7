// Normalization schemes (docs/math.md section 5.4): rates against the table written out here,
// post-LN = the plain sphere flow, sqrt-scaling = post-LN in the time s = 2 (sqrt(t + 1) - 1),
// mix-LN = post-LN up to tau, state conversions and option messages.
#include "attnflow/flow/scheme.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "attnflow/flow/flow.hpp"
#include "attnflow/measure/sample.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::all_close;
using test::random_matrix;
using test::throws_with;

TEST(FlowScheme, RatesFollowTheSpecTable) {
  Rng rng(51);
  const Index n = 9, d = 4;
  const Matrix theta = sample_sphere(n, d, rng);
  Vector r(n);
  for (Index i = 0; i < n; ++i) r[i] = 0.5 + rng.uniform();
  Matrix a = random_matrix(n, d, rng);
  a.row(3).setZero();  // |A| = 0: peri-LN and nGPT give zero rates
  SchemeOptions o;
  o.tau = 1.0;
  o.alpha = 1.7;
  for (Scheme s : {Scheme::post_ln, Scheme::pre_ln, Scheme::mix_ln, Scheme::peri_ln, Scheme::ngpt,
                   Scheme::sqrt_scaling}) {
    for (double t : {0.5, 2.0}) {
      o.scheme = s;
      Matrix dtheta;
      Vector dr;
      scheme_rates(o, t, theta, r, a, dtheta, dr);
      for (Index i = 0; i < n; ++i) {
        const Vector th = theta.row(i).transpose(), ai = a.row(i).transpose();
        const Vector pa = ai - th.dot(ai) * th;
        const double na = ai.norm();
        Vector e_dth;
        double e_dr = 0.0;
        const bool pre = s == Scheme::pre_ln || (s == Scheme::mix_ln && t >= o.tau);
        if (s == Scheme::post_ln || (s == Scheme::mix_ln && t < o.tau)) {
          e_dth = pa;
        } else if (pre) {
          e_dth = pa / r[i];
          e_dr = th.dot(ai);
        } else if (s == Scheme::peri_ln) {
          e_dth = na > 0 ? Vector(pa / (r[i] * na)) : Vector::Zero(d);
          e_dr = na > 0 ? th.dot(ai) / na : 0.0;
        } else if (s == Scheme::ngpt) {
          e_dth = na > 0 ? Vector(o.alpha * pa / na) : Vector::Zero(d);
        } else {
          e_dth = pa / std::sqrt(t + 1.0);
        }
        EXPECT_TRUE(all_close(Vector(dtheta.row(i).transpose()), e_dth, 1e-15, 1e-15))
            << to_string(s) << " t " << t << " row " << i;
        EXPECT_NEAR(dr[i], e_dr, 1e-15) << to_string(s) << " t " << t << " row " << i;
      }
    }
  }
}

struct SchemeRun {
  Matrix positions;
  Matrix state;
};

SchemeRun run_flow(Scheme scheme, const Matrix& p0, double t_end, Method m, double dt, double tol = 1e-6) {
  FlowOptions o;
  o.beta = 2.0;
  o.scheme.scheme = scheme;
  o.scheme.tau = 1.0;
  const Flow f(o, p0.rows(), p0.cols());
  Matrix x = f.initial_state(p0);
  FlowState st = f.initial_flow_state();
  IntegratorOptions io;
  io.method = m;
  io.dt = dt;
  io.rtol = io.atol = tol;
  f.advance(x, st, t_end, io);
  return {f.positions(x), x};
}

TEST(FlowScheme, PostLnIsThePlainSphereFlowAndKeepsRadii) {
  Rng rng(52);
  const Matrix p0 = sample_sphere(20, 3, rng);
  const SchemeRun post = run_flow(Scheme::post_ln, p0, 2.0, Method::rk4, 0.05);
  const SchemeRun plain = run_flow(Scheme::none, p0, 2.0, Method::rk4, 0.05);
  // Same arithmetic up to the order of the projection's operations: a few ulps per step.
  EXPECT_TRUE(all_close(post.positions, plain.positions, 1e-12, 1e-12));
  EXPECT_TRUE(all_close(Matrix(post.state.col(3)), Matrix::Ones(20, 1), 0, 1e-15));
}

TEST(FlowScheme, SqrtScalingIsPostLnInReparametrizedTime) {
  Rng rng(53);
  const Matrix p0 = sample_sphere(16, 3, rng);
  // dtheta/dt = F(theta) / sqrt(t + 1) => theta(t) = theta_post(2 (sqrt(t + 1) - 1)); t = 3 -> s = 2.
  const SchemeRun sq = run_flow(Scheme::sqrt_scaling, p0, 3.0, Method::dopri5, 0.01, 1e-11);
  const SchemeRun post = run_flow(Scheme::post_ln, p0, 2.0, Method::dopri5, 0.01, 1e-11);
  // Two tolerance-1e-11 integrations of different ODEs: global errors ~1e-9.
  constexpr double kTimeChangeTol = 1e-7;
  EXPECT_TRUE(all_close(sq.positions, post.positions, kTimeChangeTol, kTimeChangeTol));
}

TEST(FlowScheme, MixLnIsPostLnUntilTauThenRadiiMove) {
  Rng rng(54);
  const Matrix p0 = sample_sphere(16, 3, rng);
  const SchemeRun mix1 = run_flow(Scheme::mix_ln, p0, 1.0, Method::euler, 0.1);
  const SchemeRun post1 = run_flow(Scheme::post_ln, p0, 1.0, Method::euler, 0.1);
  EXPECT_TRUE(all_close(mix1.positions, post1.positions, 0, 0));
  const SchemeRun mix2 = run_flow(Scheme::mix_ln, p0, 2.0, Method::euler, 0.1);
  EXPECT_GT((mix2.state.col(3) - Vector::Ones(16)).norm(), 1e-3);
  // Pre-LN: dr/dt = <theta, A> > 0 once clustered (A is a softmax average of nearby thetas).
  const SchemeRun pre = run_flow(Scheme::pre_ln, p0, 3.0, Method::rk4, 0.05);
  EXPECT_GT(pre.state.col(3).minCoeff(), 1.0);
}

TEST(FlowScheme, StateConversionsAndMessages) {
  Matrix x(2, 2);
  x << 3, 4, 0, -2;
  const Matrix s = scheme_state(x);
  EXPECT_TRUE(all_close(s.row(0), Matrix((Matrix(1, 3) << 0.6, 0.8, 5).finished()), 1e-15, 0));
  EXPECT_TRUE(all_close(scheme_positions(s), x, 1e-15, 0));
  EXPECT_TRUE(throws_with([] { scheme_state(Matrix::Zero(1, 2)); },
                          "flow: initial state row 0 has |x| = 0, must be > 0"));
  SchemeOptions o;
  o.alpha = 0;
  EXPECT_TRUE(throws_with([&] { o.validate(); }, "flow: scheme.alpha = 0, must be > 0"));
  EXPECT_EQ(parse_scheme("peri-ln"), Scheme::peri_ln);
  EXPECT_EQ(parse_scheme("sqrt"), Scheme::sqrt_scaling);
  // The spellings the equiangular theory accepted before it shared this parser.
  EXPECT_EQ(parse_scheme("Post"), Scheme::post_ln);
  EXPECT_EQ(parse_scheme("PRE-LN"), Scheme::pre_ln);
  EXPECT_EQ(parse_scheme("sqrt-scaling"), Scheme::sqrt_scaling);
  EXPECT_EQ(to_string(Scheme::ngpt), "ngpt");
}

}  // namespace
}  // namespace attnflow
