// Tests of the large-prompt operator T[mu](z) (docs/math.md section 7): the empirical operator
// against a dense reference, the Gaussian tilt and the Rademacher tanh law (exactly and by
// Monte Carlo over many long prompts), and every gradient against finite differences.
#include <cmath>
#include <functional>

#include "attnflow/icl/large_prompt.hpp"
#include "attnflow/base/parallel.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::all_close;
using test::random_matrix;

// Dense reference and the kernel differ only by summation order: a few ulps of the values.
constexpr double kDenseTol = 1e-12;
// Central differences with step 1e-6 on O(1) quantities: truncation ~1e-12, rounding ~1e-10.
constexpr double kPromptFdStep = 1e-6;
constexpr double kPromptFdTol = 1e-7;
// Monte Carlo checks accept |mean - exact| <= kZ standard errors (two-sided p ~ 6e-5 per
// entry); the ratio estimator's O(1/L) bias is far below one standard error at these L.
constexpr double kZ = 4.0;

PromptOperator random_operator(Index dim, Index p, Rng& rng, double scale) {
  return {random_matrix(dim, dim, rng, scale / std::sqrt(double(dim))),
          random_matrix(p, dim, rng, 1.0)};
}

// Dense reference: materializes the scores, max-shifts, exponentiates, normalizes.
Matrix dense_operator(const PromptOperator& op, const Matrix& x, const Vector& w,
                      const Matrix& z) {
  Matrix out(z.rows(), op.v.rows());
  for (Index i = 0; i < z.rows(); ++i) {
    const Vector a = op.u * z.row(i).transpose();
    const Vector s = x * a;
    const double smax = s.maxCoeff();
    Vector m = Vector::Zero(x.cols());
    double total = 0.0;
    for (Index j = 0; j < x.rows(); ++j) {
      const double e = w[j] * std::exp(s[j] - smax);
      total += e;
      m += e * x.row(j).transpose();
    }
    out.row(i) = (op.v * m / total).transpose();
  }
  return out;
}

TEST(LargePrompt, EmpiricalMatchesDenseReference) {
  Rng rng(11);
  const Index dim = 3, p = 2;
  const PromptOperator op = random_operator(dim, p, rng, 1.5);
  const Matrix x = random_matrix(700, dim, rng);
  const Vector w = test::random_weights(700, rng);
  const Matrix z = random_matrix(40, dim, rng);
  const PromptOutput r = empirical_prompt(op, Measure(x, w), z);
  EXPECT_TRUE(all_close(r.out, dense_operator(op, x, w, z), kDenseTol, kDenseTol));
}

TEST(LargePrompt, RademacherCubeGivesTanhExactly) {
  // The uniform measure on all 2^D sign vectors IS the Rademacher law, so the empirical
  // operator on it must equal V tanh(U z) to rounding.
  const Index dim = 4;
  Matrix cube(1 << dim, dim);
  for (Index j = 0; j < cube.rows(); ++j)
    for (Index t = 0; t < dim; ++t) cube(j, t) = (j >> t) & 1 ? 1.0 : -1.0;
  Rng rng(12);
  const PromptOperator op = random_operator(dim, 3, rng, 2.0);
  const Matrix z = random_matrix(25, dim, rng);
  const Matrix g = random_matrix(25, 3, rng);
  const PromptOutput emp = empirical_prompt(op, Measure(cube), z, g);
  const PromptOutput law = rademacher_prompt(op, z, g);
  Matrix tanh_ref = (z * op.u.transpose()).array().tanh().matrix() * op.v.transpose();
  EXPECT_TRUE(all_close(law.out, tanh_ref, kDenseTol, kDenseTol));
  EXPECT_TRUE(all_close(emp.out, law.out, kDenseTol, kDenseTol));
  EXPECT_TRUE(all_close(emp.grad_u, law.grad_u, kDenseTol, kDenseTol));
  EXPECT_TRUE(all_close(emp.grad_v, law.grad_v, kDenseTol, kDenseTol));
}

// Monte Carlo over `prompts` independent prompts of length L: the prompt-averaged output
// must match `exact` within kZ standard errors (estimated from the prompts' spread).
void check_monte_carlo(const std::function<Matrix(Rng&)>& sample_prompt,
                       const PromptOperator& op, const Matrix& z, const Matrix& exact,
                       int prompts) {
  Matrix sum = Matrix::Zero(exact.rows(), exact.cols());
  Matrix sum_sq = sum;
  Rng base(2027);
  for (int r = 0; r < prompts; ++r) {
    Rng rng = base.split(r);
    const Matrix out = empirical_prompt(op, Measure(sample_prompt(rng)), z).out;
    sum += out;
    sum_sq += out.cwiseProduct(out);
  }
  const Matrix mean = sum / prompts;
  const Matrix var = (sum_sq / prompts - mean.cwiseProduct(mean)) * (prompts / (prompts - 1.0));
  const Matrix se = (var / prompts).cwiseSqrt();
  for (Index i = 0; i < exact.rows(); ++i)
    for (Index j = 0; j < exact.cols(); ++j)
      EXPECT_LE(std::abs(mean(i, j) - exact(i, j)), kZ * se(i, j))
          << "query " << i << " output " << j << ": MC " << mean(i, j) << " exact " << exact(i, j)
          << " se " << se(i, j);
  // The check must be sharp: standard errors small against the outputs themselves.
  EXPECT_LT(se.maxCoeff(), 0.02 * exact.cwiseAbs().maxCoeff());
}

TEST(LargePrompt, GaussianTiltMonteCarlo) {
  Rng rng(13);
  const Index dim = 3, p = 2;
  const PromptOperator op = random_operator(dim, p, rng, 0.6);
  const Vector mean = random_matrix(dim, 1, rng, 0.5);
  const Matrix chol = random_matrix(dim, dim, rng, 0.5) + Matrix::Identity(dim, dim);
  const Matrix cov = chol * chol.transpose();
  const Matrix z = random_matrix(6, dim, rng, 0.7);
  const Matrix exact = gaussian_prompt(op, mean, cov, z).out;
  // Closed form written out: V m + V G U z.
  const Matrix by_hand = ((op.v * cov * op.u * z.transpose()).colwise() + op.v * mean).transpose();
  EXPECT_TRUE(all_close(exact, by_hand, kDenseTol, kDenseTol));
  auto sample = [&](Rng& r) {
    Matrix x = random_matrix(4000, dim, r) * chol.transpose();
    x.rowwise() += mean.transpose();
    return x;
  };
  check_monte_carlo(sample, op, z, exact, 200);
}

TEST(LargePrompt, RademacherTanhMonteCarlo) {
  Rng rng(14);
  const Index dim = 3;
  const PromptOperator op = random_operator(dim, 2, rng, 1.5);
  const Matrix z = random_matrix(6, dim, rng);
  const Matrix exact = rademacher_prompt(op, z).out;
  auto sample = [&](Rng& r) {
    Matrix x(4000, dim);
    for (Index j = 0; j < x.rows(); ++j)
      for (Index t = 0; t < dim; ++t) x(j, t) = r.uniform() < 0.5 ? -1.0 : 1.0;
    return x;
  };
  check_monte_carlo(sample, op, z, exact, 200);
  // And the law is not linear in z: T(2z) != 2 T(z) - T(0) for this U.
  const Matrix twice = rademacher_prompt(op, 2.0 * z).out;
  EXPECT_GT((twice - 2.0 * exact).cwiseAbs().maxCoeff(), 0.05);
}

// Checks grad_u and grad_v of sum_i <g_i, T(z_i)> against central differences.
void check_gradients(const std::function<PromptOutput(const PromptOperator&)>& eval,
                     const PromptOperator& op, const Matrix& g) {
  const PromptOutput r = eval(op);
  auto objective = [&](const PromptOperator& o) { return (eval(o).out.cwiseProduct(g)).sum(); };
  for (int which = 0; which < 2; ++which) {
    const Matrix& analytic = which == 0 ? r.grad_u : r.grad_v;
    Matrix fd(analytic.rows(), analytic.cols());
    for (Index i = 0; i < fd.rows(); ++i)
      for (Index j = 0; j < fd.cols(); ++j) {
        PromptOperator plus = op, minus = op;
        (which == 0 ? plus.u : plus.v)(i, j) += kPromptFdStep;
        (which == 0 ? minus.u : minus.v)(i, j) -= kPromptFdStep;
        fd(i, j) = (objective(plus) - objective(minus)) / (2 * kPromptFdStep);
      }
    EXPECT_TRUE(all_close(analytic, fd, kPromptFdTol, kPromptFdTol)) << (which == 0 ? "grad_u" : "grad_v");
  }
}

TEST(LargePrompt, GradientsMatchFiniteDifferences) {
  Rng rng(15);
  const Index dim = 3, p = 2;
  const PromptOperator op = random_operator(dim, p, rng, 1.0);
  const Matrix x = random_matrix(300, dim, rng);
  const Vector w = test::random_weights(300, rng);
  const Matrix z = random_matrix(7, dim, rng);
  const Matrix g = random_matrix(7, p, rng);
  const Measure mu(x, w);
  check_gradients([&](const PromptOperator& o) { return empirical_prompt(o, mu, z, g); }, op, g);
  const Vector mean = random_matrix(dim, 1, rng);
  const Matrix c = random_matrix(dim, dim, rng, 0.5);
  const Matrix cov = c * c.transpose() + Matrix::Identity(dim, dim);
  check_gradients([&](const PromptOperator& o) { return gaussian_prompt(o, mean, cov, z, g); },
                  op, g);
  check_gradients([&](const PromptOperator& o) { return rademacher_prompt(o, z, g); }, op, g);
}

TEST(LargePrompt, ThreadCountDoesNotChangeResults) {
  Rng rng(16);
  const PromptOperator op = random_operator(3, 2, rng, 1.0);
  const Measure mu(random_matrix(2000, 3, rng));
  const Matrix z = random_matrix(100, 3, rng), g = random_matrix(100, 2, rng);
  set_num_threads(1);
  const PromptOutput one = empirical_prompt(op, mu, z, g);
  set_num_threads(2);
  const PromptOutput two = empirical_prompt(op, mu, z, g);
  set_num_threads(0);
  EXPECT_EQ(one.out, two.out);
  EXPECT_EQ(one.grad_u, two.grad_u);
  EXPECT_EQ(one.grad_v, two.grad_v);
}

TEST(LargePrompt, RejectsBadInput) {
  Rng rng(17);
  const PromptOperator op = random_operator(3, 2, rng, 1.0);
  const Measure mu(random_matrix(10, 3, rng));
  EXPECT_TRUE(test::throws_with([&] { empirical_prompt(op, mu, Matrix::Zero(2, 4)); },
                                "large_prompt: queries columns = 4, must be the token dimension 3"));
  EXPECT_TRUE(test::throws_with([&] { empirical_prompt({op.u, Matrix::Zero(2, 4)}, mu, Matrix::Zero(2, 3)); },
                                "large_prompt: v shape = 2 x 4, must be p x 3"));
  EXPECT_TRUE(test::throws_with(
      [&] { empirical_prompt(op, mu, Matrix::Zero(2, 3), Matrix::Zero(3, 2)); },
      "large_prompt: cotangent rows = 3"));
  Matrix bad = Matrix::Zero(2, 3);
  bad(1, 2) = std::nan("");
  EXPECT_TRUE(test::throws_with([&] { rademacher_prompt(op, bad); }, "queries"));
  EXPECT_TRUE(test::throws_with(
      [&] { gaussian_prompt(op, Vector::Zero(3), Matrix::Zero(2, 2), Matrix::Zero(1, 3)); },
      "large_prompt: cov shape = 2 x 2, must be 3 x 3"));
}

}  // namespace
}  // namespace attnflow
