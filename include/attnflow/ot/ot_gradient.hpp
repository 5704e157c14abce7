// Gradients of entropic OT values by the envelope theorem (as GeomLoss does: no
// differentiation through the Sinkhorn iterations). For OT_eps(mu, nu), the primal objective
// <C, pi> + eps KL(pi | a (x) b) at the optimal plan pi, with C_ij = |x_i - y_j|^2:
//   dOT/dx_i = 2 a_i (x_i - T(x_i)),  T(x_i) = sum_j pi_ij y_j / a_i   (barycentric map)
//   dOT/dy_j = 2 b_j (y_j - S(y_j)),  S(y_j) = sum_i pi_ij x_i / b_j
//   dOT/da_i = f_i,  dOT/db_j = g_j      (dual potentials; weights on the simplex, so only
//                                         differences matter: see normalized_weights_gradient in measure.hpp)
// exact at the optimum, accurate to the solver's marginal error otherwise. The Sinkhorn
// divergence S = OT(mu, nu) - OT(mu, mu) / 2 - OT(nu, nu) / 2 combines three of them.
#pragma once

#include <string>

#include "attnflow/measure/measure.hpp"
#include "attnflow/ot/ot.hpp"

namespace attnflow {

struct OtGradient {
  double value = 0.0;  // OT_eps(mu, nu) (sinkhorn(...).objective) or the divergence
  Matrix dx, dy;       // (n, d), (m, d)
  Vector da, db;       // (n), (m): gradients with respect to the normalized weights
  bool converged = false;
  int iterations = 0;
  std::string message;  // first non-convergence message, if any
};

// OT_eps(mu, nu) for the squared Euclidean cost (the value of sinkhorn(mu, nu, options)
// .objective, bit for bit) and its envelope gradient.
OtGradient ot_cost_gradient(const Measure& mu, const Measure& nu, const SinkhornOptions& options);

// The Sinkhorn divergence (sinkhorn_divergence(mu, nu, options).value, bit for bit) and its
// envelope gradient.
OtGradient sinkhorn_divergence_gradient(const Measure& mu, const Measure& nu,
                                        const SinkhornOptions& options);

}  // namespace attnflow
