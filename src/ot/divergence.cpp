// Sinkhorn divergence, barycentric map and dense plan (docs/math.md section 3).
#include "attnflow/ot/divergence.hpp"

#include <cmath>

#include "attnflow/base/error.hpp"

namespace attnflow {

namespace {
constexpr const char* kDivergenceCtx = "ot";

void require_solution_fits(const TransportCost& cost, const SinkhornResult& s) {
  if (s.f.size() != cost.rows() || s.g.size() != cost.cols() || s.a.size() != cost.rows() ||
      s.b.size() != cost.cols())
    throw std::invalid_argument(fmt::format(
        "{}: solution has f size {} and g size {}, must match the cost ({} x {})", kDivergenceCtx,
        s.f.size(), s.g.size(), cost.rows(), cost.cols()));
}
}  // namespace

DivergenceSolves sinkhorn_divergence_solves(const Measure& mu, const Measure& nu,
                                            const SinkhornOptions& options) {
  // The self-terms are symmetric problems: the averaged update converges where alternating
  // updates stall under eps-scaling. When nu is mu itself, so is the cross term (and S = 0
  // exactly). Over-relaxation is the cross term's (sinkhorn()): the averaged update has none.
  SinkhornOptions self = options;
  self.overrelax = 1.0;
  DivergenceSolves s;
  s.xx = sinkhorn_symmetric(mu.weights(), TransportCost::sqeuclidean(mu.points(), mu.points()),
                            self);
  const bool same = mu.size() == nu.size() && mu.dim() == nu.dim() &&
                    mu.points() == nu.points() && mu.weights() == nu.weights();
  s.xy = same ? s.xx : sinkhorn(mu, nu, options);
  s.yy = same ? s.xx
              : sinkhorn_symmetric(nu.weights(), TransportCost::sqeuclidean(nu.points(), nu.points()),
                                   self);
  return s;
}

SinkhornDivergence sinkhorn_divergence(const Measure& mu, const Measure& nu,
                                       const SinkhornOptions& options) {
  SinkhornDivergence d;
  const DivergenceSolves s = sinkhorn_divergence_solves(mu, nu, options);
  const SinkhornResult &xy = s.xy, &xx = s.xx, &yy = s.yy;
  d.ot_xy = xy.objective;
  d.ot_xx = xx.objective;
  d.ot_yy = yy.objective;
  d.value = d.ot_xy - 0.5 * d.ot_xx - 0.5 * d.ot_yy;
  d.iterations = xy.iterations + xx.iterations + yy.iterations;
  d.converged = xy.converged && xx.converged && yy.converged;
  for (const SinkhornResult* r : {&xy, &xx, &yy})
    if (d.message.empty() && !r->converged) d.message = r->message;
  return d;
}

Matrix barycentric_map(const TransportCost& cost, const SinkhornResult& solution,
                       const Matrix& targets) {
  require_solution_fits(cost, solution);
  if (targets.rows() != cost.cols())
    throw std::invalid_argument(fmt::format("{}: targets have {} rows, must equal m = {}", kDivergenceCtx,
                                            targets.rows(), cost.cols()));
  require_finite(kDivergenceCtx, "targets", targets);
  // Row i of pi is a_i exp((f_i + g_j - C_ij) / eps) b_j; the kernel normalizes it by its
  // own sum, which is the conditional of pi given x_i (== pi_ij / a_i up to the tolerance).
  const TransportCost::Gibbs rows =
      cost.gibbs(false, solution.g, log_weights(solution.b), solution.eps, false, &targets);
  check_output_finite(kDivergenceCtx, "barycentric_map", rows.evals.data(), rows.evals.size(),
                      rows.evals.cols(), "non-finite potentials");
  return rows.evals;
}

Matrix transport_plan(const TransportCost& cost, const SinkhornResult& solution, Index max_entries) {
  require_solution_fits(cost, solution);
  const Index n = cost.rows(), m = cost.cols();
  if (static_cast<double>(n) * static_cast<double>(m) > static_cast<double>(max_entries))
    throw std::invalid_argument(fmt::format(
        "{}: plan n * m = {} * {} = {}, must be <= {} (dense plan; use the potentials or the "
        "barycentric map for large problems)", kDivergenceCtx, n, m, static_cast<double>(n) * m, max_entries));
  Matrix pi(n, m);
  const double eps = solution.eps;
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < m; ++j)
      pi(i, j) = solution.a[i] * solution.b[j] *
                 std::exp((solution.f[i] + solution.g[j] - cost(i, j)) / eps);
  check_output_finite(kDivergenceCtx, "plan", pi.data(), pi.size(), m, "non-finite potentials");
  return pi;
}

}  // namespace attnflow
