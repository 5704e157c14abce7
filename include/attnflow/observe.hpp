// Observables of a token configuration (SPEC.md section 5): energy
// E_beta = (1 / (2 beta)) sum_ij w_i w_j e^{beta <x_i, x_j>} (one kernel pass, reported also as
// log E_beta, finite at any beta), mean/min pairwise cosine, clusters = connected components of
// <x_i, x_j> > 1 - delta, clustered-pair fraction, order parameter |sum_i w_i x_i|.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "attnflow/types.hpp"

namespace attnflow {

struct ObserveOptions {
  double beta = 1.0;    // energy inverse temperature, > 0
  double delta = 1e-3;  // cluster threshold, in (0, 2)
  // The pair pass (min cosine, clusters, clustered pairs) is O(n^2 d) without exponentials,
  // serial: about 1 s at n = 2e4. Above pair_limit tokens it is skipped (pairs_computed =
  // false, sentinel values below). 0 = never skip.
  Index pair_limit = 20000;
  // true: clusters by <x_i, x_j> > 1 - delta (points on the sphere, SPEC's definition);
  // false (points in R^d): |x_i - x_j|^2 < 2 delta, the same relation on the sphere.
  bool sphere = true;
  void validate() const;  // "observe: delta = 2, must be in (0, 2)"
};

struct Observables {
  double t = 0.0;
  // log E_beta = logsumexp_i(log w_i + lse_i) - log(2 beta), lse_i = log sum_j w_j e^{beta <x_i, x_j>}.
  double log_energy = 0.0;
  // E_beta itself; +inf when log_energy > log(DBL_MAX) (beta above about 709 on the sphere):
  // compare log_energy then, which is always finite.
  double energy = 0.0;
  // Weighted mean over pairs i != j of <x_i, x_j> / (|x_i| |x_j|), in O(n d):
  // (|sum w_i xh_i|^2 - sum w_i^2) / (1 - sum w_i^2), xh = x / |x|.
  double mean_cosine = 0.0;
  double order = 0.0;  // |sum_i w_i x_i|
  // From the pair pass (pairs_computed = false: min_cosine = 2, clusters = -1, sizes empty,
  // clustered_pairs = -1). A single token counts as one cluster, all pairs clustered.
  bool pairs_computed = false;
  double min_cosine = 1.0;           // min over i != j of the cosine
  Index clusters = 0;                // connected components
  std::vector<Index> cluster_sizes;  // token counts, largest first
  double clustered_pairs = 0.0;      // fraction of pairs i < j in the relation (unweighted)
};

// Observables of points x (n, d) with weights w (n; empty = uniform) at time t.
Observables observe(const Matrix& x, const Vector& w, const ObserveOptions& options, double t = 0.0);

// log E_beta alone (one kernel pass).
double log_energy(const Matrix& x, const Vector& w, double beta);

// Scalar observables by name, in a fixed order (CSV columns, ensemble statistics):
// log_energy, energy, mean_cosine, min_cosine, clusters, largest_cluster, clustered_pairs, order.
std::vector<std::string> observable_names();
std::vector<double> observable_values(const Observables& o);

}  // namespace attnflow
