// Observables of a token configuration (docs/math.md section 5): energy
// E_beta = (1 / (2 beta)) sum_ij w_i w_j e^{beta <x_i, x_j>} (one kernel pass, reported also as
// log E_beta, finite at any beta), mean/min pairwise cosine, clusters = connected components of
// <x_i, x_j> > 1 - delta, clustered-pair fraction, order parameter |sum_i w_i x_i|.
// On the sphere (ObserveOptions::sphere, the default) every one of them is computed on the
// directions theta_i = x_i / |x_i|, whatever the radii: under a normalization scheme that moves
// the radius (pre-LN, peri-LN, mix-LN) the tokens are x_i = r_i theta_i and the clustering is
// the thetas'. The radii |x_i| are reported separately (radius_mean, radius_min, radius_max).
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "attnflow/base/types.hpp"

namespace attnflow {

struct ObserveOptions {
  double beta = 1.0;    // energy inverse temperature, > 0
  double delta = 1e-3;  // cluster threshold, in (0, 2)
  // The pair pass (min cosine, clusters, clustered pairs) is O(n^2 d) without exponentials,
  // serial: about 1 s at n = 2e4. Above pair_limit tokens it is skipped (pairs_computed =
  // false, sentinel values below). 0 = never skip.
  Index pair_limit = 20000;
  // true (points on the sphere, the definition of docs/math.md section 5.7): every observable is
  // computed on the directions theta_i = x_i / |x_i| (a zero row is rejected, its direction is
  // undefined), clusters by <theta_i, theta_j> > 1 - delta.
  // false (points in R^d): on x itself, clusters by |x_i - x_j|^2 < 2 delta (the same relation
  // for unit vectors); only the cosines use directions.
  bool sphere = true;
  void validate() const;  // "observe: delta = 2, must be in (0, 2)"
};

// Every value is finite except energy, which is +inf exactly when log_energy > log(DBL_MAX);
// observe() throws std::runtime_error naming any other observable that is not finite.
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
  double order = 0.0;  // |sum_i w_i theta_i| (sphere), |sum_i w_i x_i| (R^d)
  // Radii |x_i| of the points given (1 on the sphere without a scheme; r_i under pre-LN etc.):
  // the weighted mean sum_i w_i |x_i|, the min and the max.
  double radius_mean = 1.0, radius_min = 1.0, radius_max = 1.0;
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
// log_energy, energy, mean_cosine, min_cosine, clusters, largest_cluster, clustered_pairs, order,
// radius_mean, radius_min, radius_max.
constexpr std::size_t kObservableCount = 11;
std::vector<std::string> observable_names();
// The values in that order; the array form allocates nothing (ensemble statistics read it for
// thousands of systems at every observation).
std::array<double, kObservableCount> observable_array(const Observables& o);
std::vector<double> observable_values(const Observables& o);

}  // namespace attnflow
