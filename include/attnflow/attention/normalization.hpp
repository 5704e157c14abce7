// Normalization of an affinity (docs/math.md section 1): one parameter, not a fork. Attention
// layers, flows and models all take a Normalization; adding a fourth touches this header and
// normalize.cpp only.
#pragma once

#include <string>
#include <string_view>

#include "attnflow/ot/sinkhorn.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {


enum class Normalization { softmax, sinkhorn, none };

// "softmax" | "sinkhorn" | "none"; anything else throws naming `context` and the value.
Normalization parse_normalization(std::string_view name, std::string_view context = "normalization");
std::string to_string(Normalization n);

// Sinkhorn normalization inside attention: either a fixed number of iterations (Sinkformer
// convention: iteration 1 is softmax exactly) or run to a tolerance on the marginal violation
// sum_j |sum_i pi_ij - b_j|. Options (SinkhornNormalizationOptions) and status
// (NormalizationStatus) are the Sinkhorn engine's (sinkhorn.hpp).

// Log-domain attention weights for one head, as the column offsets the kernel adds:
// P_ij = exp(s_ij + col_j - lse_i) times exp(lse_i) for `none`.
//   u (n, k) = beta Q x_i, v (m, k) = K y_j, a (n), b (m) weights.
// Returns col (m) = log b_j + g_j (g = 0 except for sinkhorn) and fills status. With `comm`
// (several processes, collective.hpp) the Sinkhorn half-steps are split across them by rows;
// with `split` u and v are this process's rows only (affinity_half_steps with SplitRows).
Vector normalization_offsets(Normalization normalization, const MatrixRef& u, const MatrixRef& v,
                             const Vector& a, const Vector& b,
                             const SinkhornNormalizationOptions& options,
                             NormalizationStatus& status, const Collective* comm = nullptr,
                             const SplitRows* split = nullptr);

}  // namespace attnflow
