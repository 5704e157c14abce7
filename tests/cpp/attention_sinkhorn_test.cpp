// Sinkhorn normalization inside attention: the facts of docs/math.md section 1, through the public
// attention() interface. With values = the identity (one-hot keys), out = P (n, m), so the
// coupling is pi = diag(a) P and can be checked entry by entry against dense references.
#include <gtest/gtest.h>

#include "attnflow/attention/attention.hpp"
#include "attnflow/measure/sample.hpp"
#include "ot_dense_reference.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::all_close;
using test::random_matrix;
using test::random_weights;

// Converged to tol 1e-12 on the column marginal; couplings then agree to rounding.
constexpr double kSinkhornTol = 1e-12;
constexpr double kAtol = 1e-12;

AttentionOptions sinkhorn_options(double beta, int iterations = 0, double tol = kSinkhornTol) {
  AttentionOptions o;
  o.beta = beta;
  o.normalization = Normalization::sinkhorn;
  o.sinkhorn.iterations = iterations;
  o.sinkhorn.tol = tol;
  o.sinkhorn.max_iterations = 100000;
  return o;
}

// pi = diag(a) P, P read off attention with one-hot values.
Matrix coupling(const Measure& mu, const Measure& nu, const AttentionOptions& o,
                NormalizationStatus* status = nullptr) {
  const Matrix eye = Matrix::Identity(nu.size(), nu.size());
  const AttentionResult r = attention(mu, nu, eye, o);
  if (status) *status = r.status.front();
  return mu.weights().asDiagonal() * r.out;
}

TEST(AttentionSinkhorn, OneIterationIsSoftmaxExactly) {
  Rng rng(41);
  const Measure mu(random_matrix(20, 3, rng), random_weights(20, rng));
  const Measure nu(random_matrix(30, 3, rng), random_weights(30, rng));
  const Matrix vals = random_matrix(30, 2, rng);
  AttentionOptions soft;
  soft.beta = 2.5;
  const AttentionResult s = attention(mu, nu, vals, soft);
  const AttentionResult k = attention(mu, nu, vals, sinkhorn_options(2.5, 1));
  EXPECT_TRUE(s.out == k.out);  // bit for bit: the first half-step from g = 0 is softmax
  EXPECT_EQ(k.status.front().iterations, 1);
}

TEST(AttentionSinkhorn, CouplingMatchesDenseReferenceAndHasBothMarginals) {
  Rng rng(42);
  const Measure mu(random_matrix(15, 3, rng), random_weights(15, rng));
  const Measure nu(random_matrix(12, 3, rng), random_weights(12, rng));
  const double beta = 1.3;
  NormalizationStatus st;
  const Matrix pi = coupling(mu, nu, sinkhorn_options(beta), &st);
  EXPECT_TRUE(st.converged) << st.message;
  // s = beta <x, y> is the cost C = -s at eps = 1.
  const Matrix c = -beta * mu.points() * nu.points().transpose();
  EXPECT_TRUE(all_close(pi, test::dense_sinkhorn_plan(c, mu.weights(), nu.weights(), 1.0, kSinkhornTol),
                        1e-9, kAtol));
  EXPECT_TRUE(all_close(Vector(pi.rowwise().sum()), mu.weights(), 0.0, 1e-15));
  EXPECT_TRUE(all_close(Vector(pi.colwise().sum().transpose()), nu.weights(), 0.0, kSinkhornTol));
  // Softmax's joint a_i P_ij has first marginal a but not second marginal b.
  AttentionOptions soft;
  soft.beta = beta;
  const Matrix joint = coupling(mu, nu, soft);
  EXPECT_TRUE(all_close(Vector(joint.rowwise().sum()), mu.weights(), 0.0, 1e-15));
  EXPECT_GT((Vector(joint.colwise().sum().transpose()) - nu.weights()).cwiseAbs().sum(), 1e-3);
}

TEST(AttentionSinkhorn, FixedIterationsMatchDenseSteps) {
  Rng rng(43);
  const Measure mu(random_matrix(9, 2, rng), random_weights(9, rng));
  const Measure nu(random_matrix(11, 2, rng), random_weights(11, rng));
  const double beta = 0.8;
  const Matrix s = beta * mu.points() * nu.points().transpose();
  const Vector& a = mu.weights();
  const Vector& b = nu.weights();
  // Dense Sinkformer steps: f-update, then (g-update, f-update) K - 1 times; P = pi / a.
  Vector f(9), g = Vector::Zero(11);
  std::vector<double> buf;
  for (int it = 1; it <= 3; ++it) {
    if (it > 1)
      for (Index j = 0; j < 11; ++j) {
        buf.clear();
        for (Index i = 0; i < 9; ++i) buf.push_back(std::log(a[i]) + f[i] + s(i, j));
        g[j] = -test::dense_lse(buf);
      }
    for (Index i = 0; i < 9; ++i) {
      buf.clear();
      for (Index j = 0; j < 11; ++j) buf.push_back(std::log(b[j]) + g[j] + s(i, j));
      f[i] = -test::dense_lse(buf);
    }
  }
  Matrix p(9, 11);
  for (Index i = 0; i < 9; ++i)
    for (Index j = 0; j < 11; ++j) p(i, j) = b[j] * std::exp(f[i] + g[j] + s(i, j));
  const Matrix eye = Matrix::Identity(11, 11);
  EXPECT_TRUE(all_close(attention(mu, nu, eye, sinkhorn_options(beta, 3)).out, p, 1e-12, 1e-15));
}

TEST(AttentionSinkhorn, SymmetricCouplingAndDoublyStochastic) {
  Rng rng(44);
  const Measure mu(sample_sphere(16, 3, rng));  // uniform weights
  const Matrix pi = coupling(mu, mu, sinkhorn_options(3.0));
  EXPECT_TRUE(all_close(pi, Matrix(pi.transpose()), 0.0, kAtol));
  const Matrix ds = 16.0 * pi;  // Sinkformer's doubly stochastic matrix
  EXPECT_TRUE(all_close(Vector(ds.rowwise().sum()), Vector::Ones(16), 0.0, 1e-14));
  EXPECT_TRUE(all_close(Vector(ds.colwise().sum().transpose()), Vector::Ones(16), 0.0, 16 * kSinkhornTol));
}

TEST(AttentionSinkhorn, DuplicationAndPermutationInvariance) {
  Rng rng(45);
  const Matrix x = random_matrix(10, 3, rng), y = random_matrix(8, 3, rng);
  const Vector a = random_weights(10, rng), b = random_weights(8, rng);
  for (Normalization norm : {Normalization::sinkhorn, Normalization::softmax}) {
    AttentionOptions o = sinkhorn_options(1.5);
    o.normalization = norm;
    const Matrix base = attention(Measure(x, a), Measure(y, b), std::nullopt, o).out;
    // Split key 0 into two copies of half its weight: outputs unchanged.
    Matrix y2(9, 3);
    y2 << y, y.row(0);
    Vector b2(9);
    b2 << b, 0.5 * b[0];
    b2[0] *= 0.5;
    EXPECT_TRUE(all_close(attention(Measure(x, a), Measure(y2, b2), std::nullopt, o).out, base,
                          1e-10, 1e-12)) << to_string(norm);
    // Split query 3: the copy gets the same output, the others are unchanged.
    Matrix x2(11, 3);
    x2 << x, x.row(3);
    Vector a2(11);
    a2 << a, 0.5 * a[3];
    a2[3] *= 0.5;
    const Matrix out2 = attention(Measure(x2, a2), Measure(y, b), std::nullopt, o).out;
    EXPECT_TRUE(all_close(Matrix(out2.topRows(10)), base, 1e-10, 1e-12));
    EXPECT_TRUE(all_close(Matrix(out2.row(10)), Matrix(base.row(3)), 1e-10, 1e-12));
    // Reverse queries and keys: outputs reversed.
    const Matrix xr = x.colwise().reverse(), yr = y.colwise().reverse();
    const Matrix outr =
        attention(Measure(xr, Vector(a.reverse())), Measure(yr, Vector(b.reverse())), std::nullopt, o).out;
    EXPECT_TRUE(all_close(outr, Matrix(base.colwise().reverse()), 1e-10, 1e-12));
  }
}

// On the unit sphere |x - y|^2 = 2 - 2 <x, y>, so beta = 2 / eps gives the coupling of the
// squared Euclidean cost at regularization eps. eps -> 0: <C, pi> -> exact OT (a permutation
// for uniform weights, by brute force), within eps log n; eps -> inf: pi -> a (x) b.
TEST(AttentionSinkhorn, EpsLimitsExactOtAndProduct) {
  Rng rng(46);
  const Index n = 6;
  const Measure mu(sample_sphere(n, 3, rng)), nu(sample_sphere(n, 3, rng));
  const Matrix c = test::dense_sqeuclidean(mu.points(), nu.points());
  const double exact = test::brute_force_assignment(c);
  // (The normalization has no eps-scaling; small eps is covered by ot_sinkhorn_test.)
  for (double eps : {0.5, 0.2, 0.1}) {
    NormalizationStatus st;
    const Matrix pi = coupling(mu, nu, sinkhorn_options(2.0 / eps, 0, 1e-10), &st);
    ASSERT_TRUE(st.converged) << st.message;
    const double cost = (pi.array() * c.array()).sum();
    EXPECT_GE(cost, exact - 1e-9);
    EXPECT_LE(cost, exact + eps * std::log(double(n)) + 1e-9) << "eps = " << eps;
  }
  const Matrix pi = coupling(mu, nu, sinkhorn_options(1e-7));
  // |pi_ij / (a_i b_j) - 1| = O(beta max|<x, y>|) = O(1e-7).
  EXPECT_TRUE(all_close(pi, Matrix(mu.weights() * nu.weights().transpose()), 1e-6, 0.0));
}

TEST(AttentionSinkhorn, StatusAndBadOptions) {
  Rng rng(47);
  const Measure mu(random_matrix(6, 2, rng));
  AttentionOptions o = sinkhorn_options(4.0, 0, 1e-15);
  o.sinkhorn.max_iterations = 2;
  const AttentionResult r = self_attention(mu, o);
  EXPECT_FALSE(r.status.front().converged);
  EXPECT_EQ(r.status.front().iterations, 2);
  EXPECT_NE(r.status.front().message.find("not converged after 2 iterations"), std::string::npos);
  o.sinkhorn.tol = 0.0;
  EXPECT_TRUE(test::throws_with([&] { self_attention(mu, o); },
                                "attention: sinkhorn.tol = 0, must be > 0"));
  o.sinkhorn.tol = 1e-9;
  o.sinkhorn.iterations = -1;
  EXPECT_TRUE(test::throws_with([&] { self_attention(mu, o); },
                                "attention: sinkhorn.iterations = -1, must be >= 0"));
}

}  // namespace
}  // namespace attnflow
