// Layers and models as maps between measures (docs/math.md section 4): layers against the dense
// reference, the composition rule, push-forward (weights kept, coincident atoms merged, a
// Dirac stays a Dirac), permutation and duplication invariance for every layer type, batches.
#include <gtest/gtest.h>

#include <numeric>

#include "attnflow/attention/attention.hpp"
#include "attnflow/model/model.hpp"
#include "attnflow/model/model_grad.hpp"
#include "attnflow/base/parallel.hpp"
#include "model_test_util.hpp"

namespace attnflow {
namespace {

using test::all_close;
using test::random_matrix;
using test::random_weights;
using test::throws_with;

// Streaming kernel vs dense loops: both double, different summation order.
constexpr double kTol = 1e-11;

const Normalization kNorms[] = {Normalization::softmax, Normalization::sinkhorn,
                                Normalization::none};

TEST(ModelLayers, EveryLayerMatchesDenseReferenceAtArbitraryQueries) {
  Rng rng(11);
  for (Normalization norm : kNorms) {
    const Model model = test::small_model(norm, 3, 1, 5, rng);
    const Matrix x = random_matrix(9, 3, rng), z = random_matrix(4, 3, rng);
    const Vector w = random_weights(9, rng);
    for (const Layer& layer : model.layers) {
      const Matrix got = apply_layer(layer, Measure(x, w), z);
      EXPECT_TRUE(all_close(got, test::dense_layer(layer, x, w, z), kTol, kTol))
          << to_string(norm) << " " << layer_kind(layer);
    }
  }
}

TEST(ModelLayers, SelfEvaluationEqualsLibraryAttention) {
  // On the measure's own atoms, an attention layer is x + step * attention(mu, mu) with the
  // same heads (the core attention() computes Sinkhorn on the pair (mu, mu) itself).
  Rng rng(12);
  for (Normalization norm : kNorms) {
    const Model model = test::small_model(norm, 2, 1, 0, rng);
    const auto& a = std::get<AttentionLayer>(model.layers[0]);
    const Measure mu(random_matrix(7, 2, rng), random_weights(7, rng));
    AttentionOptions opt;
    opt.beta = a.beta;
    opt.sinkhorn = a.sinkhorn;
    for (const Head& h : a.heads) opt.heads.push_back({h, norm});
    const Matrix ref = mu.points() + a.step * self_attention(mu, opt).out;
    EXPECT_TRUE(all_close(apply_layer(model.layers[0], mu, mu.points()), ref, kTol, kTol))
        << to_string(norm);
  }
}

TEST(ModelLayers, CompositionRuleEqualsLayerByLayerEvaluation) {
  Rng rng(13);
  for (Normalization norm : kNorms) {
    // 'none' is unnormalized: smaller weights keep three layers far from overflow.
    const double scale = norm == Normalization::none ? 0.3 : 0.6;
    const Model model = test::small_model(norm, 2, 3, 4, rng, scale);
    const Matrix x = random_matrix(8, 2, rng), z = random_matrix(5, 2, rng);
    const Vector w = random_weights(8, rng);
    // By hand: mu_{l+1} = G_l(mu_l, .)#mu_l, z_{l+1} = G_l(mu_l, z_l), with dense layers.
    Matrix xl = x, zl = z;
    for (const Layer& layer : model.layers) {
      const Matrix xn = test::dense_layer(layer, xl, w, xl);
      zl = test::dense_layer(layer, xl, w, zl);
      xl = xn;
    }
    EXPECT_TRUE(all_close(evaluate(model, Measure(x, w), z), zl, 1e-10, 1e-10)) << to_string(norm);
    EXPECT_TRUE(all_close(transport(model, Measure(x, w)), xl, 1e-10, 1e-10)) << to_string(norm);
    // Two-model composition: (G2 o G1)(mu, z) = G2(G1(mu,.)#mu, G1(mu, z)).
    Model g1 = model, g2 = model;
    g1.layers.resize(2);
    g2.layers.erase(g2.layers.begin(), g2.layers.begin() + 2);
    const Measure mid(transport(g1, Measure(x, w)), w);
    // Not bit for bit: Measure renormalizes the weights of `mid` (an ulp).
    EXPECT_TRUE(all_close(evaluate(g2, mid, evaluate(g1, Measure(x, w), z)),
                          evaluate(model, Measure(x, w), z), 1e-13, 1e-13));
  }
}

TEST(ModelLayers, PermutationAndDuplicationInvarianceForEveryLayerType) {
  Rng rng(14);
  for (Normalization norm : kNorms) {
    // Sinkhorn run to a tolerance: duplication invariance holds for the converged coupling.
    const Model model = test::small_model(norm, 2, 2, 3, rng, 0.6, 0);
    const Index n = 6;
    const Matrix x = random_matrix(n, 2, rng), z = random_matrix(3, 2, rng);
    const Vector w = random_weights(n, rng);
    const Matrix base = evaluate(model, Measure(x, w), z);
    // Permutation.
    std::vector<Index> perm(n);
    std::iota(perm.begin(), perm.end(), 0);
    std::reverse(perm.begin(), perm.end());
    std::swap(perm[1], perm[4]);
    Matrix xp(n, 2);
    Vector wp(n);
    for (Index i = 0; i < n; ++i) { xp.row(i) = x.row(perm[i]); wp[i] = w[perm[i]]; }
    EXPECT_TRUE(all_close(evaluate(model, Measure(xp, wp), z), base, 1e-10, 1e-10)) << to_string(norm);
    const Matrix tp = transport(model, Measure(xp, wp)), t0 = transport(model, Measure(x, w));
    for (Index i = 0; i < n; ++i)
      EXPECT_TRUE(all_close(Matrix(tp.row(i)), Matrix(t0.row(perm[i])), 1e-10, 1e-10));
    // Duplication: atom 2 split into two copies of half the weight, and atom 0 into three.
    Matrix xd(n + 3, 2);
    Vector wd(n + 3);
    xd.topRows(n) = x;
    wd.head(n) = w;
    xd.row(n) = x.row(2);
    wd[2] = wd[n] = w[2] / 2;
    xd.row(n + 1) = x.row(0);
    xd.row(n + 2) = x.row(0);
    wd[0] = wd[n + 1] = wd[n + 2] = w[0] / 3;
    const double tol = norm == Normalization::sinkhorn ? 1e-7 : 1e-10;  // Sinkhorn tol 1e-9
    EXPECT_TRUE(all_close(evaluate(model, Measure(xd, wd), z), base, tol, tol)) << to_string(norm);
  }
}

TEST(ModelLayers, PushForwardKeepsWeightsAndMergesCoincidentAtoms) {
  Rng rng(15);
  for (Normalization norm : kNorms) {
    const Model model = test::small_model(norm, 2, 2, 3, rng);
    // 5 distinct points, two of them repeated: the measure has 5 atoms.
    Matrix x = random_matrix(8, 2, rng);
    x.row(5) = x.row(1);
    x.row(6) = x.row(3);
    x.row(7) = x.row(1);
    const Vector w = random_weights(8, rng);
    const Measure out = push_forward(model, Measure(x, w));
    ASSERT_EQ(out.size(), 5) << to_string(norm);
    const Matrix moved = transport(model, Measure(x, w));
    EXPECT_TRUE(all_close(Matrix(out.points().row(1)), Matrix(moved.row(1)), 1e-10, 1e-10));
    EXPECT_NEAR(out.weights()[1], w[1] + w[5] + w[7], 1e-15);
    EXPECT_NEAR(out.weights()[3], w[3] + w[6], 1e-15);
    EXPECT_NEAR(out.weights()[4], w[4], 1e-15);
    EXPECT_NEAR(out.weights().sum(), 1.0, 1e-15);
    // A Dirac stays a Dirac (even given as many copies).
    const Matrix dirac = Matrix::Constant(4, 2, 0.3);
    const Measure d = push_forward(model, Measure(dirac));
    ASSERT_EQ(d.size(), 1);
    EXPECT_EQ(d.weights()[0], 1.0);
    // Atoms that land on the same point merge: a model that collapses everything (none of the
    // layers can, so use merge tolerance covering the whole cloud).
    const Measure one = push_forward(model, Measure(x, w), 1e6);
    EXPECT_EQ(one.size(), 1);
  }
}

TEST(ModelLayers, MergeAtomsGroupsExactAndWithinTolerance) {
  Matrix x(5, 2);
  x << 0, 0, 1, 1, 0, 0, 1, 1 + 1e-12, 2, 2;
  const Vector w = Vector::Constant(5, 0.2);
  const Measure exact = merge_atoms(x, w);
  ASSERT_EQ(exact.size(), 4);
  EXPECT_DOUBLE_EQ(exact.weights()[0], 0.4);
  const Measure tol = merge_atoms(x, w, 1e-9);
  ASSERT_EQ(tol.size(), 3);
  EXPECT_DOUBLE_EQ(tol.weights()[1], 0.4);
  EXPECT_TRUE(throws_with([&] { merge_atoms(x, w, -1.0); }, "merge_atoms: tol = -1, must be finite and >= 0"));
}

TEST(ModelLayers, BatchesOfDifferentSizesMatchSingleEvaluationOnAnyThreadCount) {
  Rng rng(16);
  const Model model = test::small_model(Normalization::sinkhorn, 3, 2, 4, rng);
  std::vector<Measure> mus;
  std::vector<Matrix> qs;
  for (Index n : {3, 17, 1, 40, 8}) {
    mus.emplace_back(random_matrix(n, 3, rng), random_weights(n, rng));
    qs.push_back(random_matrix(2, 3, rng));
  }
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    const auto pf = push_forward_batch(model, mus);
    const auto ev = evaluate_batch(model, mus, qs);
    for (size_t b = 0; b < mus.size(); ++b) {
      EXPECT_TRUE(all_close(pf[b].points(), push_forward(model, mus[b]).points(), 0.0, 0.0));
      EXPECT_TRUE(all_close(ev[b], evaluate(model, mus[b], qs[b]), 0.0, 0.0));
    }
  }
  set_num_threads(0);
}

TEST(ModelLayers, BadInputIsRejectedWithTheFieldName) {
  Rng rng(17);
  Model model = test::small_model(Normalization::softmax, 2, 1, 0, rng);
  EXPECT_TRUE(throws_with([&] { transport(model, Measure(random_matrix(3, 3, rng))); },
                          "model: measure has dimension 3, must equal the model's (2)"));
  std::get<AttentionLayer>(model.layers[0]).beta = std::nan("");
  EXPECT_TRUE(throws_with([&] { model.validate(); }, "model: layers[0] (attention): beta = nan, must be finite"));
  ModelSpec spec;
  spec.depth = 0;
  EXPECT_TRUE(throws_with([&] { spec.validate(); }, "model: depth = 0, must be >= 1"));
}

// A layer's heads go through the one head check (validate_head, head.hpp): the message names
// the layer, the head and the matrix; heads share heads[0]'s d_k and d_v; no empty = identity.
TEST(ModelLayers, ABadHeadIsNamedByTheOneHeadCheck) {
  Rng rng(18);
  const Model good = test::small_model(Normalization::softmax, 2, 1, 0, rng);  // d = 2, d_k = 3
  Model model = good;
  std::get<AttentionLayer>(model.layers[0]).heads[1].k = Matrix::Ones(4, 2);
  EXPECT_TRUE(throws_with([&] { model.validate(); },
                          "model: layers[0] (attention): heads[1].k has shape (4, 2), must be "
                          "(3, 2) (heads[1].k has 4 rows, must be d_k = 3, as in heads[0]"));
  model = good;
  std::get<AttentionLayer>(model.layers[0]).heads[0].v = Matrix::Ones(3, 3);
  EXPECT_TRUE(throws_with([&] { model.validate(); },
                          "model: layers[0] (attention): heads[0].v has shape (3, 3), must be "
                          "(d_v, 2) (heads[0].v has 3 columns, must be 2"));
  model = good;
  std::get<AttentionLayer>(model.layers[0]).heads[0].w = Matrix();
  EXPECT_TRUE(throws_with([&] { model.validate(); },
                          "model: layers[0] (attention): heads[0].w has shape (0, 0), must be "
                          "(2, 3) (heads[0].w is empty, and here an empty matrix is not the "
                          "identity"));
  model = good;
  std::get<AttentionLayer>(model.layers[0]).heads.clear();
  EXPECT_TRUE(throws_with([&] { model.validate(); },
                          "model: layers[0] (attention): heads = 0, must be >= 1"));
  EXPECT_NO_THROW(good.validate());
}


// A Sinkhorn layer that misses its tolerance is reported, on every path: one layer, the model
// evaluation, the loss, and the training loss with its backward trace (which skips the final
// violation pass only for a fixed number of iterations).
TEST(ModelLayers, SinkhornNonConvergenceReachesEveryResult) {
  Rng rng(31);
  Model model = test::small_model(Normalization::sinkhorn, 2, 2, 0, rng);
  const Measure mu(random_matrix(9, 2, rng), random_weights(9, rng));
  const Matrix z = random_matrix(4, 2, rng);
  const Example ex{mu, random_matrix(9, 2, rng)};
  auto set_sinkhorn = [&](SinkhornNormalizationOptions opt) {
    for (Layer& l : model.layers) std::get<AttentionLayer>(l).sinkhorn = opt;
  };
  const long heads = 2 * 2;  // depth 2, 2 heads per layer

  set_sinkhorn({.iterations = 0, .tol = 1e-9, .max_iterations = 1});
  SinkhornStats layer;
  apply_layer(model.layers[0], mu, z, &layer);
  EXPECT_EQ(layer.solves, 2);
  EXPECT_EQ(layer.not_converged, 2);
  EXPECT_FALSE(layer.converged());
  EXPECT_GT(layer.max_marginal_error, 1e-9);
  EXPECT_NE(layer.message.find("not converged after 1 iterations"), std::string::npos)
      << layer.message;
  SinkhornStats eval, loss, train;
  evaluate(model, mu, z, &eval);
  EXPECT_EQ(eval.solves, heads);
  EXPECT_EQ(eval.not_converged, heads);
  model_loss(model, ex, &loss);
  EXPECT_EQ(loss.not_converged, heads);
  Model grad;
  loss_and_gradient(model, ex, grad, nullptr, &train);
  EXPECT_EQ(train.solves, heads);
  EXPECT_EQ(train.not_converged, heads);
  EXPECT_EQ(train.max_iterations, 1);

  // Run to tol: every path converges, with the same iteration counts forward and in training.
  set_sinkhorn({.iterations = 0, .tol = 1e-9, .max_iterations = 10000});
  SinkhornStats ok_eval, ok_train;
  evaluate(model, mu, z, &ok_eval);
  loss_and_gradient(model, ex, grad, nullptr, &ok_train);
  EXPECT_TRUE(ok_eval.converged()) << ok_eval.message;
  EXPECT_TRUE(ok_train.converged()) << ok_train.message;
  EXPECT_LE(ok_eval.max_marginal_error, 1e-9);
  EXPECT_GT(ok_eval.max_iterations, 1);
  EXPECT_EQ(ok_train.max_iterations, ok_eval.max_iterations);

  // A fixed number of iterations defines the layer (Sinkformer): converged by definition.
  set_sinkhorn({.iterations = 3});
  SinkhornStats fixed;
  evaluate(model, mu, z, &fixed);
  EXPECT_TRUE(fixed.converged());
  EXPECT_EQ(fixed.max_iterations, 3);

  // Softmax layers run no Sinkhorn: nothing counted.
  const Model soft = test::small_model(Normalization::softmax, 2, 1, 0, rng);
  SinkhornStats none;
  evaluate(soft, mu, z, &none);
  EXPECT_EQ(none.solves, 0);
  EXPECT_TRUE(none.converged());
}

}  // namespace
}  // namespace attnflow
