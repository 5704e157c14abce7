// Gradient of attention on measures (attention.hpp) with respect to everything it reads:
// query and key points, values, both weight vectors, beta and every head matrix q, k, v, w.
// Used by attnflow.torch (autograd) and by anyone differentiating a loss through attention.
//
// Per head (s_ij = <u_i, kk_j>, u = beta x Q^T, kk = y K^T, hv = values V^T, col = log b + g,
// P_ij = exp(s_ij + col_j - lse_i), or exp(s_ij + col_j) for `none`), with gA = dL/d(P hv):
//   dS_ij = P_ij (<gA_i, hv_j> - D_i),  D_i = <gA_i, a_i> (softmax, sinkhorn) or 0 (none)
//   du_i = sum_j dS_ij kk_j, dkk_j = sum_i dS_ij u_i, dhv_j = sum_i P_ij gA_i, dcol_j = sum_i dS_ij
// each one kernel reduction (lse_reduce) with outer-product value columns: no n x m buffer.
// Sinkhorn heads are differentiated THROUGH THE ITERATIONS of the normalization (the same
// updates as normalization_offsets, replayed for the realized number of iterations; with a
// tolerance, the stopping index is treated as constant), which also gives the gradient with
// respect to the query weights a (they enter through the g-updates).
#pragma once

#include <optional>
#include <vector>

#include "attnflow/attention/attention.hpp"

namespace attnflow {

struct AttentionGradient {
  Matrix dx;       // (n, d) dL/d query points
  Matrix dy;       // (m, d) dL/d key points (includes the values' part when values = keys)
  Matrix dvalues;  // (m, p) dL/d values; empty when values were not given
  Vector dwx;      // (n) dL/d query weights (normalized weights: sum 1); zero for softmax/none
  Vector dwy;      // (m) dL/d key weights (normalized weights)
  double dbeta = 0.0;
  // Per head (options.heads order; one entry when heads is empty); an empty matrix where the
  // head's matrix is empty (identity, not a parameter).
  std::vector<Matrix> dq, dk, dv, dw;
  AttentionResult result;  // the forward pass (identical to attention(...))
};

// Forward and backward pass for grad_out = dL/d out (n, d_out). Same arguments and
// validation as attention(); grad_out must have the shape of the output.
AttentionGradient attention_gradient(const Measure& queries, const Measure& keys,
                                     const std::optional<Matrix>& values,
                                     const AttentionOptions& options, const Matrix& grad_out);

}  // namespace attnflow
