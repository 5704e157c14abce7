// Cluster theory on the circle (docs/math.md section 6, inferred; docs/theory.md): Bessel ratios,
// the Fourier-mode growth rates k^2 I_k(beta) / beta (USA; / I_0 for SA) against the linear
// growth measured in a particle simulation on S^1, the predicted cluster count against a direct
// simulation from near-uniform data, and energies of cluster configurations.
#include "attnflow/theory/cluster_theory.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <numbers>

#include "attnflow/flow/integrate.hpp"
#include "attnflow/base/parallel.hpp"
#include "test_util.hpp"
#include "theory_particles.hpp"

namespace attnflow {
namespace {

using std::numbers::pi;

TEST(TheoryClusters, BesselRatioMatchesStd) {
  // std::cyl_bessel_i is an independent implementation; both are accurate to ~1e-15 relative,
  // the ratio of two such values to a few ulps more.
  constexpr double kBesselRtol = 1e-13;
  for (double beta : {0.05, 1.0, 7.5, 40.0, 300.0})
    for (int k : {0, 1, 2, 5, 12, 30}) {
      const double ref = std::cyl_bessel_i(static_cast<double>(k), beta) / std::cyl_bessel_i(0.0, beta);
      EXPECT_NEAR(bessel_ratio(k, beta), ref, kBesselRtol * ref + 1e-300) << "k=" << k << " beta=" << beta;
    }
  // Far beyond std's range (I_0(1e4) overflows): the large-beta asymptotic
  // I_k / I_0 = 1 - k^2 / (2 beta) + O(beta^-2).
  EXPECT_NEAR(bessel_ratio(3, 1e4), 1.0 - 9.0 / 2e4, 1e-7);
}

TEST(TheoryClusters, GrowthRatesAreBesselFormulas) {
  for (double beta : {0.5, 3.0, 20.0})
    for (int k : {1, 2, 4, 9}) {
      const double usa = k * k * std::cyl_bessel_i(static_cast<double>(k), beta) / beta;
      EXPECT_NEAR(mode_growth_rate(TheoryModel::usa, k, beta), usa, 1e-13 * usa);
      EXPECT_NEAR(mode_growth_rate(TheoryModel::sa, k, beta), usa / std::cyl_bessel_i(0.0, beta),
                  1e-13 * usa);
    }
}

// Particles on S^1 (rows (cos, sin)) at angles 2 pi i / n + displacement[i].
Matrix circle_points(const Vector& angles) {
  Matrix x(angles.size(), 2);
  for (Index i = 0; i < angles.size(); ++i) x.row(i) << std::cos(angles[i]), std::sin(angles[i]);
  return x;
}

std::complex<double> fourier_mode(const Matrix& x, int k) {  // (1/n) sum_i e^{i k theta_i}
  std::complex<double> c = 0.0;
  for (Index i = 0; i < x.rows(); ++i) c += std::polar(1.0, k * std::atan2(x(i, 1), x(i, 0)));
  return c / static_cast<double>(x.rows());
}

// SA/USA on S^1 written from docs/math.md section 5 (field through the kernel, sphere retraction).
Ode circle_ode(TheoryModel model, double beta) {
  return Ode{[model, beta](double, const Matrix& x, Matrix& dx) {
               const Matrix a = test::attention_average(x, beta, model);
               for (Index i = 0; i < x.rows(); ++i) dx.row(i) = a.row(i) - a.row(i).dot(x.row(i)) * x.row(i);
             },
             [](Matrix& x) { x.rowwise().normalize(); }};
}

TEST(TheoryClusters, LinearGrowthMatchesParticleSimulation) {
  // A displacement eps sin(k theta) of equally spaced particles is an exact eigenvector of the
  // discrete linearization (circulant); its eigenvalue equals lambda_k up to aliasing terms
  // I_{n-k}(beta) ~ 1e-60 here. The first nonlinear feedback into mode k is cubic, O(A^2) with
  // the amplitude A < 1e-4, and RK4 at lambda dt = 0.005 adds ~1e-11: 1e-6 is generous.
  constexpr double kGrowthRtol = 1e-6;
  // Modes with lambda_k >= lambda_max / 5 only: over t_end = 3 / lambda_k round-off seeded in
  // the fastest mode grows by at most e^15 (to ~1e-9) and stays linear.
  set_num_threads(1);  // 64 particles: thread start-up would dominate on a loaded machine
  const Index n = 64;
  for (TheoryModel model : {TheoryModel::sa, TheoryModel::usa})
    for (double beta : {1.0, 4.0})
      for (int k : {1, 2, 3, 5}) {
        if (beta == 1.0 && k == 5) continue;  // lambda_5 = lambda_max / 12 at beta = 1
        const double lambda = mode_growth_rate(model, k, beta);
        Vector angles(n);
        for (Index i = 0; i < n; ++i) {
          const double t0 = 2.0 * pi * static_cast<double>(i) / static_cast<double>(n);
          angles[i] = t0 + 1e-6 * std::sin(k * t0);
        }
        Matrix x = circle_points(angles);
        const double c0 = std::abs(fourier_mode(x, k));
        IntegratorOptions io;
        io.method = Method::rk4;
        io.dt = 0.005 / lambda;
        IntegratorState st;
        const double t_end = 3.0 / lambda;
        advance(circle_ode(model, beta), x, st, t_end, io);
        const double measured = std::log(std::abs(fourier_mode(x, k)) / c0) / t_end;
        EXPECT_NEAR(measured, lambda, kGrowthRtol * lambda)
            << to_string(model) << " beta=" << beta << " k=" << k;
      }
}

TEST(TheoryClusters, PredictedArgmaxIsBruteForceArgmax) {
  for (double beta : {0.3, 1.0, 1.5, 4.0, 8.0, 30.0, 200.0}) {
    int best = 0;
    double best_val = -1.0;
    for (int k = 1; k <= 80; ++k) {
      const double v = k * k * std::cyl_bessel_i(static_cast<double>(k), beta);
      if (v > best_val) best_val = v, best = k;
    }
    const ClusterPrediction p = predict_clusters(beta);
    EXPECT_EQ(p.predicted_clusters, best) << "beta=" << beta;
    EXPECT_GE(static_cast<int>(p.rates.size()), best + 2);
  }
  // Large beta: k* -> sqrt(2 beta) (I_k / I_0 ~ exp(-k^2 / (2 beta))).
  EXPECT_NEAR(predict_clusters(5000.0).predicted_clusters, std::sqrt(1e4), 1.0);
}

// Number of clusters on the circle: groups of consecutive sorted angles separated by gaps.
int count_clusters(const Matrix& x, double gap) {
  std::vector<double> a;
  for (Index i = 0; i < x.rows(); ++i) a.push_back(std::atan2(x(i, 1), x(i, 0)));
  std::sort(a.begin(), a.end());
  int count = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double next = i + 1 < a.size() ? a[i + 1] : a[0] + 2.0 * pi;
    if (next - a[i] > gap) ++count;
  }
  return std::max(count, 1);
}

TEST(TheoryClusters, PredictedCountMatchesDirectSimulation) {
  // Near-uniform start: equally spaced + eps sum_{k=1..8} sin(k theta + phi_k), equal amplitude
  // in every mode (seeded phases), so the fastest-growing mode wins; SA on S^1, n = 96.
  set_num_threads(1);  // see above
  const Index n = 96;
  for (double beta : {2.0, 4.0, 8.0}) {
    const ClusterPrediction p = predict_clusters(beta);
    Rng rng(7, static_cast<std::uint64_t>(beta));
    std::vector<double> phase(8);
    for (double& ph : phase) ph = 2.0 * pi * rng.uniform();
    Vector angles(n);
    for (Index i = 0; i < n; ++i) {
      const double t0 = 2.0 * pi * static_cast<double>(i) / static_cast<double>(n);
      double disp = 0.0;
      for (int k = 1; k <= 8; ++k) disp += std::sin(k * t0 + phase[k - 1]);
      angles[i] = t0 + 1e-9 * disp;
    }
    Matrix x = circle_points(angles);
    IntegratorOptions io;
    io.method = Method::rk4;
    io.dt = 0.05;
    IntegratorState st;
    // Until the fastest mode has grown by e^25 (from 1e-9 to saturation) and the clusters
    // have contracted, well before they merge (metastable).
    const double t_end = 30.0 / p.rates[static_cast<size_t>(p.predicted_clusters - 1)];
    advance(circle_ode(TheoryModel::sa, beta), x, st, t_end, io);
    EXPECT_EQ(count_clusters(x, 0.5 * pi / p.predicted_clusters), p.predicted_clusters)
        << "beta=" << beta;
  }
}

TEST(TheoryClusters, ConfigurationEnergiesMatchClosedForms) {
  constexpr double kEnergyRtol = 1e-13;  // k <= 12 exponentials summed in two orders
  for (double beta : {0.5, 3.0, 25.0})
    for (Index k : {1, 2, 3, 5, 12}) {
      double circle = 0.0;
      for (Index m = 0; m < k; ++m) circle += std::exp(beta * std::cos(2.0 * pi * m / k));
      circle /= 2.0 * beta * static_cast<double>(k);
      const Measure c = cluster_configuration(k, 3, ClusterLayout::circle);
      EXPECT_NEAR(interaction_energy(c, beta), circle, kEnergyRtol * circle);
      if (k <= 4) {
        const double off = k > 1 ? (k - 1) * std::exp(-beta / static_cast<double>(k - 1)) : 0.0;
        const double simplex = (std::exp(beta) + off) / (2.0 * beta * static_cast<double>(k));
        const Measure s = cluster_configuration(k, 3, ClusterLayout::simplex);
        EXPECT_NEAR(interaction_energy(s, beta), simplex, kEnergyRtol * simplex);
        EXPECT_NEAR((s.points() * s.points().transpose()).diagonal().minCoeff(), 1.0, 1e-15);
      }
    }
  // Token duplication: splitting each cluster into unequal atoms changes nothing.
  const Measure c3 = cluster_configuration(3, 2, ClusterLayout::circle);
  Matrix dup(6, 2);
  dup << c3.points(), c3.points();
  Vector w(6);
  w << 0.1, 0.2, 0.3, 1.0 / 3 - 0.1, 1.0 / 3 - 0.2, 1.0 / 3 - 0.3;
  EXPECT_NEAR(interaction_energy(Measure(dup, w), 2.0), interaction_energy(c3, 2.0), 1e-15);
  // beta = 1000: finite in the log domain, = beta - log(2 beta) - log k + O(e^{-beta/2}) (k = 2).
  const Measure two = cluster_configuration(2, 2, ClusterLayout::circle);
  EXPECT_NEAR(log_interaction_energy(two, 1000.0), 1000.0 - std::log(2000.0) - std::log(2.0), 1e-12);
}

TEST(TheoryClusters, RejectsBadInput) {
  EXPECT_TRUE(test::throws_with([] { predict_clusters(-1.0); }, "theory clusters: beta = -1, must be > 0"));
  EXPECT_TRUE(test::throws_with([] { cluster_configuration(5, 2, ClusterLayout::simplex); },
                                "d = 2, must be >= k - 1 = 4"));
  EXPECT_TRUE(test::throws_with([] { mode_growth_rate(TheoryModel::usa, 2, 800.0); },
                                "beta = 800, must be <= 700 for usa"));
}

}  // namespace
}  // namespace attnflow

namespace attnflow {
namespace {

// The clusters report is the prediction, the rates and the energies above, mode by mode; the
// USA rate is listed up to kUsaBetaMax (where I_0(beta) ~ e^beta is still a double) and not past.
TEST(TheoryClusters, ReportListsPredictionRatesAndEnergies) {
  const double beta = 8.0;
  const ClustersReport r = clusters_report(beta);
  const ClusterPrediction p = predict_clusters(beta);
  EXPECT_EQ(r.status, "finished");
  EXPECT_EQ(r.d, 2);
  EXPECT_EQ(r.predicted_clusters, p.predicted_clusters);
  EXPECT_EQ(r.sqrt_2beta, 4.0);
  ASSERT_EQ(r.modes.size(), p.rates.size());
  for (size_t i = 0; i < r.modes.size(); ++i) {
    const ClusterMode& m = r.modes[i];
    const int k = static_cast<int>(i) + 1;
    EXPECT_EQ(m.k, k);
    EXPECT_EQ(m.growth_rate_sa, p.rates[i]);
    ASSERT_TRUE(m.has_growth_rate_usa);
    const double usa = k * k * std::cyl_bessel_i(static_cast<double>(k), beta) / beta;
    EXPECT_NEAR(m.growth_rate_usa, usa, 1e-12 * usa);
    EXPECT_EQ(m.log_energy_k_clusters,
              log_interaction_energy(cluster_configuration(k, 2, ClusterLayout::circle), beta));
  }
  EXPECT_TRUE(std::isfinite(std::cyl_bessel_i(0.0, kUsaBetaMax)));
  EXPECT_TRUE(clusters_report(kUsaBetaMax, 3).modes[2].has_growth_rate_usa);
  EXPECT_TRUE(std::isfinite(clusters_report(kUsaBetaMax, 3).modes[2].growth_rate_usa));
  const ClustersReport hot = clusters_report(kUsaBetaMax + 1.0, 3);
  for (const ClusterMode& m : hot.modes) EXPECT_FALSE(m.has_growth_rate_usa);
}

}  // namespace
}  // namespace attnflow
