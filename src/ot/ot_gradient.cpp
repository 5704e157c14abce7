// Envelope-theorem gradients of entropic OT values (ot_gradient.hpp).
#include "attnflow/ot/ot_gradient.hpp"

#include <cmath>
#include <limits>

#include "attnflow/ot/divergence.hpp"
#include "attnflow/base/error.hpp"

namespace attnflow {

namespace {

// Gradient of the solved OT(mu, nu) from its solution: both barycentric maps through the
// kernel (rows of pi for x, columns for y), never the plan.
void envelope(const Measure& mu, const Measure& nu, const SinkhornResult& s, double sign,
              OtGradient& out) {
  const TransportCost cost = TransportCost::sqeuclidean(mu.points(), nu.points());
  const TransportCost::Gibbs rows = cost.gibbs(false, s.g, log_weights(s.b), s.eps, false, &nu.points());
  const TransportCost::Gibbs cols = cost.gibbs(true, s.f, log_weights(s.a), s.eps, false, &mu.points());
  const Matrix dx = 2.0 * ((mu.points() - rows.evals).array().colwise() * s.a.array()).matrix();
  const Matrix dy = 2.0 * ((nu.points() - cols.evals).array().colwise() * s.b.array()).matrix();
  out.dx += sign * dx;
  out.dy += sign * dy;
  out.da += sign * s.f;
  out.db += sign * s.g;
  out.iterations += s.iterations;
  out.converged = out.converged && s.converged;
  if (out.message.empty() && !s.converged) out.message = s.message;
}

OtGradient zeros(const Measure& mu, const Measure& nu) {
  OtGradient g;
  g.dx = Matrix::Zero(mu.size(), mu.dim());
  g.dy = Matrix::Zero(nu.size(), nu.dim());
  g.da = Vector::Zero(mu.size());
  g.db = Vector::Zero(nu.size());
  g.converged = true;
  return g;
}

}  // namespace

OtGradient ot_cost_gradient(const Measure& mu, const Measure& nu, const SinkhornOptions& options) {
  OtGradient g = zeros(mu, nu);
  const SinkhornResult s = sinkhorn(mu, nu, options);
  g.value = s.objective;
  envelope(mu, nu, s, 1.0, g);
  check_output_finite("ot", "gradient", g.dx.data(), g.dx.size(), g.dx.cols(),
                      "non-finite potentials");
  return g;
}

OtGradient sinkhorn_divergence_gradient(const Measure& mu, const Measure& nu,
                                        const SinkhornOptions& options) {
  OtGradient g = zeros(mu, nu);
  // The three solves of sinkhorn_divergence, combined the same way for the value.
  const DivergenceSolves s = sinkhorn_divergence_solves(mu, nu, options);
  const SinkhornResult &xy = s.xy, &xx = s.xx, &yy = s.yy;
  g.value = xy.objective - 0.5 * xx.objective - 0.5 * yy.objective;
  envelope(mu, nu, xy, 1.0, g);
  // OT(mu, mu) moves with mu in both arguments: its x- and y-gradients both belong to mu.
  OtGradient self = zeros(mu, mu);
  envelope(mu, mu, xx, 1.0, self);
  g.dx -= 0.5 * (self.dx + self.dy);
  g.da -= 0.5 * (self.da + self.db);
  OtGradient other = zeros(nu, nu);
  envelope(nu, nu, yy, 1.0, other);
  g.dy -= 0.5 * (other.dx + other.dy);
  g.db -= 0.5 * (other.da + other.db);
  g.iterations += self.iterations + other.iterations;
  g.converged = g.converged && self.converged && other.converged;
  if (g.message.empty()) g.message = !self.message.empty() ? self.message : other.message;
  check_output_finite("ot", "gradient", g.dx.data(), g.dx.size(), g.dx.cols(),
                      "non-finite potentials");
  return g;
}

}  // namespace attnflow
