// The long-context one-layer map (docs/math.md section 6): one softmax attention layer
// out_i = sum_j P_ij x_j at beta = gamma log n on n equiangular tokens with cosine rho.
// Finite n: with a = e^beta / Z, b = e^{beta rho} / Z, Z = e^beta + (n - 1) e^{beta rho}, the
// output cosine is [(1-rho)(2ab + (n-2) b^2) + rho] / [(1-rho)(a^2 + (n-1) b^2) + rho]; as
// n -> inf it tends to 1 (gamma < gamma_c), 4 rho / (1 + 3 rho) (gamma = gamma_c), rho (above),
// with gamma_c = 1 / (1 - rho).
#pragma once

#include <string>

#include "attnflow/base/types.hpp"

namespace attnflow {

// gamma_c = 1 / (1 - rho), rho in [0, 1).
double long_context_gamma_c(double rho);

// The finite-n output cosine (formula above), n >= 2, rho in [0, 1), gamma >= 0. Evaluated
// with q = n^{-gamma (1 - rho)} so that no e^beta is ever formed (any gamma, any n).
double long_context_cosine(double n, double rho, double gamma);

// The n -> inf limit: 1, 4 rho / (1 + 3 rho) or rho. "At" gamma_c means
// |gamma - gamma_c| <= kLongContextCriticalRtol * gamma_c (the limit is discontinuous there).
inline constexpr double kLongContextCriticalRtol = 1e-12;
double long_context_limit(double rho, double gamma);
// "collapse" (gamma < gamma_c), "critical" or "preserved" (gamma > gamma_c).
std::string long_context_regime(double rho, double gamma);

// Direct one-layer computation through the kernel (no formula): the output cosine of tokens
// 0 and 1 of the exact equiangular input x_j = sqrt(1 - rho) e_j + sqrt(rho) e_n, in O(n)
// memory so that n = 1e5 is cheap. Scores against tokens 0 and 1 involve only the coordinates
// (e_0, e_1, e_n) of the keys, so keys are stored as (n, 3); the quadratic quantities come from
// log-sum-exps of summed queries:
//   sum_j P_0j P_1j = exp(L(x_0 + x_1) - L(x_0) - L(x_1)),  sum_j P_ij^2 = exp(L(2 x_i) - 2 L(x_i)),
// with L(y) = log sum_j exp(beta <y, x_j>), and
//   <out_0, out_1> = (1 - rho) sum_j P_0j P_1j + rho (sum_j P_0j)(sum_j P_1j),
//   |out_i|^2      = (1 - rho) sum_j P_ij^2 + rho (sum_j P_ij)^2   (sum_j P_ij = 1).
double long_context_direct(Index n, double rho, double gamma);

struct LongContextResult {
  double n = 0, rho = 0, gamma = 0;
  double beta = 0;     // gamma log n
  double gamma_c = 0;  // 1 / (1 - rho)
  double cosine = 0;   // finite-n formula
  double limit = 0;    // n -> inf
  std::string regime;
  bool has_direct = false;   // direct = true: the layer computed through the kernel as well
  double cosine_direct = 0;  // long_context_direct(n, rho, gamma)
};
// `attnflow theory long-context` (its JSON: run/reports.hpp long_context_report_json). With
// direct, n must be an integer <= kLongContextDirectMaxN (the direct pass holds O(n) points).
inline constexpr double kLongContextDirectMaxN = 1e8;
LongContextResult long_context(double n, double rho, double gamma, bool direct = false);

}  // namespace attnflow
