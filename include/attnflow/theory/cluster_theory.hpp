// Cluster theory on the circle (docs/math.md section 6, "inferred"; derivation in docs/theory.md):
// linearizing the SA/USA mean-field equation around the uniform measure on S^1, the Fourier
// mode e^{i k theta} grows at rate  lambda_k = k^2 I_k(beta) / beta  (USA), divided by
// I_0(beta) for SA; the fastest mode k* = argmax_k k^2 I_k(beta) predicts how many clusters
// emerge from near-uniform data (k* ~ sqrt(2 beta) for large beta). Also the interaction
// energy E_beta = (1/(2 beta)) sum_ij w_i w_j e^{beta <x_i, x_j>} of k-cluster configurations.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "attnflow/theory/equiangular.hpp"
#include "attnflow/measure/measure.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

// I_k(beta) / I_0(beta), k >= 0, beta > 0, by backward recurrence on the continued fraction
// of I_k / I_{k-1} (overflow-free: beta = 1e4 is fine where I_k itself is inf).
double bessel_ratio(int k, double beta);

// The largest beta at which the USA growth rate is representable. The USA rate is the SA rate
// times I_0(beta) ~ e^beta / sqrt(2 pi beta), and e^beta overflows double past
// beta = log(DBL_MAX) ~ 709.78; 700 keeps a round margin below it (I_0(700) ~ 1.5e302).
// mode_growth_rate refuses usa above it and clusters_report leaves growth_rate_usa out; the SA
// rates go through the overflow-free ratio I_k / I_0 and have no such limit. (The equiangular
// solver caps its USA time scale e^beta at the same beta.)
inline constexpr double kUsaBetaMax = 700.0;

// Linear growth rate of Fourier mode k >= 1 around the uniform measure (formula above);
// model usa requires beta <= kUsaBetaMax.
double mode_growth_rate(TheoryModel model, int k, double beta);

struct ClusterPrediction {
  double beta = 0;
  int predicted_clusters = 0;  // k*
  std::vector<double> rates;   // rates[k - 1] = lambda_k, k = 1..k_max (SA normalization)
};
// Scans k = 1..k_max (k_max = 0: automatic, well past sqrt(2 beta)) for the fastest mode.
// The argmax is the same for SA and USA (their rates differ by the factor I_0(beta)).
ClusterPrediction predict_clusters(double beta, int k_max = 0);

// k equal-weight clusters:
//   circle : k points equally spaced on a great circle (d >= 2); k = 2 is antipodal
//   simplex: the k vertices of a regular simplex, pairwise cosine -1/(k-1) (k <= d + 1)
enum class ClusterLayout { circle, simplex };
ClusterLayout parse_cluster_layout(std::string_view name, std::string_view context = "theory");
std::string to_string(ClusterLayout l);
Measure cluster_configuration(Index k, Index d, ClusterLayout layout);

// log E_beta(mu): observe.hpp's log_energy (one symmetric kernel pass; log so that beta = 1000
// is finite), log E = -log(2 beta) + log sum_i w_i exp(lse_i), lse_i = log sum_j w_j e^{beta <x_i, x_j>}.
double log_interaction_energy(const Measure& mu, double beta);
double interaction_energy(const Measure& mu, double beta);  // exp of the above (may be inf)

// The clusters report (`attnflow theory clusters`, attnflow.clusters_report): the prediction
// on the circle (d = 2) with, per mode k = 1..k_max, its growth rates and the log-energy of k
// equally spaced clusters. Its JSON form is clusters_report_json in run/reports.hpp.
struct ClusterMode {
  int k = 0;
  double growth_rate_sa = 0.0;
  double log_energy_k_clusters = 0.0;  // log_interaction_energy of cluster_configuration(k, 2, circle)
  bool has_growth_rate_usa = false;    // beta <= kUsaBetaMax
  double growth_rate_usa = 0.0;
};
struct ClustersReport {
  std::string status = "finished";
  int d = 2;
  double beta = 0.0;
  int predicted_clusters = 0;  // k*
  double sqrt_2beta = 0.0;     // the large-beta asymptote of k*
  std::vector<ClusterMode> modes;
};
ClustersReport clusters_report(double beta, int k_max = 0);

}  // namespace attnflow
