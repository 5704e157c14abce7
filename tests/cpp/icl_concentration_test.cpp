// Tests of the concentration experiment (docs/math.md section 7): the log-log fit against an
// independent least-squares solve, and the measured errors of outputs and gradients decaying
// like 1/L (the self-normalized estimator's variance) for Gaussian and Rademacher tokens.
#include <Eigen/Dense>
#include <cmath>

#include "attnflow/icl/concentration.hpp"
#include "attnflow/base/parallel.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

// Closed-form fits compared with Eigen's QR solve: rounding only.
constexpr double kFitTol = 1e-10;

TEST(Concentration, LogLogFitMatchesLeastSquares) {
  const std::vector<double> x{8, 30, 100, 1000, 5000};
  const std::vector<double> y{0.5, 0.2, 0.04, 0.006, 0.0009};
  const SlopeFit f = fit_loglog(x, y);
  Matrix a(5, 2);
  Vector b(5);
  for (int k = 0; k < 5; ++k) {
    a(k, 0) = 1.0;
    a(k, 1) = std::log(x[k]);
    b[k] = std::log(y[k]);
  }
  const Vector coef = a.colPivHouseholderQr().solve(b);
  EXPECT_NEAR(f.intercept, coef[0], kFitTol);
  EXPECT_NEAR(f.slope, coef[1], kFitTol);
  // Band: slope -+ t_{0.975, 3} * sqrt(rss / 3 / sxx), t = 3.182.
  const double rss = (a * coef - b).squaredNorm();
  const Vector lx = a.col(1);
  const double sxx = (lx.array() - lx.mean()).square().sum();
  EXPECT_NEAR(f.upper - f.slope, 3.182 * std::sqrt(rss / 3.0 / sxx), kFitTol);
  // An exact power law has slope exactly -0.7 and a zero-width band.
  const SlopeFit exact = fit_loglog({2, 4, 8, 16}, {std::pow(2, -0.7), std::pow(4, -0.7),
                                                    std::pow(8, -0.7), std::pow(16, -0.7)});
  EXPECT_NEAR(exact.slope, -0.7, kFitTol);
  EXPECT_NEAR(exact.upper - exact.lower, 0.0, kFitTol);
}

// With a bounded tilt the self-normalized estimator's mean squared error is sigma^2 / L +
// O(1/L^2): the fitted slope must be -1 up to that O(1/L_min) correction and the Monte Carlo
// noise, for outputs and both gradients.
constexpr double kSlopeTol = 0.1;
void check_one_over_l(TokenLaw law) {
  ConcentrationOptions o;
  o.law = law;
  o.dim = 2;
  o.u_scale = 0.5;
  o.lengths = {64, 256, 1024, 4096, 16384};
  o.prompts = 48;
  o.queries = 8;
  o.seed = 5;
  const ConcentrationResult r = concentration(o);
  ASSERT_EQ(r.rows.size(), 5u);
  for (size_t k = 1; k < r.rows.size(); ++k) {
    EXPECT_LT(r.rows[k].output_error, r.rows[k - 1].output_error);
    EXPECT_LT(r.rows[k].grad_u_error, r.rows[k - 1].grad_u_error);
    EXPECT_LT(r.rows[k].grad_v_error, r.rows[k - 1].grad_v_error);
  }
  for (const SlopeFit* f : {&r.output, &r.grad_u, &r.grad_v}) {
    EXPECT_NEAR(f->slope, -1.0, kSlopeTol) << to_string(law);
    EXPECT_LE(f->lower, f->slope);
    EXPECT_LT(f->upper - f->lower, 4 * kSlopeTol) << "band too wide to say anything";
  }
}

TEST(Concentration, GaussianErrorsDecayLikeOneOverL) { check_one_over_l(TokenLaw::gaussian); }
TEST(Concentration, RademacherErrorsDecayLikeOneOverL) { check_one_over_l(TokenLaw::rademacher); }

TEST(Concentration, ThreadCountDoesNotChangeResults) {
  ConcentrationOptions o;
  o.lengths = {100, 3000, 30000};
  o.prompts = 3;
  o.queries = 4;
  set_num_threads(1);
  const ConcentrationResult one = concentration(o);
  set_num_threads(2);
  const ConcentrationResult two = concentration(o);
  set_num_threads(0);
  for (size_t k = 0; k < one.rows.size(); ++k) {
    EXPECT_EQ(one.rows[k].output_error, two.rows[k].output_error);
    EXPECT_EQ(one.rows[k].grad_u_error, two.rows[k].grad_u_error);
  }
}

TEST(Concentration, RejectsBadOptions) {
  ConcentrationOptions o;
  o.prompts = 1;
  EXPECT_TRUE(test::throws_with([&] { concentration(o); }, "concentration: prompts = 1, must be >= 2"));
  o = ConcentrationOptions();
  o.lengths = {10, 0};
  EXPECT_TRUE(test::throws_with([&] { o.validate(); }, "concentration: lengths entry = 0, must be >= 1"));
  EXPECT_TRUE(test::throws_with([&] { parse_token_law("cauchy"); }, "concentration: law = \"cauchy\""));
}

}  // namespace
}  // namespace attnflow
