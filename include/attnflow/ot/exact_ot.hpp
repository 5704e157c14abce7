// Exact (unregularized) optimal transport between small discrete measures by the network
// simplex of LEMON (docs/math.md section 3): min <C, pi> over Pi(a, b), and W_p = (min <|x-y|^p,
// pi>)^(1/p) for p = 1, 2. Needs the dense n x m cost, hence the size limit kExactMaxPairs.
#pragma once

#include <string>
#include <vector>

#include "attnflow/measure/measure.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

// n * m above this is refused: the bipartite graph has n * m arcs (~100 B each in LEMON),
// and the simplex time grows faster than n * m; use sinkhorn() beyond.
inline constexpr Index kExactMaxPairs = 4'000'000;

struct PlanEntry {
  Index i = 0, j = 0;
  double mass = 0.0;
};

struct ExactOtResult {
  double cost = 0.0;               // <C, pi>
  std::vector<PlanEntry> plan;     // nonzero entries of pi (at most n + m - 1), row-major order
  Vector f, g;                     // dual potentials: f_i + g_j <= C_ij, equality on the support
  double marginal_error = 0.0;     // sum_i |sum_j pi_ij - a_i| + sum_j |sum_i pi_ij - b_j|
  bool converged = false;          // the simplex reached an optimum
  std::string message;
  double cost_quantum = 0.0;        // costs are solved rounded to multiples of this (max|C| 2^-40)
  Index n = 0, m = 0;
  Matrix dense_plan() const;       // (n, m)
};

// a (n), b (m) validated and normalized to mass 1 (empty = uniform); cost (n, m) finite.
// LEMON's simplex needs integral data: masses are integers in units of 2^-40 and costs in units
// of max|C| 2^-40, so marginals match a, b to ~1e-12 and the cost is optimal to ~1e-12 max|C|.
ExactOtResult exact_ot(const Vector& a, const Vector& b, const Matrix& cost);

// W_p(mu, nu) for p = 1 or 2 with the Euclidean distance; `result`, when given, receives the
// solve (its cost is W_p^p).
double wasserstein(const Measure& mu, const Measure& nu, int p, ExactOtResult* result = nullptr);

}  // namespace attnflow
