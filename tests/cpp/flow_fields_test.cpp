// Flow fields against dense references written from docs/math.md sections 4-5 (materialized
// exp(beta <Q x_i, K x_j>) matrices, direct pair sums), the Kuramoto = SA/USA identity, the
// mean-shift = beta * SA identity, overflow handling, threads, and option messages.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "attnflow/flow/flow.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/measure/sample.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::all_close;
using test::random_matrix;
using test::random_weights;
using test::throws_with;

// Kernel (tiled, max-shifted, SIMD exp) vs dense (plain std::exp): different summation order
// and exp implementation, a few ulps per term.
constexpr double kFieldTol = 1e-11;

Matrix dense_exp_affinity(const Matrix& x, double beta, const Head& h) {
  const Matrix qx = h.q.size() ? Matrix(x * h.q.transpose()) : x;
  const Matrix kx = h.k.size() ? Matrix(x * h.k.transpose()) : x;
  return (beta * qx * kx.transpose()).array().exp().matrix();
}

// docs/math.md section 5: SA / USA with weights, summed over heads, projected when sphere.
Matrix dense_attention_field(const Matrix& x, const Vector& w, double beta,
                             const std::vector<Head>& heads, bool normalized, bool sphere) {
  Matrix out = Matrix::Zero(x.rows(), x.cols());
  for (const Head& h : heads) {
    Matrix k = dense_exp_affinity(x, beta, h);
    for (Index j = 0; j < x.rows(); ++j) k.col(j) *= w[j];
    if (normalized)
      for (Index i = 0; i < x.rows(); ++i) k.row(i) /= k.row(i).sum();
    Matrix vx = h.v.size() ? Matrix(x * h.v.transpose()) : x;
    if (h.w.size()) vx = vx * h.w.transpose();  // the output map W V x_j
    out += k * vx;
  }
  if (sphere)
    for (Index i = 0; i < x.rows(); ++i) out.row(i) -= x.row(i).dot(out.row(i)) * x.row(i);
  return out;
}

Matrix eval(const Flow& f, const Matrix& state, double t = 0.0) {
  Matrix dx(state.rows(), state.cols());
  f.field(t, state, dx);
  return dx;
}

TEST(FlowFields, SaAndUsaMatchDenseWithHeadsWeightsSphereAndRd) {
  Rng rng(11);
  const Index n = 37, d = 4;
  const Matrix pts = sample_sphere(n, d, rng);
  const Vector w = random_weights(n, rng);
  for (FieldKind kind : {FieldKind::sa, FieldKind::usa}) {
    for (bool sphere : {true, false}) {
      FlowOptions o;
      o.kind = kind;
      o.beta = 2.5;
      o.weights = w;
      o.sphere = sphere;
      o.heads = make_heads(3, d, "gaussian", 5);
      o.heads[1].q = random_matrix(2, d, rng);  // a head with d_k = 2 != d
      o.heads[1].k = random_matrix(2, d, rng);
      const Flow f(o, n, d);
      const Matrix x = sphere ? pts : Matrix(1.3 * pts);
      const Matrix ref = dense_attention_field(x, w, o.beta, o.heads, kind == FieldKind::sa, sphere);
      EXPECT_TRUE(all_close(eval(f, f.initial_state(x)), ref, kFieldTol, kFieldTol))
          << to_string(kind) << " sphere " << sphere;
    }
  }
}

// A head's output map w (head.hpp): v (d_v, d) then w (d, d_v), summed over heads.
TEST(FlowFields, HeadsWithAnOutputMapMatchDense) {
  Rng rng(13);
  const Index n = 23, d = 3;
  const Matrix x = sample_sphere(n, d, rng);
  const Vector w = random_weights(n, rng);
  for (FieldKind kind : {FieldKind::sa, FieldKind::usa}) {
    FlowOptions o;
    o.kind = kind;
    o.beta = 1.5;
    o.weights = w;
    o.heads = make_heads(2, d, "gaussian", 9);
    o.heads[0].v = random_matrix(2, d, rng);  // d_v = 2
    o.heads[0].w = random_matrix(d, 2, rng);
    o.heads[1].w = random_matrix(d, d, rng);  // v (d, d), w (d, d)
    const Flow f(o, n, d);
    const Matrix ref = dense_attention_field(x, w, o.beta, o.heads, kind == FieldKind::sa, true);
    EXPECT_TRUE(all_close(eval(f, f.initial_state(x)), ref, kFieldTol, kFieldTol)) << to_string(kind);
  }
}

// Flow heads go through the one head check (validate_head, head.hpp), named "flow: heads[i].".
TEST(FlowFields, ABadHeadIsNamedByTheOneHeadCheck) {
  FlowOptions o;
  o.heads.resize(2);
  o.heads[1].v = Matrix::Ones(2, 3);  // d_v = 2 needs w (3, 2) to map back to d = 3
  EXPECT_TRUE(throws_with([&] { Flow(o, 4, 3); },
                          "flow: heads[1].v has shape (2, 3), must be (3, 3) (heads[1].v has 2 "
                          "rows, must be d_out = 3 while heads[1].w is empty (the identity))"));
  o.heads[1].w = Matrix::Ones(2, 2);
  EXPECT_TRUE(throws_with([&] { Flow(o, 4, 3); },
                          "flow: heads[1].w has shape (2, 2), must be (3, 2) (heads[1].w has 2 "
                          "rows, must be d_out = 3)"));
  o.heads[1].w = Matrix::Ones(3, 2);
  EXPECT_NO_THROW(Flow(o, 4, 3));
  o.heads[1].k = Matrix(0, 3);  // never the identity
  EXPECT_TRUE(throws_with([&] { Flow(o, 4, 3); },
                          "flow: heads[1].k has shape (0, 3), must have >= 1 row and column"));
  // Non-attention kinds take one identity head only; an output map is not the identity.
  FlowOptions m;
  m.kind = FieldKind::meanshift;
  m.heads.resize(1);
  m.heads[0].w = Matrix::Identity(3, 3);
  EXPECT_TRUE(throws_with([&] { Flow(m, 4, 3); },
                          "flow: heads = 1, must be one identity head (empty q, k, v, w) for kind "
                          "meanshift"));
}

TEST(FlowFields, SinkhornFieldMatchesDenseSinkhornConditional) {
  Rng rng(12);
  const Index n = 25, d = 3;
  const Matrix x = sample_sphere(n, d, rng);
  const Vector w = random_weights(n, rng);
  FlowOptions o;
  o.kind = FieldKind::sinkhorn;
  o.beta = 3.0;
  o.weights = w;
  o.sinkhorn.tol = 1e-13;
  const Flow f(o, n, d);
  // Dense Sinkhorn on K_ij = exp(beta <x_i, x_j>): pi = diag(a) K diag(b), marginals (w, w).
  const Matrix k = dense_exp_affinity(x, o.beta, Head{});
  Vector a = Vector::Ones(n), b = Vector::Ones(n);
  for (int it = 0; it < 5000; ++it) {
    a = w.cwiseQuotient(k * b.cwiseProduct(Vector::Ones(n)));
    b = w.cwiseQuotient(k.transpose() * a);
  }
  Matrix p = a.asDiagonal() * k * b.asDiagonal();  // pi
  for (Index i = 0; i < n; ++i) p.row(i) /= w[i];   // conditional pi_ij / w_i
  Matrix ref = p * x;
  for (Index i = 0; i < n; ++i) ref.row(i) -= x.row(i).dot(ref.row(i)) * x.row(i);
  // Sinkhorn stops at marginal error 1e-13; the conditional inherits about that error.
  constexpr double kSinkTol = 1e-9;
  EXPECT_TRUE(all_close(eval(f, x), ref, kSinkTol, kSinkTol));
  EXPECT_EQ(f.diagnostics().sinkhorn_not_converged, 0);
}

// docs/math.md section 5, Kuramoto form: dt_i/dt = -sum_j w_j e^{beta cos(t_i - t_j)} sin(t_i -
// t_j), divided by sum_k w_k e^{beta cos(t_i - t_k)} for SA.
TEST(FlowFields, KuramotoMatchesSpecFormulaAndSaUsaOnTheCircle) {
  Rng rng(13);
  const Index n = 30;
  const Matrix pts = sample_sphere(n, 2, rng);
  const Vector w = random_weights(n, rng);
  for (Normalization norm : {Normalization::softmax, Normalization::none}) {
    FlowOptions ko;
    ko.kind = FieldKind::kuramoto;
    ko.beta = 1.7;
    ko.weights = w;
    ko.kuramoto_normalization = norm;
    const Flow kf(ko, n, 2);
    const Matrix theta = kf.initial_state(pts);
    ASSERT_EQ(theta.cols(), 1);
    const Matrix dtheta = eval(kf, theta);
    // Direct formula.
    Matrix ref(n, 1);
    for (Index i = 0; i < n; ++i) {
      double num = 0.0, den = 0.0;
      for (Index j = 0; j < n; ++j) {
        const double e = w[j] * std::exp(ko.beta * std::cos(theta(i, 0) - theta(j, 0)));
        num += e * std::sin(theta(i, 0) - theta(j, 0));
        den += e;
      }
      ref(i, 0) = norm == Normalization::softmax ? -num / den : -num;
    }
    EXPECT_TRUE(all_close(dtheta, ref, kFieldTol, kFieldTol));
    // SA / USA on the circle: dx = dtheta * (-sin t, cos t).
    FlowOptions so;
    so.kind = norm == Normalization::softmax ? FieldKind::sa : FieldKind::usa;
    so.beta = ko.beta;
    so.weights = w;
    const Flow sf(so, n, 2);
    const Matrix x = kf.positions(theta);
    const Matrix dx = eval(sf, x);
    Matrix tangential(n, 1);
    for (Index i = 0; i < n; ++i) tangential(i, 0) = -x(i, 1) * dx(i, 0) + x(i, 0) * dx(i, 1);
    EXPECT_TRUE(all_close(tangential, dtheta, kFieldTol, kFieldTol));
  }
}

TEST(FlowFields, MeanShiftIsBetaTimesSaOnSphereAndMatchesDenseInRd) {
  Rng rng(14);
  const Index n = 40, d = 3;
  const Matrix x = sample_sphere(n, d, rng);
  const Vector w = random_weights(n, rng);
  FlowOptions mo;
  mo.kind = FieldKind::meanshift;
  mo.beta = 4.0;
  mo.weights = w;
  FlowOptions so = mo;
  so.kind = FieldKind::sa;
  const Matrix ms = eval(Flow(mo, n, d), x), sa = eval(Flow(so, n, d), x);
  EXPECT_TRUE(all_close(ms, mo.beta * sa, kFieldTol, kFieldTol));
  // R^d: beta (m_i - x_i) with Gaussian weights w_j exp(-beta |x_i - x_j|^2 / 2).
  mo.sphere = false;
  const Matrix y = 2.0 * random_matrix(n, d, rng);
  Matrix ref(n, d);
  for (Index i = 0; i < n; ++i) {
    Vector num = Vector::Zero(d);
    double den = 0.0;
    for (Index j = 0; j < n; ++j) {
      const double e = w[j] * std::exp(-0.5 * mo.beta * (y.row(i) - y.row(j)).squaredNorm());
      num += e * y.row(j).transpose();
      den += e;
    }
    ref.row(i) = mo.beta * (num.transpose() / den - y.row(i));
  }
  EXPECT_TRUE(all_close(eval(Flow(mo, n, d), y), ref, kFieldTol, kFieldTol));
}

TEST(FlowFields, HardmaxMatchesBruteForceArgmax) {
  Rng rng(15);
  const Index n = 50, d = 3;
  const Matrix x = sample_sphere(n, d, rng);
  FlowOptions o;
  o.kind = FieldKind::hardmax;
  const Matrix dx = eval(Flow(o, n, d), x);
  for (Index i = 0; i < n; ++i) {
    Index best = i == 0 ? 1 : 0;
    for (Index j = 0; j < n; ++j)
      if (j != i && x.row(i).dot(x.row(j)) > x.row(i).dot(x.row(best))) best = j;
    const Vector y = x.row(best).transpose();
    const Vector ref = y - x.row(i).dot(y) * x.row(i).transpose();
    EXPECT_TRUE(all_close(Vector(dx.row(i).transpose()), ref, 1e-14, 1e-14)) << "row " << i;
  }
}

TEST(FlowFields, VlasovAggregationKernelsMatchDirectPairSums) {
  Rng rng(16);
  const Index n = 33, d = 2;
  const Matrix x = random_matrix(n, d, rng);
  const Vector w = random_weights(n, rng);
  FlowOptions o;
  o.kind = FieldKind::vlasov;
  o.sphere = false;
  o.weights = w;
  o.vlasov.sigma = 0.7;
  // F = -grad W(x - y) for W(z) = -s^2 exp(-|z|^2/(2 s^2)): F = -(x - y) exp(-|x - y|^2/(2 s^2)).
  const InteractionKernel gauss = [s = o.vlasov.sigma](const double* a, const double* b, Index dd,
                                                       double* f) {
    double r2 = 0.0;
    for (Index t = 0; t < dd; ++t) r2 += (a[t] - b[t]) * (a[t] - b[t]);
    for (Index t = 0; t < dd; ++t) f[t] += -(a[t] - b[t]) * std::exp(-r2 / (2 * s * s));
  };
  Matrix ref = Matrix::Zero(n, d);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < n; ++j) {
      Vector f = Vector::Zero(d);
      gauss(&x(i, 0), &x(j, 0), d, f.data());
      ref.row(i) += w[j] * f.transpose();
    }
  EXPECT_TRUE(all_close(eval(Flow(o, n, d), x), ref, kFieldTol, kFieldTol));
  FlowOptions c = o;
  c.vlasov.interaction = Interaction::custom;
  c.vlasov.kernel = gauss;
  EXPECT_TRUE(all_close(eval(Flow(c, n, d), x), ref, 1e-14, 1e-14));
  // Power: W(z) = |z|^a/a - |z|^b/b, grad W = (|z|^{a-2} - |z|^{b-2}) z.
  FlowOptions p = o;
  p.vlasov.interaction = Interaction::power;
  p.vlasov.a = 3.0;
  p.vlasov.b = 1.5;
  Matrix pref = Matrix::Zero(n, d);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < n; ++j) {
      if (i == j) continue;
      const Vector z = (x.row(i) - x.row(j)).transpose();
      const double r = z.norm();
      pref.row(i) -= w[j] * (std::pow(r, 1.0) - std::pow(r, -0.5)) * z.transpose();
    }
  EXPECT_TRUE(all_close(eval(Flow(p, n, d), x), pref, 1e-13, 1e-13));
}

TEST(FlowFields, UsaOverflowIsReportedAndLogShiftRescalesTime) {
  Rng rng(17);
  const Index n = 10, d = 3;
  const Matrix x = sample_sphere(n, d, rng);
  FlowOptions o;
  o.kind = FieldKind::usa;
  o.beta = 1000.0;
  try {
    eval(Flow(o, n, d), x);
    ADD_FAILURE() << "no overflow error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("usa field overflows"), std::string::npos) << e.what();
  }
  o.usa_log_shift = o.beta;
  EXPECT_TRUE(eval(Flow(o, n, d), x).allFinite());
  // At moderate beta the shifted field is exactly e^{-shift} times the plain one.
  o.beta = 5.0;
  o.usa_log_shift = 3.0;
  FlowOptions plain = o;
  plain.usa_log_shift = 0.0;
  EXPECT_TRUE(all_close(eval(Flow(o, n, d), x), std::exp(-3.0) * eval(Flow(plain, n, d), x), 1e-14, 1e-15));
}

TEST(FlowFields, TokenDuplicationInvariance) {
  Rng rng(18);
  const Index n = 12, d = 3;
  const Matrix x = sample_sphere(n, d, rng);
  Matrix x2(n + 1, d);
  x2 << x, x.row(0);
  Vector w2 = Vector::Constant(n + 1, 1.0);
  w2[0] = w2[n] = 0.5;  // the first token split into two halves
  for (FieldKind kind : {FieldKind::sa, FieldKind::usa, FieldKind::sinkhorn, FieldKind::meanshift}) {
    FlowOptions o;
    o.kind = kind;
    o.beta = 2.0;
    o.sinkhorn.tol = 1e-13;
    const Matrix a = eval(Flow(o, n, d), x);
    o.weights = w2;
    const Matrix b = eval(Flow(o, n + 1, d), x2);
    // Sinkhorn stops at 1e-13 marginal error on both problems.
    EXPECT_TRUE(all_close(Matrix(b.topRows(n)), a, 1e-9, 1e-11)) << to_string(kind);
  }
}

TEST(FlowFields, OneThreadEqualsTwoThreadsBitForBit) {
  Rng rng(19);
  const Index n = 700, d = 3;
  const Matrix x = sample_sphere(n, d, rng);
  for (FieldKind kind : {FieldKind::sa, FieldKind::usa, FieldKind::sinkhorn, FieldKind::hardmax,
                         FieldKind::vlasov}) {
    FlowOptions o;
    o.kind = kind;
    o.beta = 3.0;
    o.sinkhorn.iterations = 5;
    o.heads = kind == FieldKind::vlasov || kind == FieldKind::hardmax ? std::vector<Head>{}
                                                                      : make_heads(2, d, "goe", 1);
    o.vlasov.interaction = Interaction::power;
    const Flow f(o, n, d);
    set_num_threads(1);
    const Matrix a = eval(f, x);
    set_num_threads(2);
    const Matrix b = eval(f, x);
    set_num_threads(0);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(double) * a.size())) << to_string(kind);
  }
}

TEST(FlowFields, MakeHeadsIsSeededAndShaped) {
  const auto a = make_heads(2, 5, "goe", 9), b = make_heads(2, 5, "goe", 9);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[1].k, b[1].k);
  EXPECT_EQ(a[0].q.size(), 0);  // Q = I for goe
  EXPECT_TRUE(all_close(a[0].k, Matrix(a[0].k.transpose()), 0, 0));  // symmetric
  EXPECT_NE(a[0].k, a[1].k);
  const auto g = make_heads(1, 4, "gaussian", 9);
  EXPECT_EQ(g[0].q.rows(), 4);
  EXPECT_EQ(make_heads(3, 4, "identity", 0)[2].v.size(), 0);
}

TEST(FlowFields, BadOptionsNameTheField) {
  FlowOptions o;
  o.beta = std::nan("");
  EXPECT_TRUE(throws_with([&] { Flow(o, 4, 3); }, "flow: beta = nan, must be finite and >= 0"));
  o = FlowOptions{};
  o.kappa = -1;
  EXPECT_TRUE(throws_with([&] { Flow(o, 4, 3); }, "flow: kappa = -1, must be >= 0"));
  o = FlowOptions{};
  o.kind = FieldKind::kuramoto;
  EXPECT_TRUE(throws_with([&] { Flow(o, 4, 3); }, "flow: d = 3, must be 2 for kind kuramoto"));
  o = FlowOptions{};
  o.kind = FieldKind::meanshift;
  o.scheme.scheme = Scheme::pre_ln;
  EXPECT_TRUE(throws_with([&] { Flow(o, 4, 3); }, "flow: scheme = pre_ln, must be none for kind meanshift"));
  o = FlowOptions{};
  o.scheme.scheme = Scheme::pre_ln;
  o.sphere = false;
  EXPECT_TRUE(throws_with([&] { Flow(o, 4, 3); }, "flow: sphere = false, must be true under scheme pre_ln"));
  o = FlowOptions{};
  o.heads.push_back(Head{Matrix::Identity(3, 2), {}, {}, {}});
  EXPECT_TRUE(throws_with([&] { Flow(o, 4, 3); }, "flow: heads[0].q has shape (3, 2), must be (d_k, 3)"));
  o = FlowOptions{};
  o.kind = FieldKind::vlasov;
  o.vlasov.interaction = Interaction::power;
  o.vlasov.a = 1.0;
  EXPECT_TRUE(throws_with([&] { Flow(o, 4, 3); }, "flow: vlasov.a = 1, must be > b = 1"));
  o = FlowOptions{};
  o.scheme.tau = -1;
  EXPECT_TRUE(throws_with([&] { Flow(o, 4, 3); }, "flow: scheme.tau = -1, must be >= 0"));
  o = FlowOptions{};
  o.weights = Vector::Ones(3);
  EXPECT_TRUE(throws_with([&] { Flow(o, 4, 3); }, "flow: weights size = 3, must equal the number of points (4)"));
  EXPECT_TRUE(throws_with([] { make_heads(1, 3, "wishart", 0); },
                          "flow: qkv = \"wishart\", must be one of identity, gaussian, goe"));
  EXPECT_TRUE(throws_with([] { parse_field_kind("attn"); }, "flow: kind = \"attn\", must be one of sa, usa"));
  EXPECT_TRUE(throws_with([] { parse_scheme("layernorm"); }, "flow: scheme = \"layernorm\""));
  o = FlowOptions{};
  o.kappa = 2.0;
  const Flow noisy(o, 4, 3);
  Matrix x = Matrix::Identity(4, 3);
  FlowState st = noisy.initial_flow_state();
  IntegratorOptions io;
  io.method = Method::rk4;
  EXPECT_TRUE(throws_with([&] { noisy.advance(x, st, 1.0, io); },
                          "flow: method = rk4, must be euler when kappa > 0"));
  EXPECT_TRUE(throws_with([&] { noisy.initial_state(Matrix::Zero(4, 3)); },
                          "flow: initial points row 0 is zero"));
}

}  // namespace
}  // namespace attnflow
