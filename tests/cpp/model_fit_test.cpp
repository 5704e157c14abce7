// Target maps against independent references (closed-form properties, dense Sinkhorn, dense
// RK4 of the SA field), and fitting: a small task reaches a stated error from a fixed seed,
// bit-identically on 1 or 2 threads.
#include <gtest/gtest.h>

#include <Eigen/Dense>

#include "attnflow/flow/flow.hpp"
#include "attnflow/model/model_fit.hpp"
#include "attnflow/model/model_tasks.hpp"
#include "attnflow/base/parallel.hpp"
#include "model_test_util.hpp"

namespace attnflow {
namespace {

using test::all_close;
using test::random_matrix;
using test::random_weights;
using test::throws_with;

TEST(ModelTasks, GaussianTargetWhitensTheMeasure) {
  // T(x) = S^{-1/2} (x - m): the image has mean 0 and covariance I, and T is affine with a
  // symmetric positive matrix (the unique Gaussian OT map to N(0, I)).
  TaskOptions o;
  o.dim = 3;
  Rng rng(41);
  const Measure mu(random_matrix(20, 3, rng) * 1.7, random_weights(20, rng));
  const Matrix t = task_target(o, mu);
  const Vector& w = mu.weights();
  const Vector mean = t.transpose() * w;
  const Matrix cov = t.transpose() * w.asDiagonal() * t;
  EXPECT_LT(mean.norm(), 1e-13);
  EXPECT_TRUE(all_close(cov, Matrix::Identity(3, 3), 1e-12, 1e-12));
  const Vector m = mu.points().transpose() * w;
  const Matrix c = mu.points().rowwise() - m.transpose();
  const Matrix a = c.colPivHouseholderQr().solve(t);  // t = c a, a = S^{-1/2} (symmetric)
  EXPECT_TRUE(all_close(a, Matrix(a.transpose()), 1e-10, 1e-10));
  EXPECT_GT(Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(a).eigenvalues().minCoeff(), 0.0);
}

TEST(ModelTasks, SinkhornTargetIsTheBarycentricMapOfTheDenseEntropicPlan) {
  TaskOptions o;
  o.kind = TaskKind::sinkhorn;
  o.eps = 0.7;
  Rng rng(42);
  const Index n = 9;
  const Measure mu(random_matrix(n, 2, rng), random_weights(n, rng));
  // Dense Sinkhorn on K_ij = exp(-|x_i - x_j|^2 / eps), plain scaling u, v (no logs needed here).
  Matrix k(n, n);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < n; ++j) k(i, j) = std::exp(-(mu.points().row(i) - mu.points().row(j)).squaredNorm() / o.eps);
  const Vector& w = mu.weights();
  Vector u = Vector::Ones(n), v = Vector::Ones(n);
  for (int it = 0; it < 5000; ++it) {
    u = w.cwiseQuotient(k * v);
    v = w.cwiseQuotient(k.transpose() * u);
  }
  const Matrix pi = u.asDiagonal() * k * v.asDiagonal();
  EXPECT_LT((pi.rowwise().sum() - w).cwiseAbs().sum(), 1e-13);
  const Matrix ref = w.cwiseInverse().asDiagonal() * pi * mu.points();
  // The target stops at marginal violation 1e-11.
  EXPECT_TRUE(all_close(task_target(o, mu), ref, 1e-9, 1e-9));
}

TEST(ModelTasks, VlasovTargetMatchesDenseRk4OfTheSaField) {
  TaskOptions o;
  o.kind = TaskKind::vlasov;
  o.heads = 2;
  o.beta = 1.5;
  o.time = 0.6;
  o.dt = 0.01;
  Rng rng(43);
  const Index n = 7;
  const Measure mu(random_matrix(n, 2, rng), random_weights(n, rng));
  const auto heads = make_heads(2, 2, "gaussian", o.seed + 7919);
  const Vector& w = mu.weights();
  auto field = [&](const Matrix& x) {  // sum_h sum_j softmax_j(beta <Q x_i, K x_j> + log w_j) V x_j
    Matrix f = Matrix::Zero(n, 2);
    for (const auto& h : heads) {
      const Matrix q = h.q.size() ? Matrix(x * h.q.transpose()) : x;
      const Matrix kk = h.k.size() ? Matrix(x * h.k.transpose()) : x;
      const Matrix vv = h.v.size() ? Matrix(x * h.v.transpose()) : x;
      for (Index i = 0; i < n; ++i) {
        Vector p(n);
        for (Index j = 0; j < n; ++j) p[j] = w[j] * std::exp(o.beta * q.row(i).dot(kk.row(j)));
        f.row(i) += (p / p.sum()).transpose() * vv;
      }
    }
    return f;
  };
  Matrix x = mu.points();
  const int steps = 60;
  const double h = o.time / steps;
  for (int s = 0; s < steps; ++s) {
    const Matrix k1 = field(x), k2 = field(x + h / 2 * k1), k3 = field(x + h / 2 * k2), k4 = field(x + h * k3);
    x += h / 6 * (k1 + 2 * k2 + 2 * k3 + k4);
  }
  // Same RK4 grid on both sides: only rounding differs.
  EXPECT_TRUE(all_close(task_target(o, mu), x, 1e-10, 1e-10));
}

TEST(ModelTasks, DatasetsAreSeededAndValidated) {
  TaskOptions o;
  o.train_size = 5;
  o.test_size = 3;
  o.n_min = 4;
  o.n_max = 9;
  const TaskData a = make_task(o), b = make_task(o);
  ASSERT_EQ(a.train.size(), 5u);
  for (size_t i = 0; i < a.train.size(); ++i) {
    EXPECT_EQ(a.train[i].mu.points(), b.train[i].mu.points());
    EXPECT_GE(a.train[i].mu.size(), 4);
    EXPECT_LE(a.train[i].mu.size(), 9);
  }
  o.n_max = 2;
  EXPECT_TRUE(throws_with([&] { make_task(o); }, "task: n_max = 2, must be >= n_min (4)"));
}

// The stated error: on the Gaussian whitening task (d = 2, measures of 12-16 atoms) a 2-block
// softmax model (2 heads, MLP 16) trained 150 Adam steps from seed 1 brings the held-out loss
// below 20% of the identity map's.
TEST(ModelFit, SmallGaussianTaskReachesStatedErrorBitIdenticallyOnOneOrTwoThreads) {
  TaskOptions t;
  t.n_min = 12;
  t.n_max = 16;
  t.train_size = 64;
  t.test_size = 32;
  const TaskData data = make_task(t);
  ModelSpec spec;
  spec.mlp_hidden = 16;
  FitOptions fo;
  fo.steps = 150;
  fo.batch_size = 8;
  fo.eval_every = 50;
  std::string bytes[2];
  FitResult res;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    Rng rng(1);
    Model model = random_model(spec, rng);
    res = fit_model(model, data.train, data.test, fo);
    bytes[threads - 1] = model_to_bytes(model);
  }
  set_num_threads(0);
  EXPECT_EQ(bytes[0], bytes[1]);
  ASSERT_EQ(res.history.size(), 4u);
  EXPECT_TRUE(res.finite);
  EXPECT_LT(res.final_test_loss, 0.2 * res.identity_test_loss)
      << "test " << res.final_test_loss << " identity " << res.identity_test_loss;
  EXPECT_LT(res.history.back().train_loss, res.history.front().train_loss);
}


// FitResult carries the Sinkhorn status of training and evaluation: a cap of 1 iteration on a
// tolerance run misses at every step, a fixed number of iterations never does.
TEST(ModelFit, SinkhornNonConvergenceIsInTheResult) {
  TaskOptions t;
  t.n_min = 6;
  t.n_max = 8;
  t.train_size = 8;
  t.test_size = 4;
  const TaskData data = make_task(t);
  ModelSpec spec;
  spec.depth = 1;
  spec.normalization = Normalization::sinkhorn;
  FitOptions fo;
  fo.steps = 3;
  fo.batch_size = 2;
  fo.eval_every = 3;
  for (const bool capped : {true, false}) {
    spec.sinkhorn = capped ? SinkhornNormalizationOptions{.iterations = 0, .max_iterations = 1}
                           : SinkhornNormalizationOptions{.iterations = 3};
    Rng rng(2);
    Model model = random_model(spec, rng);
    const FitResult res = fit_model(model, data.train, data.test, fo);
    // 2 evaluations x 12 measures + 3 steps x 2 examples, 2 heads each.
    EXPECT_EQ(res.sinkhorn.solves, 2 * (2 * 12 + 3 * 2));
    EXPECT_EQ(res.sinkhorn.converged(), !capped) << res.sinkhorn.message;
    EXPECT_EQ(res.sinkhorn.not_converged, capped ? res.sinkhorn.solves : 0);
  }
}

}  // namespace
}  // namespace attnflow
