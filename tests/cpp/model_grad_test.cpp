// Gradients of every layer type against central finite differences, with respect to every
// parameter block and to the atoms' positions; optimizers; bit-identical batches on 1 or 2 threads.
#include <gtest/gtest.h>

#include "attnflow/model/model_grad.hpp"
#include "attnflow/base/parallel.hpp"
#include "model_test_util.hpp"

namespace attnflow {
namespace {

using test::random_matrix;
using test::random_weights;

// Central differences with h = 1e-5 have truncation error ~h^2 |f'''| ~ 1e-10 and rounding
// ~1e-16 / h ~ 1e-11 on losses of order 1: 1e-6 relative leaves two orders of margin.
constexpr double kFdStep = 1e-5;
constexpr double kFdRtol = 1e-6;
constexpr double kFdAtol = 1e-8;

Example make_example(Index n, Index d, Rng& rng) {
  return Example{Measure(random_matrix(n, d, rng), random_weights(n, rng)), random_matrix(n, d, rng)};
}

// Checks every parameter of `model` (or a sample of up to 40 per block) and every coordinate
// of the atoms against central differences of model_loss.
void check_gradient(const Model& model, const Example& ex, const std::string& what) {
  Model grad;
  Matrix dx;
  loss_and_gradient(model, ex, grad, &dx);
  for (size_t l = 0; l < model.layers.size(); ++l) {
    std::vector<std::pair<double*, Index>> gblocks;
    for_each_parameter(grad.layers[l], [&](double* p, Index n) { gblocks.emplace_back(p, n); });
    Model probe = model;
    size_t b = 0;
    for_each_parameter(probe.layers[l], [&](double* p, Index n) {
      const Index stride = std::max<Index>(1, n / 40);
      for (Index t = 0; t < n; t += stride) {
        const double keep = p[t];
        p[t] = keep + kFdStep;
        const double up = model_loss(probe, ex);
        p[t] = keep - kFdStep;
        const double down = model_loss(probe, ex);
        p[t] = keep;
        const double fd = (up - down) / (2 * kFdStep), an = gblocks[b].first[t];
        EXPECT_NEAR(an, fd, kFdAtol + kFdRtol * std::abs(fd))
            << what << " layer " << l << " block " << b << " entry " << t;
      }
      ++b;
    });
  }
  for (Index i = 0; i < ex.mu.size(); ++i)
    for (Index t = 0; t < ex.mu.dim(); ++t) {
      Matrix xp = ex.mu.points(), xm = ex.mu.points();
      xp(i, t) += kFdStep;
      xm(i, t) -= kFdStep;
      const double fd = (model_loss(model, {Measure(xp, ex.mu.weights()), ex.target}) -
                         model_loss(model, {Measure(xm, ex.mu.weights()), ex.target})) /
                        (2 * kFdStep);
      EXPECT_NEAR(dx(i, t), fd, kFdAtol + kFdRtol * std::abs(fd)) << what << " dx " << i << "," << t;
    }
}

TEST(ModelGrad, AttentionSoftmaxMatchesFiniteDifferences) {
  Rng rng(21);
  check_gradient(test::small_model(Normalization::softmax, 3, 2, 0, rng), make_example(7, 3, rng), "softmax");
}

TEST(ModelGrad, AttentionNoneMatchesFiniteDifferences) {
  Rng rng(22);
  check_gradient(test::small_model(Normalization::none, 3, 2, 0, rng, 0.4), make_example(7, 3, rng), "none");
}

TEST(ModelGrad, SinkhornFixedIterationsMatchesFiniteDifferences) {
  Rng rng(23);
  for (int iters : {1, 2, 5}) {
    check_gradient(test::small_model(Normalization::sinkhorn, 2, 2, 0, rng, 0.6, iters),
                   make_example(6, 2, rng), "sinkhorn iterations " + std::to_string(iters));
  }
}

TEST(ModelGrad, SinkhornToToleranceMatchesFiniteDifferences) {
  // Through the realized iterations; away from a change of the stopping index the loss is
  // smooth and the gradient exact.
  Rng rng(24);
  check_gradient(test::small_model(Normalization::sinkhorn, 2, 1, 0, rng, 0.6, 0),
                 make_example(5, 2, rng), "sinkhorn tol");
}

TEST(ModelGrad, MlpAndMixedStackMatchFiniteDifferences) {
  Rng rng(25);
  // Biases nudged so no hidden unit sits at the ReLU kink.
  Model model = test::small_model(Normalization::softmax, 3, 2, 6, rng);
  for (Layer& l : model.layers)
    if (auto* m = std::get_if<MlpLayer>(&l)) m->b1.setConstant(0.05);
  check_gradient(model, make_example(8, 3, rng), "mlp stack");
}

TEST(ModelGrad, ZeroWeightAtomsHaveNoInfluence) {
  Rng rng(26);
  for (Normalization norm : {Normalization::softmax, Normalization::sinkhorn, Normalization::none}) {
    const Model model = test::small_model(norm, 2, 1, 0, rng, 0.5);
    Example ex = make_example(5, 2, rng);
    Vector w = ex.mu.weights();
    w[2] = 0.0;
    ex.mu = Measure(ex.mu.points(), w);
    Model grad;
    Matrix dx;
    loss_and_gradient(model, ex, grad, &dx);
    EXPECT_EQ(dx.row(2).norm(), 0.0) << to_string(norm);
    EXPECT_TRUE(dx.allFinite());
  }
}

TEST(ModelGrad, BatchGradientIsBitIdenticalOnOneOrTwoThreads) {
  Rng rng(27);
  const Model model = test::small_model(Normalization::sinkhorn, 2, 2, 4, rng);
  std::vector<Example> data;
  for (Index n : {5, 9, 3, 12}) data.push_back(make_example(n, 2, rng));
  const std::vector<size_t> batch = {3, 0, 2, 1, 3};
  Model g1, g2;
  set_num_threads(1);
  const double l1 = batch_loss_and_gradient(model, data, batch, g1);
  set_num_threads(2);
  const double l2 = batch_loss_and_gradient(model, data, batch, g2);
  set_num_threads(0);
  EXPECT_EQ(l1, l2);
  EXPECT_EQ(model_to_bytes(g1), model_to_bytes(g2));
  // Mean of the per-example gradients.
  Model gref = zeros_like(model);
  double lref = 0.0;
  for (size_t i : batch) {
    Model gi;
    lref += loss_and_gradient(model, data[i], gi) / batch.size();
    EXPECT_NEAR(lref, lref, 0.0);
    for (size_t l = 0; l < gi.layers.size(); ++l) {
      std::vector<double*> dst;
      for_each_parameter(gref.layers[l], [&](double* p, Index) { dst.push_back(p); });
      size_t k = 0;
      for_each_parameter(gi.layers[l], [&](double* p, Index n) {
        for (Index t = 0; t < n; ++t) dst[k][t] += p[t] / batch.size();
        ++k;
      });
    }
  }
  EXPECT_NEAR(l1, lref, 1e-14);
  for (size_t l = 0; l < gref.layers.size(); ++l) {
    std::vector<double*> a, b;
    for_each_parameter(gref.layers[l], [&](double* p, Index) { a.push_back(p); });
    size_t k = 0;
    for_each_parameter(g1.layers[l], [&](double* p, Index n) {
      for (Index t = 0; t < n; ++t) EXPECT_NEAR(p[t], a[k][t], 1e-13);
      ++k;
    });
  }
}

TEST(ModelGrad, AdamAndSgdFollowTheirUpdateRules) {
  Rng rng(28);
  const Model model = test::small_model(Normalization::softmax, 2, 1, 0, rng);
  Model grad = zeros_like(model);
  auto& g = std::get<AttentionLayer>(grad.layers[0]);
  g.heads[0].q(0, 0) = 0.5;
  g.heads[1].w(1, 0) = -2.0;
  // SGD with momentum: two steps with the same gradient move by lr g (1 + (1 + m)).
  Model sgd = model;
  Optimizer o1(sgd, {OptimizerKind::sgd, 0.1, 0.5});
  o1.step(sgd, grad);
  o1.step(sgd, grad);
  const auto& s = std::get<AttentionLayer>(sgd.layers[0]);
  const auto& m0 = std::get<AttentionLayer>(model.layers[0]);
  EXPECT_NEAR(s.heads[0].q(0, 0), m0.heads[0].q(0, 0) - 0.1 * 0.5 * 2.5, 1e-15);
  EXPECT_EQ(s.heads[0].q(1, 0), m0.heads[0].q(1, 0));
  // Adam: the first bias-corrected step is lr * sign(g) (up to eps).
  Model adam = model;
  Optimizer o2(adam, {OptimizerKind::adam, 0.01});
  o2.step(adam, grad);
  const auto& a = std::get<AttentionLayer>(adam.layers[0]);
  EXPECT_NEAR(a.heads[0].q(0, 0), m0.heads[0].q(0, 0) - 0.01, 1e-9);
  EXPECT_NEAR(a.heads[1].w(1, 0), m0.heads[1].w(1, 0) + 0.01, 1e-9);
  EXPECT_TRUE(test::throws_with([&] { Optimizer(model, {OptimizerKind::adam, -1.0}); },
                                "optimizer: lr = -1, must be finite and > 0"));
}

}  // namespace
}  // namespace attnflow
