// Tests of in-context linear regression (docs/math.md section 7): the data model, the two
// block-parametrized models against independent references (the large-prompt operator and a
// dense softmax), gradients against finite differences, the infinite-prompt risk, its flow,
// its conservation law and fixed point, and SGD at large L tracking the flow.
#include <Eigen/Dense>
#include <cmath>

#include "attnflow/icl/icl.hpp"
#include "attnflow/icl/large_prompt.hpp"
#include "attnflow/base/parallel.hpp"
#include "icl_test_util.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::published_data;

using test::all_close;

// Kernel vs dense reference / closed forms evaluated two ways: rounding only.
constexpr double kExactTol = 1e-11;
// Central differences, step 1e-6 on O(1) quantities: truncation ~1e-12, rounding ~1e-10.
constexpr double kFdStep = 1e-6;
constexpr double kFdTol = 1e-7;
// RK4 with dt = 0.01 on a smooth flow: global error ~1e-9; by t = 200 the slowest mode
// (rate ~0.1 at this S) has decayed by e^-20 ~ 2e-9.
constexpr double kOdeTol = 1e-7;

TEST(Icl, SamplerDrawsTheDataModel) {
  IclData data = published_data(3);
  const IclSampler sampler(data);
  Rng rng(1);
  const Index length = 40000;
  const IclPrompt p = sampler.sample(length, rng);
  // Sample covariance of x: each entry has standard deviation <= sqrt(2 / L) * max S_ii^...;
  // with S_ii = 1, |S_ij| <= 1 the entry sd is at most sqrt(2 / L); accept 5 sd.
  const Matrix emp = p.x.transpose() * p.x / static_cast<double>(length);
  EXPECT_TRUE(all_close(emp, data.cov, 0.0, 5.0 * std::sqrt(2.0 / length)));
  // Labels: y - x w is the noise, variance 0.1 (sd of the variance estimate 0.1 sqrt(2 / L)).
  const Vector resid = p.y - p.x * p.w;
  EXPECT_NEAR(resid.squaredNorm() / length, 0.1, 5.0 * 0.1 * std::sqrt(2.0 / length));
  EXPECT_DOUBLE_EQ(p.target, p.w.dot(p.xq));
  // The sphere prior puts w on the sphere of radius tau sqrt(d).
  data.prior = TaskPrior::sphere;
  data.task_scale = 2.0;
  EXPECT_NEAR(IclSampler(data).sample(5, rng).w.norm(), 2.0 * std::sqrt(3.0), 1e-12);
}

// The block-parametrized softmax model IS the large-prompt operator with
// U = [[A, 0], [0, 0]], V = [[0, 0], [0, b]] (last output coordinate), on tokens (x_i, y_i).
PromptOperator block_operator(const IclParams& p) {
  const Index d = p.a.rows();
  PromptOperator op{Matrix::Zero(d + 1, d + 1), Matrix::Zero(1, d + 1)};
  op.u.topLeftCorner(d, d) = p.a;
  op.v(0, d) = p.b;
  return op;
}

TEST(Icl, SoftmaxModelIsTheBlockOperator) {
  const Index d = 4;
  const IclSampler sampler(published_data(d));
  Rng rng(2);
  const IclParams params = icl_balanced_init(d, 1.3, rng);
  const IclPrompt pr = sampler.sample(500, rng);
  Matrix tokens(pr.x.rows(), d + 1);
  tokens << pr.x, pr.y;
  Matrix query = Matrix::Zero(1, d + 1);
  query.leftCols(d) = pr.xq.transpose();
  const double via_operator = empirical_prompt(block_operator(params), Measure(tokens), query).out(0, 0);
  EXPECT_NEAR(icl_predict(IclModel::softmax, params, pr, false).value, via_operator,
              kExactTol * std::abs(via_operator) + kExactTol);
  // Infinite prompt: the Gaussian operator on z ~ N(0, [[S, S w], [w^T S, w^T S w + noise]])
  // predicts b w^T S A x_q.
  const Matrix& s = sampler.data().cov;
  Matrix cov(d + 1, d + 1);
  cov << s, s * pr.w, (s * pr.w).transpose(), pr.w.dot(s * pr.w) + 0.1;
  const double infinite = gaussian_prompt(block_operator(params), Vector::Zero(d + 1), cov, query).out(0, 0);
  EXPECT_NEAR(infinite, params.b * pr.w.dot(s * params.a * pr.xq), kExactTol * (1 + std::abs(infinite)));
}

TEST(Icl, LinearModelMatchesDenseSum) {
  const Index d = 3;
  const IclSampler sampler(published_data(d));
  Rng rng(3);
  const IclParams params = icl_balanced_init(d, 0.8, rng);
  const IclPrompt pr = sampler.sample(50, rng);
  double ref = 0.0;  // (1/L) sum_i V z_i z_i^T U z_q, last coordinate, term by term
  for (Index i = 0; i < 50; ++i) ref += params.b * pr.y[i] * pr.x.row(i).dot(params.a * pr.xq) / 50.0;
  EXPECT_NEAR(icl_predict(IclModel::linear, params, pr, false).value, ref, kExactTol);
}

TEST(Icl, ModelGradientsMatchFiniteDifferences) {
  const Index d = 3;
  const IclSampler sampler(published_data(d));
  Rng rng(4);
  const IclParams params = icl_balanced_init(d, 1.1, rng);
  const IclPrompt pr = sampler.sample(200, rng);
  for (IclModel model : {IclModel::softmax, IclModel::linear}) {
    const IclPrediction g = icl_predict(model, params, pr, true);
    Matrix fd(d, d);
    for (Index i = 0; i < d; ++i)
      for (Index j = 0; j < d; ++j) {
        IclParams plus = params, minus = params;
        plus.a(i, j) += kFdStep;
        minus.a(i, j) -= kFdStep;
        fd(i, j) = (icl_predict(model, plus, pr, false).value -
                    icl_predict(model, minus, pr, false).value) / (2 * kFdStep);
      }
    EXPECT_TRUE(all_close(g.grad_a, fd, kFdTol, kFdTol)) << to_string(model);
    IclParams plus = params, minus = params;
    plus.b += kFdStep;
    minus.b -= kFdStep;
    const double fdb = (icl_predict(model, plus, pr, false).value -
                        icl_predict(model, minus, pr, false).value) / (2 * kFdStep);
    EXPECT_NEAR(g.grad_b, fdb, kFdTol * (1 + std::abs(fdb))) << to_string(model);
  }
}

TEST(Icl, InfiniteRiskAndFlowAreConsistent) {
  const Index d = 4;
  IclData data = published_data(d);
  data.task_scale = 1.5;
  Rng rng(5);
  const IclParams p = icl_balanced_init(d, 0.9, rng);
  // Risk against its definition (tau^2 / 2) E_w E_x (w^T (b S A - I) x)^2, written as a sum
  // over the eigen-decomposition-free identity E[(w^T M x)^2] = sum_ij (M S^(1/2))_ij^2 tau^2.
  const Matrix m = p.b * data.cov * p.a - Matrix::Identity(d, d);
  const Matrix half = Eigen::LLT<Matrix>(data.cov).matrixL();  // S = half half^T
  EXPECT_NEAR(icl_infinite_risk(data, p), 0.5 * 2.25 * (m * half).squaredNorm(), kExactTol);
  // The flow is minus the gradient of the risk (finite differences).
  Matrix da;
  double db = 0.0;
  icl_infinite_flow(data, p, da, db);
  Matrix fd(d, d);
  for (Index i = 0; i < d; ++i)
    for (Index j = 0; j < d; ++j) {
      IclParams plus = p, minus = p;
      plus.a(i, j) += kFdStep;
      minus.a(i, j) -= kFdStep;
      fd(i, j) = -(icl_infinite_risk(data, plus) - icl_infinite_risk(data, minus)) / (2 * kFdStep);
    }
  EXPECT_TRUE(all_close(da, fd, kFdTol, kFdTol));
  IclParams plus = p, minus = p;
  plus.b += kFdStep;
  minus.b -= kFdStep;
  EXPECT_NEAR(db, -(icl_infinite_risk(data, plus) - icl_infinite_risk(data, minus)) / (2 * kFdStep),
              kFdTol);
}

TEST(Icl, OdeConservesBalanceAndReachesFixedPoint) {
  const Index d = 5;
  const IclData data = published_data(d);
  Rng rng(6);
  const IclParams init = icl_balanced_init(d, 0.3, rng);
  IclTrainOptions o;
  o.prompt_length = 0;
  o.lr = 0.01;
  o.steps = 20000;
  o.log_every = 1000;
  const IclTrainResult r = icl_train(data, init, o);
  ASSERT_TRUE(r.finite);
  for (const IclStepRecord& rec : r.history) EXPECT_NEAR(rec.balance, 0.0, kOdeTol) << rec.step;
  // Balanced start -> b = tr(S^-2)^(1/4), A = S^-1 / b, and b S A = I.
  const IclParams fp = icl_fixed_point(data.cov);
  const Matrix inv = data.cov.inverse();
  EXPECT_NEAR(fp.b, std::pow((inv * inv).trace(), 0.25), kExactTol);
  EXPECT_NEAR(fp.a.squaredNorm() - fp.b * fp.b, 0.0, kExactTol);
  EXPECT_NEAR(icl_infinite_risk(data, fp), 0.0, kExactTol);
  EXPECT_TRUE(all_close(r.params.a, fp.a, kOdeTol, kOdeTol));
  EXPECT_NEAR(r.params.b, fp.b, kOdeTol);
  const Matrix bsa = r.params.b * data.cov * r.params.a;
  EXPECT_TRUE(all_close(bsa, Matrix::Identity(d, d), kOdeTol, kOdeTol));
  // The risk decreases monotonically along the gradient flow.
  for (size_t k = 1; k < r.history.size(); ++k)
    EXPECT_LE(r.history[k].risk, r.history[k - 1].risk + 1e-15);
}

TEST(Icl, RejectsBadOptions) {
  IclData data = published_data(3);
  data.noise = -1.0;
  EXPECT_TRUE(test::throws_with([&] { data.validate(); }, "icl: noise = -1, must be >= 0"));
  data = published_data(3);
  data.cov(0, 1) = 0.9;
  EXPECT_TRUE(test::throws_with([&] { data.validate(); }, "icl: covariance"));
  IclTrainOptions o;
  o.lr = 0.0;
  EXPECT_TRUE(test::throws_with([&] { o.validate(); }, "icl: lr = 0, must be > 0"));
  o = IclTrainOptions();
  o.batch = 0;
  EXPECT_TRUE(test::throws_with([&] { o.validate(); }, "icl: batch = 0, must be >= 1"));
  EXPECT_TRUE(test::throws_with([&] { parse_icl_model("relu"); }, "icl: model = \"relu\""));
}

}  // namespace
}  // namespace attnflow
