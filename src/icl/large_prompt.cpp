// The large-prompt operator T[mu](z) for empirical, Gaussian and Rademacher token laws, and
// its vector-Jacobian products (docs/math.md section 7). All three share one structure: the tilted
// mean m_i (n, D) and the action of the tilted covariance C_i = dm/da on h_i = V^T g_i.
#include "attnflow/icl/large_prompt.hpp"

#include <cmath>

#include "attnflow/base/error.hpp"
#include "attnflow/kernel/kernel.hpp"

namespace attnflow {

namespace {
constexpr const char* kLargePromptCtx = "large_prompt";

void check_queries(const PromptOperator& op, Index dim, const Matrix& queries,
                   const Matrix& cotangent) {
  op.validate(dim);
  require(queries.cols() == dim, kLargePromptCtx, "queries columns", queries.cols(),
          fmt::format("the token dimension {}", dim));
  require(queries.rows() >= 1, kLargePromptCtx, "queries rows", queries.rows(), ">= 1");
  require_finite(kLargePromptCtx, "queries", queries);
  if (cotangent.size() == 0) return;
  require(cotangent.rows() == queries.rows(), kLargePromptCtx, "cotangent rows", cotangent.rows(),
          fmt::format("the number of queries {}", queries.rows()));
  require(cotangent.cols() == op.v.rows(), kLargePromptCtx, "cotangent columns", cotangent.cols(),
          fmt::format("the output dimension {} (rows of v)", op.v.rows()));
  require_finite(kLargePromptCtx, "cotangent", cotangent);
}

// Assembles outputs and gradients from the tilted means (n, D) and C_i h_i (n, D), where
// h_i = V^T g_i; cov_h is only read when a cotangent is given.
PromptOutput assemble(const PromptOperator& op, const Matrix& queries, const Matrix& means,
                      const Matrix& cotangent, const Matrix& cov_h) {
  PromptOutput r;
  r.out = means * op.v.transpose();
  r.means = means;
  r.cov_h = cov_h;
  check_output_finite(kLargePromptCtx, "out", r.out.data(), r.out.size(), r.out.cols(),
                      "the tilt a = U z is too large for the token law");
  if (cotangent.size() == 0) return r;
  r.grad_v = cotangent.transpose() * means;
  r.grad_u = cov_h.transpose() * queries;
  check_output_finite(kLargePromptCtx, "grad_u", r.grad_u.data(), r.grad_u.size(), r.grad_u.cols(),
                      "the tilt a = U z is too large for the token law");
  return r;
}
}  // namespace

void PromptOperator::validate(Index dim) const {
  require(u.rows() == dim && u.cols() == dim, kLargePromptCtx, "u shape",
          fmt::format("{} x {}", u.rows(), u.cols()), fmt::format("{} x {}", dim, dim));
  require(v.cols() == dim && v.rows() >= 1, kLargePromptCtx, "v shape",
          fmt::format("{} x {}", v.rows(), v.cols()), fmt::format("p x {} with p >= 1", dim));
  require_finite(kLargePromptCtx, "u", u);
  require_finite(kLargePromptCtx, "v", v);
}

PromptOutput empirical_prompt(const PromptOperator& op, const Measure& tokens,
                              const Matrix& queries, const Matrix& cotangent) {
  const Index dim = tokens.dim();
  check_queries(op, dim, queries, cotangent);
  const Matrix& x = tokens.points();
  const bool grads = cotangent.size() != 0;
  // Values per token: x_j (D), then x_j x_j^T row-major (D^2) when gradients are wanted.
  const Index p = grads ? dim + dim * dim : dim;
  Matrix vals(x.rows(), p);
  vals.leftCols(dim) = x;
  if (grads) {
    for (Index j = 0; j < x.rows(); ++j)
      for (Index s = 0; s < dim; ++s)
        for (Index t = 0; t < dim; ++t) vals(j, dim + s * dim + t) = x(j, s) * x(j, t);
  }
  const Matrix a = queries * op.u.transpose();  // (n, D), row i = U z_i
  Vector lse;
  Matrix moments;
  lse_reduce(a, x, tokens.log_weights(), vals, lse, moments);
  const Matrix means = moments.leftCols(dim);
  Matrix cov_h;
  if (grads) {
    const Matrix h = cotangent * op.v;  // (n, D), row i = V^T g_i
    cov_h.resize(queries.rows(), dim);
    for (Index i = 0; i < queries.rows(); ++i) {
      const Eigen::Map<const Matrix> second(moments.row(i).data() + dim, dim, dim);
      // C h = E[x x^T] h - m <m, h>
      cov_h.row(i) = (second * h.row(i).transpose()).transpose() -
                     means.row(i) * means.row(i).dot(h.row(i));
    }
  }
  return assemble(op, queries, means, cotangent, cov_h);
}

PromptOutput gaussian_prompt(const PromptOperator& op, const Vector& mean, const Matrix& cov,
                             const Matrix& queries, const Matrix& cotangent) {
  const Index dim = mean.size();
  require(dim >= 1, kLargePromptCtx, "mean size", dim, ">= 1");
  require(cov.rows() == dim && cov.cols() == dim, kLargePromptCtx, "cov shape",
          fmt::format("{} x {}", cov.rows(), cov.cols()), fmt::format("{} x {}", dim, dim));
  require_finite(kLargePromptCtx, "mean", mean);
  require_finite(kLargePromptCtx, "cov", cov);
  check_queries(op, dim, queries, cotangent);
  // Tilted Gaussian: mean + cov a, covariance cov (independent of a).
  Matrix means = (queries * op.u.transpose() * cov.transpose()).rowwise() + mean.transpose();
  Matrix cov_h;
  if (cotangent.size() != 0) cov_h = cotangent * op.v * cov.transpose();
  return assemble(op, queries, means, cotangent, cov_h);
}

PromptOutput rademacher_prompt(const PromptOperator& op, const Matrix& queries,
                               const Matrix& cotangent) {
  const Index dim = queries.cols();
  check_queries(op, dim, queries, cotangent);
  // Coordinate t of the tilted law is +-1 with odds e^{a_t} : e^{-a_t}: mean tanh(a_t),
  // variance 1 - tanh^2(a_t), independent across t.
  const Matrix means = (queries * op.u.transpose()).array().tanh().matrix();
  Matrix cov_h;
  if (cotangent.size() != 0)
    cov_h = ((1.0 - means.array().square()) * (cotangent * op.v).array()).matrix();
  return assemble(op, queries, means, cotangent, cov_h);
}

}  // namespace attnflow
