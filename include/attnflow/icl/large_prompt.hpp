// The large-prompt attention operator (docs/math.md section 7):
//   T[mu](z) = E_mu[V X e^{<a, X>}] / E_mu[e^{<a, X>}],  a = U z,  U = K^T Q,
// i.e. V times the mean of the exponentially tilted law mu_a. Three token laws: an empirical
// prompt (ordinary softmax attention, one streaming lse_reduce pass per batch of queries), a
// Gaussian N(m, G) (closed form T = V m + V G U z) and i.i.d. Rademacher coordinates
// (closed form T = V tanh(U z)); each with its vector-Jacobian product in U and V.
#pragma once

#include "attnflow/measure/measure.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

// Operator parameters: u (D, D) = K^T Q acts on queries, v (p, D) maps tokens to outputs.
struct PromptOperator {
  Matrix u;
  Matrix v;
  // Throws "large_prompt: u shape = ..., must be D x D" etc. for a token dimension D.
  void validate(Index dim) const;
};

// Outputs and the gradient of the scalar sum_i <g_i, T(z_i)> for cotangents g (n, p):
//   grad_v = sum_i g_i m_i^T                 (m_i = tilted mean, (D))
//   grad_u = sum_i (C_i V^T g_i) z_i^T       (C_i = tilted covariance, dm/da)
struct PromptOutput {
  Matrix out;     // (n, p), row i = T(z_i)
  Matrix grad_u;  // (D, D), empty unless requested
  Matrix grad_v;  // (p, D), empty unless requested
  // Per-query pieces (for per-query errors): the tilted means m_i (n, D) and, with a
  // cotangent, C_i V^T g_i (n, D). Query i's gradients are g_i m_i^T and (C_i V^T g_i) z_i^T.
  Matrix means;
  Matrix cov_h;
};

// Empirical prompt: tokens mu (L points in R^D, weights honoured), queries z (n, D).
// With cotangent g (n, p) non-empty, also returns the gradients; the covariances come from
// the same streaming pass (values = [x_j, vec(x_j x_j^T)]), so memory stays O((n + L) D^2).
PromptOutput empirical_prompt(const PromptOperator& op, const Measure& tokens,
                              const Matrix& queries, const Matrix& cotangent = Matrix());

// Gaussian tokens N(mean, cov): T(z) = V mean + V cov U z; C_i = cov for every query.
PromptOutput gaussian_prompt(const PromptOperator& op, const Vector& mean, const Matrix& cov,
                             const Matrix& queries, const Matrix& cotangent = Matrix());

// Tokens with i.i.d. uniform +-1 coordinates: the tilted law factorizes, so
// T(z) = V tanh(U z) and C_i = diag(1 - tanh^2(U z_i)).
PromptOutput rademacher_prompt(const PromptOperator& op, const Matrix& queries,
                               const Matrix& cotangent = Matrix());

}  // namespace attnflow
