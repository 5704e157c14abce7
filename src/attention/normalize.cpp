#include <cmath>

#include "attnflow/error.hpp"
#include "attnflow/kernel.hpp"
#include "attnflow/normalization.hpp"

namespace attnflow {

Normalization parse_normalization(std::string_view name, std::string_view context) {
  if (name == "softmax") return Normalization::softmax;
  if (name == "sinkhorn") return Normalization::sinkhorn;
  if (name == "none") return Normalization::none;
  throw_invalid(context, "normalization", fmt::format("\"{}\"", name),
                "one of softmax, sinkhorn, none");
}

std::string to_string(Normalization n) {
  switch (n) {
    case Normalization::softmax: return "softmax";
    case Normalization::sinkhorn: return "sinkhorn";
    case Normalization::none: return "none";
  }
  return "?";
}

namespace {

Vector log_of(const Vector& w) {
  Vector lw(w.size());
  for (Index i = 0; i < w.size(); ++i)
    lw[i] = w[i] > 0.0 ? std::log(w[i]) : -std::numeric_limits<double>::infinity();
  return lw;
}

// Sinkhorn on the affinity s_ij = <u_i, v_j> in the log domain, potentials f (n), g (m)
// with pi_ij = a_i b_j exp(f_i + g_j + s_ij) (SPEC.md section 1). Iteration t is one
// f-update (rows of pi sum to a exactly afterwards), preceded by a g-update for t >= 2, so
// iteration 1 from g = 0 is softmax (SPEC fact 1). Returns log b + g.
Vector sinkhorn_offsets(const MatrixRef& u, const MatrixRef& v, const Vector& a, const Vector& b,
                        const SinkhornNormalizationOptions& opt, NormalizationStatus& status) {
  const Vector loga = log_of(a), logb = log_of(b);
  const Matrix none(0, 0);
  Vector g = Vector::Zero(b.size()), f(a.size()), lse_rows, lse_cols;
  Matrix unused;
  const int max_it = opt.iterations > 0 ? opt.iterations : opt.max_iterations;
  status = NormalizationStatus{};
  for (int it = 1; it <= max_it; ++it) {
    if (it > 1) {
      // Column sums of the current pi: sum_i pi_ij = b_j exp(g_j + lse_cols_j).
      const Vector colf = loga + f;
      lse_reduce(v, u, colf, none, lse_cols, unused);
      double err = 0.0;
      for (Index j = 0; j < b.size(); ++j) err += std::abs(b[j] * std::exp(g[j] + lse_cols[j]) - b[j]);
      status.marginal_error = err;
      if (opt.iterations == 0 && err <= opt.tol) {
        status.iterations = it - 1;
        status.converged = true;
        return logb + g;
      }
      g = -lse_cols;
    }
    const Vector colg = logb + g;
    lse_reduce(u, v, colg, none, lse_rows, unused);
    f = -lse_rows;
    status.iterations = it;
  }
  // Final violation for the reported status.
  const Vector colf = loga + f;
  lse_reduce(v, u, colf, none, lse_cols, unused);
  double err = 0.0;
  for (Index j = 0; j < b.size(); ++j) err += std::abs(b[j] * std::exp(g[j] + lse_cols[j]) - b[j]);
  status.marginal_error = err;
  status.converged = opt.iterations > 0 || err <= opt.tol;
  if (!status.converged)
    status.message = fmt::format("sinkhorn normalization: not converged after {} iterations "
                                 "(marginal error {:.3g} > tol {:.3g})",
                                 status.iterations, err, opt.tol);
  return logb + g;
}

}  // namespace

Vector normalization_offsets(Normalization normalization, const MatrixRef& u, const MatrixRef& v,
                             const Vector& a, const Vector& b,
                             const SinkhornNormalizationOptions& options,
                             NormalizationStatus& status) {
  status = NormalizationStatus{};
  if (normalization == Normalization::sinkhorn) return sinkhorn_offsets(u, v, a, b, options, status);
  return log_of(b);
}

}  // namespace attnflow
