// Quantities derived from an entropic OT solution (docs/math.md section 3):
//   Sinkhorn divergence S = OT_eps(mu, nu) - OT_eps(mu, mu) / 2 - OT_eps(nu, nu) / 2 (debiased,
//   >= 0, zero iff mu = nu), the barycentric map T(x_i) = sum_j pi_ij y_j / a_i, and the dense
//   plan pi_ij = a_i b_j exp((f_i + g_j - C_ij) / eps) on request, behind a size guard.
#pragma once

#include <string>

#include "attnflow/measure/measure.hpp"
#include "attnflow/ot/ot.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

struct SinkhornDivergence {
  double value = 0.0;                 // S(mu, nu) with the squared Euclidean cost
  double ot_xy = 0.0, ot_xx = 0.0, ot_yy = 0.0;  // the three entropic objectives
  bool converged = false;             // all three solves converged
  int iterations = 0;                 // total over the three solves
  std::string message;                // first non-convergence message, if any
};

// Debiased Sinkhorn divergence between two measures, squared Euclidean cost. Each OT_eps term
// is the primal entropic objective of its solve (SinkhornResult::objective).
SinkhornDivergence sinkhorn_divergence(const Measure& mu, const Measure& nu,
                                       const SinkhornOptions& options);

// The three solves behind S(mu, nu): OT(mu, nu) and the self-terms OT(mu, mu), OT(nu, nu) by the
// symmetric (averaged) update; when nu is mu, all three are the one symmetric solve (S = 0
// exactly). sinkhorn_divergence and its gradient (ot_gradient.hpp) combine these.
struct DivergenceSolves {
  SinkhornResult xy, xx, yy;
};
DivergenceSolves sinkhorn_divergence_solves(const Measure& mu, const Measure& nu,
                                            const SinkhornOptions& options);

// T(x_i) = sum_j pi_ij y_j / a_i (n, p) for a solution of sinkhorn(a, b, cost): the conditional
// mean of `targets` (m, p) (e.g. the points of nu) under row i of pi, through the kernel.
Matrix barycentric_map(const TransportCost& cost, const SinkhornResult& solution,
                       const Matrix& targets);

// Dense plans above this many entries (200 MB of doubles) are refused.
inline constexpr Index kMaxPlanEntries = 25'000'000;

// The dense plan (n, m) of a Sinkhorn solution; throws std::invalid_argument naming n * m
// when it exceeds max_entries.
Matrix transport_plan(const TransportCost& cost, const SinkhornResult& solution,
                      Index max_entries = kMaxPlanEntries);

}  // namespace attnflow
