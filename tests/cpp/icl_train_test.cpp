// Tests of in-context regression training (docs/math.md section 7): SGD on long prompts tracks
// the infinite-prompt gradient flow, training is bit-identical on 1 and 2 threads, and the
// finite-prompt risk estimate approaches the infinite-prompt risk as L grows.
#include <fmt/format.h>

#include <cmath>

#include "attnflow/icl/icl.hpp"
#include "attnflow/base/parallel.hpp"
#include "icl_test_util.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::published_data;

IclTrainOptions sgd_options() {
  IclTrainOptions o;
  o.prompt_length = 1000;
  o.batch = 64;
  o.lr = 0.05;
  o.steps = 60;
  o.seed = 9;
  return o;
}

TEST(IclTrain, SgdAtLargePromptTracksTheOde) {
  const IclData data = published_data(3);
  Rng rng(7);
  const IclParams init = icl_balanced_init(3, 0.5, rng);
  const IclTrainOptions sgd = sgd_options();
  const IclTrainResult s = icl_train(data, init, sgd);
  // Plain gradient descent on the infinite-prompt risk = Euler on the flow with dt = lr:
  // the deterministic path SGD follows up to gradient noise and the O(1/L) prompt bias.
  IclTrainOptions gd = sgd;
  gd.prompt_length = 0;
  gd.method = Method::euler;
  const IclTrainResult g = icl_train(data, init, gd);
  ASSERT_TRUE(s.finite);
  ASSERT_EQ(s.history.size() + 1, g.history.size());
  // Gradient noise: per-prompt gradients have O(1) spread; after n steps of size lr with
  // batch B the parameter noise is about lr sqrt(n / B) ~ 0.05 here, hence 0.15 (3 sigma).
  constexpr double kNoiseTol = 0.15;
  double start_gap = 0.0;
  for (size_t k = 0; k < s.history.size(); ++k) {
    EXPECT_NEAR(s.history[k].b, g.history[k].b, kNoiseTol) << "step " << k;
    EXPECT_NEAR(s.history[k].a_norm, g.history[k].a_norm, kNoiseTol) << "step " << k;
    EXPECT_NEAR(s.history[k].risk_infinite, g.history[k].risk_infinite,
                kNoiseTol * g.history[0].risk_infinite) << "step " << k;
    start_gap = std::max(start_gap, std::abs(g.history[k].b - g.history[0].b));
  }
  // The comparison is not vacuous: the parameters move much more than the tolerance.
  EXPECT_GT(start_gap, 5 * kNoiseTol);
  EXPECT_LT(g.history.back().risk_infinite, 0.2 * g.history.front().risk_infinite);
}

TEST(IclTrain, BitIdenticalOnOneAndTwoThreads) {
  const IclData data = published_data(3);
  Rng rng(8);
  const IclParams init = icl_balanced_init(3, 0.5, rng);
  IclTrainOptions o = sgd_options();
  o.prompt_length = 300;
  o.steps = 10;
  for (IclModel model : {IclModel::softmax, IclModel::linear}) {
    o.model = model;
    set_num_threads(1);
    const IclTrainResult one = icl_train(data, init, o);
    set_num_threads(2);
    const IclTrainResult two = icl_train(data, init, o);
    set_num_threads(0);
    EXPECT_EQ(one.params.a, two.params.a) << to_string(model);
    EXPECT_EQ(one.params.b, two.params.b) << to_string(model);
    ASSERT_EQ(one.history.size(), two.history.size());
    for (size_t k = 0; k < one.history.size(); ++k)
      EXPECT_EQ(one.history[k].risk, two.history[k].risk);
  }
}

TEST(IclTrain, FiniteRiskApproachesInfiniteRisk) {
  // At the infinite-prompt fixed point the infinite risk is 0; the finite-prompt softmax risk
  // is positive and shrinks as L grows (docs/math.md section 7: concentration in L).
  const IclData data = published_data(3);
  const IclParams fp = icl_fixed_point(data.cov);
  const IclRiskEstimate short_prompt = icl_estimate_risk(data, IclModel::softmax, fp, 20, 2000, 1);
  const IclRiskEstimate long_prompt = icl_estimate_risk(data, IclModel::softmax, fp, 2000, 2000, 2);
  EXPECT_GT(short_prompt.mean - 4 * short_prompt.standard_error,
            long_prompt.mean + 4 * long_prompt.standard_error);
  EXPECT_GT(long_prompt.mean, 0.0);
}

TEST(IclTrain, DivergenceIsAStatus) {
  const IclData data = published_data(3);
  Rng rng(10);
  const IclParams init = icl_balanced_init(3, 0.5, rng);
  IclTrainOptions o = sgd_options();
  o.model = IclModel::linear;
  o.prompt_length = 20;
  o.lr = 1e3;
  o.steps = 200;
  const IclTrainResult r = icl_train(data, init, o);
  EXPECT_FALSE(r.finite);
  EXPECT_NE(r.message.find("lr = 1000 is too large"), std::string::npos) << r.message;
}

// Divergence is a status naming the step, for SGD and for the ODE; nothing
// non-finite reaches the history or the parameters.
TEST(IclTrain, DivergenceNamesTheStepAndKeepsOnlyFiniteValues) {
  const IclData data = published_data(3);
  Rng rng(11);
  const IclParams init = icl_balanced_init(3, 0.5, rng);
  for (const Index length : {Index{100}, Index{0}}) {  // SGD on prompts of 100, then the ODE
    IclTrainOptions o = sgd_options();
    o.prompt_length = length;
    o.lr = 100.0;
    o.steps = 50;
    const IclTrainResult r = icl_train(data, init, o);
    EXPECT_FALSE(r.finite) << length;
    ASSERT_GE(r.diverged_step, 0) << length;
    EXPECT_LT(r.diverged_step, 50);
    EXPECT_NE(r.message.find(fmt::format("diverged at step {}", r.diverged_step)), std::string::npos) << r.message;
    EXPECT_NE(r.message.find("lr = 100 is too large"), std::string::npos) << r.message;
    EXPECT_TRUE(r.params.a.allFinite() && std::isfinite(r.params.b));
    for (const IclStepRecord& h : r.history) {
      EXPECT_TRUE(std::isfinite(h.risk) && std::isfinite(h.risk_infinite) && std::isfinite(h.b)) << h.step;
      EXPECT_LE(h.step, r.diverged_step);
    }
  }
  // A stable run says so.
  const IclTrainResult ok = icl_train(data, init, sgd_options());
  EXPECT_TRUE(ok.finite);
  EXPECT_EQ(ok.diverged_step, -1);
}

}  // namespace
}  // namespace attnflow
