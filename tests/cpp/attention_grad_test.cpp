// attention_gradient against central finite differences of attention() itself, for every
// argument (points, values, both weight vectors, beta, q, k, v, w), each normalization, one
// and two heads; Sinkhorn with a fixed number of iterations (the differentiated function is
// then exactly the computed one) and run to a tolerance.
#include "attnflow/attention/attention_grad.hpp"

#include <gtest/gtest.h>

#include <functional>

#include "test_util.hpp"

namespace attnflow {
namespace {

using test::all_close;
using test::random_matrix;
using test::random_weights;

struct Inputs {
  Matrix x, y, vals;
  Vector wx, wy;
  double beta = 0.7;
  AttentionOptions opt;
};

// L = <R, out> for a fixed random R: dL/d out = R.
double loss(const Inputs& in, const Matrix& r) {
  const AttentionResult res =
      attention(Measure(in.x, in.wx), Measure(in.y, in.wy), in.vals, [&] {
        AttentionOptions o = in.opt;
        o.beta = in.beta;
        return o;
      }());
  return (res.out.array() * r.array()).sum();
}

// Central differences of L over every entry of `a` (h = 1e-6).
Matrix fd(Inputs& in, Matrix& a, const Matrix& r) {
  Matrix g(a.rows(), a.cols());
  const double h = 1e-6;
  for (Index i = 0; i < a.size(); ++i) {
    const double keep = a.data()[i];
    a.data()[i] = keep + h;
    const double lp = loss(in, r);
    a.data()[i] = keep - h;
    const double lm = loss(in, r);
    a.data()[i] = keep;
    g.data()[i] = (lp - lm) / (2 * h);
  }
  return g;
}
Vector fd(Inputs& in, Vector& a, const Matrix& r) {
  Vector g(a.size());
  const double h = 1e-6;
  for (Index i = 0; i < a.size(); ++i) {
    const double keep = a[i];
    a[i] = keep + h;
    const double lp = loss(in, r);
    a[i] = keep - h;
    const double lm = loss(in, r);
    a[i] = keep;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

Inputs make_inputs(Normalization norm, int heads, Rng& rng) {
  const Index n = 5, m = 6, d = 3, p = 2, dk = 2, dv = 3, dout = 2;
  Inputs in;
  in.x = random_matrix(n, d, rng);
  in.y = random_matrix(m, d, rng);
  in.vals = random_matrix(m, p, rng);
  in.wx = random_weights(n, rng);
  in.wy = random_weights(m, rng);
  in.opt.normalization = norm;
  in.opt.sinkhorn.iterations = 4;
  for (int h = 0; h < heads; ++h)
    in.opt.heads.push_back(AttentionHead{random_matrix(dk, d, rng, 0.8),
                                         random_matrix(dk, d, rng, 0.8),
                                         random_matrix(dv, p, rng), random_matrix(dout, dv, rng),
                                         norm});
  return in;
}

void check_all(Inputs in, Rng& rng, double tol) {
  AttentionOptions o = in.opt;
  o.beta = in.beta;
  const AttentionResult fwd = attention(Measure(in.x, in.wx), Measure(in.y, in.wy), in.vals, o);
  const Matrix r = random_matrix(fwd.out.rows(), fwd.out.cols(), rng);
  const AttentionGradient g =
      attention_gradient(Measure(in.x, in.wx), Measure(in.y, in.wy), in.vals, o, r);
  // The forward pass is attention() bit for bit.
  EXPECT_EQ(g.result.out, fwd.out);
  EXPECT_TRUE(all_close(g.dx, fd(in, in.x, r), tol, tol)) << "dx";
  EXPECT_TRUE(all_close(g.dy, fd(in, in.y, r), tol, tol)) << "dy";
  EXPECT_TRUE(all_close(g.dvalues, fd(in, in.vals, r), tol, tol)) << "dvalues";
  EXPECT_TRUE(all_close(normalized_weights_gradient(in.wx, g.dwx), fd(in, in.wx, r), tol, tol))
      << "dwx";
  EXPECT_TRUE(all_close(normalized_weights_gradient(in.wy, g.dwy), fd(in, in.wy, r), tol, tol))
      << "dwy";
  {
    Inputs copy = in;
    const double h = 1e-6;
    copy.beta = in.beta + h;
    const double lp = loss(copy, r);
    copy.beta = in.beta - h;
    const double lm = loss(copy, r);
    EXPECT_NEAR(g.dbeta, (lp - lm) / (2 * h), tol * (1 + std::abs(g.dbeta))) << "dbeta";
  }
  for (size_t h = 0; h < in.opt.heads.size(); ++h) {
    EXPECT_TRUE(all_close(g.dq[h], fd(in, in.opt.heads[h].q, r), tol, tol)) << "dq " << h;
    EXPECT_TRUE(all_close(g.dk[h], fd(in, in.opt.heads[h].k, r), tol, tol)) << "dk " << h;
    EXPECT_TRUE(all_close(g.dv[h], fd(in, in.opt.heads[h].v, r), tol, tol)) << "dv " << h;
    EXPECT_TRUE(all_close(g.dw[h], fd(in, in.opt.heads[h].w, r), tol, tol)) << "dw " << h;
  }
}

TEST(AttentionGrad, SoftmaxMatchesFiniteDifferences) {
  Rng rng(11);
  check_all(make_inputs(Normalization::softmax, 1, rng), rng, 1e-6);
  check_all(make_inputs(Normalization::softmax, 2, rng), rng, 1e-6);
}

TEST(AttentionGrad, NoneMatchesFiniteDifferences) {
  Rng rng(12);
  check_all(make_inputs(Normalization::none, 2, rng), rng, 1e-6);
}

TEST(AttentionGrad, SinkhornFixedIterationsMatchesFiniteDifferences) {
  Rng rng(13);
  check_all(make_inputs(Normalization::sinkhorn, 1, rng), rng, 1e-6);
  check_all(make_inputs(Normalization::sinkhorn, 2, rng), rng, 1e-6);
}

TEST(AttentionGrad, SinkhornToleranceMatchesFiniteDifferences) {
  Rng rng(14);
  Inputs in = make_inputs(Normalization::sinkhorn, 1, rng);
  in.opt.sinkhorn.iterations = 0;
  in.opt.sinkhorn.tol = 1e-13;
  check_all(in, rng, 1e-5);
}

TEST(AttentionGrad, IdentityHeadAndValuesAreKeys) {
  // No heads (identity q, k), values = keys: dy carries the values' part too.
  Rng rng(15);
  const Matrix x = random_matrix(4, 2, rng), y = random_matrix(5, 2, rng);
  const Matrix r = random_matrix(4, 2, rng);
  AttentionOptions o;
  o.beta = 1.3;
  const AttentionGradient g = attention_gradient(Measure(x), Measure(y), std::nullopt, o, r);
  EXPECT_EQ(g.dvalues.size(), 0);
  ASSERT_EQ(g.dq.size(), 1u);
  EXPECT_EQ(g.dq[0].size(), 0);
  Matrix yy = y;
  Matrix num(y.rows(), y.cols());
  for (Index i = 0; i < yy.size(); ++i) {
    const double keep = yy.data()[i], h = 1e-6;
    yy.data()[i] = keep + h;
    const double lp = (attention(Measure(x), Measure(yy), std::nullopt, o).out.array() * r.array()).sum();
    yy.data()[i] = keep - h;
    const double lm = (attention(Measure(x), Measure(yy), std::nullopt, o).out.array() * r.array()).sum();
    yy.data()[i] = keep;
    num.data()[i] = (lp - lm) / (2 * h);
  }
  EXPECT_TRUE(all_close(g.dy, num, 1e-6, 1e-6));
}

TEST(AttentionGrad, BadGradOutShapeIsRejected) {
  Rng rng(16);
  const Matrix x = random_matrix(4, 2, rng);
  EXPECT_TRUE(test::throws_with(
      [&] { attention_gradient(Measure(x), Measure(x), std::nullopt, AttentionOptions{}, Matrix(3, 2)); },
      "attention_gradient: grad_out has shape (3, 2), must be the output's (4, 2)"));
}

}  // namespace
}  // namespace attnflow
