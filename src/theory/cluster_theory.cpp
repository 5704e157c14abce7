// Fourier-mode growth around the uniform measure on the circle, the predicted cluster count,
// and energies of cluster configurations (see include/attnflow/theory/cluster_theory.hpp and
// docs/theory.md for the derivation).
#include "attnflow/theory/cluster_theory.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "attnflow/base/error.hpp"
#include "attnflow/flow/observe.hpp"

namespace attnflow {

namespace {
constexpr const char* kClusterTheoryCtx = "theory clusters";

void check_beta(double beta) {
  require(std::isfinite(beta) && beta > 0.0, kClusterTheoryCtx, "beta", beta, "> 0 and finite");
}
}  // namespace

double bessel_ratio(int k, double beta) {
  require(k >= 0, kClusterTheoryCtx, "k", k, ">= 0");
  check_beta(beta);
  if (k == 0) return 1.0;
  // r_j = I_j / I_{j-1} = 1 / (2 j / beta + r_{j+1}); started at r_K = 0 far enough out that
  // the start error has decayed below double precision (the tail converges like a continued
  // fraction whose length needed grows like sqrt(beta)).
  const int start = k + 60 + static_cast<int>(20.0 * std::sqrt(beta));
  double r = 0.0, ratio = 1.0;
  std::vector<double> rs(static_cast<size_t>(k) + 1, 0.0);
  for (int j = start; j >= 1; --j) {
    r = 1.0 / (2.0 * j / beta + r);
    if (j <= k) rs[static_cast<size_t>(j)] = r;
  }
  for (int j = 1; j <= k; ++j) ratio *= rs[static_cast<size_t>(j)];
  return ratio;
}

double mode_growth_rate(TheoryModel model, int k, double beta) {
  require(k >= 1, kClusterTheoryCtx, "k", k, ">= 1");
  check_beta(beta);
  const double kk = static_cast<double>(k);
  const double sa_rate = kk * kk * bessel_ratio(k, beta) / beta;
  if (model == TheoryModel::sa) return sa_rate;
  require(beta <= kUsaBetaMax, kClusterTheoryCtx, "beta", beta,
          fmt::format("<= {} for usa (I_0(beta) ~ e^beta overflows double)", kUsaBetaMax));
  return sa_rate * std::cyl_bessel_i(0.0, beta);
}

ClusterPrediction predict_clusters(double beta, int k_max) {
  check_beta(beta);
  require(k_max >= 0, kClusterTheoryCtx, "k_max", k_max, ">= 0");
  if (k_max == 0) k_max = 8 + static_cast<int>(std::ceil(4.0 * std::sqrt(2.0 * beta)));
  ClusterPrediction p;
  p.beta = beta;
  double best = -1.0;
  for (int k = 1; k <= k_max; ++k) {
    const double rate = mode_growth_rate(TheoryModel::sa, k, beta);
    p.rates.push_back(rate);
    if (rate > best) {
      best = rate;
      p.predicted_clusters = k;
    }
  }
  return p;
}

ClusterLayout parse_cluster_layout(std::string_view name, std::string_view context) {
  if (name == "circle") return ClusterLayout::circle;
  if (name == "simplex") return ClusterLayout::simplex;
  throw_invalid(context, "layout", std::string(name), "one of circle, simplex");
}

std::string to_string(ClusterLayout l) { return l == ClusterLayout::circle ? "circle" : "simplex"; }

Measure cluster_configuration(Index k, Index d, ClusterLayout layout) {
  require(k >= 1, kClusterTheoryCtx, "k", k, ">= 1");
  Matrix x = Matrix::Zero(k, d);
  if (layout == ClusterLayout::circle) {
    require(d >= 2, kClusterTheoryCtx, "d", d, ">= 2 for the circle layout");
    for (Index a = 0; a < k; ++a) {
      const double angle = 2.0 * std::numbers::pi * static_cast<double>(a) / static_cast<double>(k);
      x(a, 0) = std::cos(angle);
      x(a, 1) = std::sin(angle);
    }
  } else {
    require(d >= std::max<Index>(k - 1, 1), kClusterTheoryCtx, "d", d,
            fmt::format(">= k - 1 = {} for the simplex layout", k - 1));
    if (k == 1) x(0, 0) = 1.0;
    // Vertex a = coordinates of e_a - 1/k in the Helmert basis h_m (m = 1..k-1) of the
    // hyperplane sum = 0: h_m = (1, ..., 1, -m, 0, ...) / sqrt(m (m + 1)), m ones.
    const double scale = k > 1 ? 1.0 / std::sqrt(1.0 - 1.0 / static_cast<double>(k)) : 1.0;
    for (Index m = 1; m < k; ++m) {
      const double norm = std::sqrt(static_cast<double>(m * (m + 1)));
      for (Index a = 0; a < m; ++a) x(a, m - 1) = scale / norm;
      x(m, m - 1) = -scale * static_cast<double>(m) / norm;
    }
  }
  return Measure(std::move(x), fmt::format("{} clusters ({})", k, to_string(layout)));
}

double log_interaction_energy(const Measure& mu, double beta) {
  check_beta(beta);
  return log_energy(mu.points(), mu.weights(), beta);  // observe.hpp: the one log-energy
}

double interaction_energy(const Measure& mu, double beta) {
  return std::exp(log_interaction_energy(mu, beta));
}

ClustersReport clusters_report(double beta, int k_max) {
  const ClusterPrediction p = predict_clusters(beta, k_max);
  ClustersReport r;
  r.beta = beta;
  r.predicted_clusters = p.predicted_clusters;
  r.sqrt_2beta = std::sqrt(2.0 * beta);
  for (size_t i = 0; i < p.rates.size(); ++i) {
    ClusterMode m;
    m.k = static_cast<int>(i) + 1;
    m.growth_rate_sa = p.rates[i];
    m.log_energy_k_clusters =
        log_interaction_energy(cluster_configuration(m.k, 2, ClusterLayout::circle), beta);
    m.has_growth_rate_usa = beta <= kUsaBetaMax;
    if (m.has_growth_rate_usa) m.growth_rate_usa = mode_growth_rate(TheoryModel::usa, m.k, beta);
    r.modes.push_back(m);
  }
  return r;
}

}  // namespace attnflow
