// Attention on measures: softmax and none against a dense reference built from docs/math.md
// section 1's formulas, multi-head, token duplication, permutation, bad input.
#include "attnflow/attention/attention.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "attnflow/measure/sample.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::all_close;
using test::random_matrix;
using test::random_weights;
using test::throws_with;

// Kernel vs dense: both double, max-shifted; different summation order.
constexpr double kTol = 1e-10;

// Dense reference straight from docs/math.md section 1: P_ij = b_j k_ij / sum_l b_l k_il (softmax)
// or b_j k_ij (none), k_ij = exp(beta <Q x_i, K y_j>); out_i = W sum_j P_ij V v_j.
Matrix dense_attention(const Matrix& x, const Matrix& y, const Vector& b, const Matrix& vals,
                       double beta, const Matrix& q, const Matrix& k, const Matrix& v,
                       const Matrix& w, Normalization norm) {
  const Matrix qx = q.size() ? Matrix(x * q.transpose()) : x;
  const Matrix ky = k.size() ? Matrix(y * k.transpose()) : y;
  const Matrix vv = v.size() ? Matrix(vals * v.transpose()) : vals;
  Matrix out = Matrix::Zero(x.rows(), vv.cols());
  for (Index i = 0; i < x.rows(); ++i) {
    Vector s(y.rows());
    for (Index j = 0; j < y.rows(); ++j) s[j] = beta * qx.row(i).dot(ky.row(j));
    const double m = norm == Normalization::none ? 0.0 : s.maxCoeff();
    double z = 0.0;
    for (Index j = 0; j < y.rows(); ++j) {
      const double pij = b[j] * std::exp(s[j] - m);
      z += pij;
      out.row(i) += pij * vv.row(j);
    }
    if (norm == Normalization::softmax) out.row(i) /= z;
  }
  return w.size() ? Matrix(out * w.transpose()) : out;
}

TEST(Attention, SoftmaxAndNoneMatchDenseReference) {
  Rng rng(1);
  for (int trial = 0; trial < 12; ++trial) {
    const Index n = 5 + trial * 17, m = 3 + trial * 23, d = 1 + trial % 5, p = 1 + trial % 3;
    const Matrix x = random_matrix(n, d, rng), y = random_matrix(m, d, rng);
    const Vector a = random_weights(n, rng), b = random_weights(m, rng);
    const Matrix vals = random_matrix(m, p, rng);
    for (Normalization norm : {Normalization::softmax, Normalization::none}) {
      AttentionOptions opt;
      opt.beta = 0.7 * (trial % 4);
      opt.normalization = norm;
      const auto r = attention(Measure(x, a), Measure(y, b), vals, opt);
      const Matrix ref = dense_attention(x, y, b, vals, opt.beta, {}, {}, {}, {}, norm);
      EXPECT_TRUE(all_close(r.out, ref, kTol, kTol)) << "trial " << trial << " " << to_string(norm);
    }
  }
}

TEST(Attention, MultiHeadSumsHeads) {
  Rng rng(2);
  const Index n = 40, m = 50, d = 4;
  const Matrix x = random_matrix(n, d, rng), y = random_matrix(m, d, rng);
  const Vector b = random_weights(m, rng);
  AttentionOptions opt;
  opt.beta = 1.3;
  Matrix ref = Matrix::Zero(n, 3);
  for (int h = 0; h < 3; ++h) {
    AttentionHead hd;
    hd.q = random_matrix(2, d, rng);
    hd.k = random_matrix(2, d, rng);
    hd.v = random_matrix(5, d, rng);
    hd.w = random_matrix(3, 5, rng);
    hd.normalization = h == 1 ? Normalization::none : Normalization::softmax;
    ref += dense_attention(x, y, b, y, opt.beta, hd.q, hd.k, hd.v, hd.w, hd.normalization);
    opt.heads.push_back(hd);
  }
  const auto r = attention(Measure(x), Measure(y, b), std::nullopt, opt);
  EXPECT_TRUE(all_close(r.out, ref, kTol, kTol));
  ASSERT_EQ(r.lse.size(), 3u);
}

TEST(Attention, LseIsLogNormalizer) {
  Rng rng(3);
  const Matrix x = random_matrix(20, 3, rng), y = random_matrix(30, 3, rng);
  const Vector b = random_weights(30, rng);
  AttentionOptions opt;
  opt.beta = 2.0;
  const auto r = attention(Measure(x), Measure(y, b), std::nullopt, opt);
  for (Index i = 0; i < 20; ++i) {
    double z = 0.0;
    for (Index j = 0; j < 30; ++j) z += b[j] * std::exp(2.0 * x.row(i).dot(y.row(j)));
    EXPECT_NEAR(r.lse[0][i], std::log(z), 1e-12 * (1 + std::abs(std::log(z))));
  }
}

TEST(Attention, Beta1000OnTheSphereIsFinite) {
  Rng rng(4);
  const Measure mu(sample_sphere(500, 3, rng));
  AttentionOptions opt;
  opt.beta = 1000.0;
  const auto r = self_attention(mu, opt);
  EXPECT_TRUE(r.out.allFinite());
  const Matrix ref = dense_attention(mu.points(), mu.points(), mu.weights(), mu.points(), 1000.0,
                                     {}, {}, {}, {}, Normalization::softmax);
  EXPECT_TRUE(all_close(r.out, ref, 1e-9, 1e-9));
  // Unnormalized attention overflows at beta = 1000: a clear error naming the normalization,
  // never a silent inf/NaN; the input is too large, so it is invalid_argument (M1).
  opt.normalization = Normalization::none;
  EXPECT_TRUE(test::throws_with([&] { self_attention(mu, opt); },
                                "is not finite (for normalization 'none' exp(beta <q, k>) overflows"));
}

TEST(Attention, TokenDuplicationInvariance) {
  // Splitting key j into two copies of half its weight changes nothing (docs/math.md section 0).
  Rng rng(5);
  for (Normalization norm : {Normalization::softmax, Normalization::none}) {
    const Matrix x = random_matrix(30, 3, rng), y = random_matrix(25, 3, rng);
    const Vector b = random_weights(25, rng);
    Matrix y2(26, 3);
    y2 << y, y.row(7);
    Vector b2(26);
    b2 << b, b[7] / 2;
    b2[7] /= 2;
    AttentionOptions opt;
    opt.beta = 3.0;
    opt.normalization = norm;
    const auto r1 = attention(Measure(x), Measure(y, b), std::nullopt, opt);
    const auto r2 = attention(Measure(x), Measure(y2, b2), std::nullopt, opt);
    EXPECT_TRUE(all_close(r2.out, r1.out, 1e-12, 1e-12));
  }
}

TEST(Attention, PermutationEquivariance) {
  Rng rng(6);
  const Index n = 64;
  const Matrix x = random_matrix(n, 3, rng);
  const Vector w = random_weights(n, rng);
  std::vector<Index> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  for (Index i = n - 1; i > 0; --i) std::swap(perm[i], perm[static_cast<Index>(rng.uniform() * (i + 1))]);
  Matrix xp(n, 3);
  Vector wp(n);
  for (Index i = 0; i < n; ++i) {
    xp.row(i) = x.row(perm[i]);
    wp[i] = w[perm[i]];
  }
  AttentionOptions opt;
  opt.beta = 4.0;
  const auto r = self_attention(Measure(x, w), opt);
  const auto rp = self_attention(Measure(xp, wp), opt);
  for (Index i = 0; i < n; ++i)
    EXPECT_TRUE(all_close(Matrix(rp.out.row(i)), Matrix(r.out.row(perm[i])), 1e-12, 1e-12));
}

TEST(Attention, RejectsBadInputWithMessages) {
  Matrix x(3, 2);
  x << 1, 2, 3, 4, 5, 6;
  Matrix bad = x;
  bad(1, 1) = std::nan("");
  EXPECT_TRUE(throws_with([&] { Measure m(bad, "queries"); }, "queries: points[1, 1] = nan, must be finite"));
  bad(1, 1) = INFINITY;
  EXPECT_TRUE(throws_with([&] { Measure m(bad, "keys"); }, "keys: points[1, 1] = inf, must be finite"));
  EXPECT_TRUE(throws_with([&] { Measure m(x, Vector::Constant(3, -1.0), "keys"); },
                          "keys: weights[0] = -1, must be >= 0"));
  EXPECT_TRUE(throws_with([&] { Measure m(x, Vector::Zero(3), "keys"); },
                          "keys: total weight = 0, must be > 0"));
  EXPECT_TRUE(throws_with([&] { Measure m(x, Vector::Ones(2), "keys"); },
                          "keys: weights size = 2, must equal the number of points (3)"));
  EXPECT_TRUE(throws_with([&] { Measure m(Matrix(0, 2), "keys"); }, "keys: empty measure"));
  const Measure q(x), k3(Matrix::Ones(4, 3));
  AttentionOptions opt;
  EXPECT_TRUE(throws_with([&] { attention(q, k3, std::nullopt, opt); },
                          "queries have dimension 2 and keys 3, must be equal"));
  opt.beta = std::nan("");
  EXPECT_TRUE(throws_with([&] { self_attention(q, opt); }, "attention: beta = nan, must be finite"));
  opt.beta = 1.0;
  EXPECT_TRUE(throws_with([&] { attention(q, q, Matrix::Ones(2, 2), opt); },
                          "values have 2 rows, must equal the number of keys (3)"));
  AttentionHead hd;
  hd.q = Matrix::Ones(2, 5);
  opt.heads = {hd};
  EXPECT_TRUE(throws_with([&] { self_attention(q, opt); }, "heads[0].q has 5 columns, must be 2"));
  EXPECT_TRUE(throws_with([] { parse_normalization("hardmax", "attention"); },
                          "attention: normalization = \"hardmax\", must be one of softmax, sinkhorn, none"));
}

}  // namespace
}  // namespace attnflow
