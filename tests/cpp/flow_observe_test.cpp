// Observables against dense double sums written from docs/math.md section 5 (energy, cosines,
// order parameter), a breadth-first search for the clusters, closed forms at beta = 1000,
// the pair-pass limit and option messages.
#include "attnflow/flow/observe.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "attnflow/measure/sample.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::random_weights;
using test::throws_with;

// Kernel (max-shifted, tiled) vs a plain dense double sum.
constexpr double kObserveTol = 1e-12;

// Points in three tight groups of sizes 5, 3, 1 plus jitter of size `jitter`.
Matrix three_groups(Rng& rng, double jitter) {
  const Matrix centers = sample_sphere(3, 3, rng);
  const int sizes[3] = {5, 3, 1};
  Matrix x(9, 3);
  Index row = 0;
  for (int c = 0; c < 3; ++c)
    for (int k = 0; k < sizes[c]; ++k) {
      Vector p = centers.row(c).transpose();
      for (Index t = 0; t < 3; ++t) p[t] += jitter * rng.normal();
      x.row(row++) = p.normalized().transpose();
    }
  return x;
}

TEST(FlowObserve, MatchesDenseSums) {
  Rng rng(61);
  const Index n = 40, d = 3;
  const Matrix x = sample_sphere(n, d, rng);
  const Vector w = random_weights(n, rng);
  ObserveOptions o;
  o.beta = 3.0;
  o.delta = 0.05;
  const Observables ob = observe(x, w, o, 1.5);
  double e = 0.0, cos_num = 0.0, cos_den = 0.0, min_cos = 2.0;
  long linked = 0;
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < n; ++j) {
      const double c = x.row(i).dot(x.row(j));
      e += w[i] * w[j] * std::exp(o.beta * c);
      if (i == j) continue;
      cos_num += w[i] * w[j] * c;
      cos_den += w[i] * w[j];
      min_cos = std::min(min_cos, c);
      if (j > i && c > 1 - o.delta) ++linked;
    }
  e /= 2 * o.beta;
  EXPECT_EQ(ob.t, 1.5);
  EXPECT_NEAR(ob.energy, e, kObserveTol * e);
  EXPECT_NEAR(ob.log_energy, std::log(e), kObserveTol);
  EXPECT_NEAR(ob.mean_cosine, cos_num / cos_den, kObserveTol);
  EXPECT_NEAR(ob.min_cosine, min_cos, 1e-15);
  EXPECT_NEAR(ob.clustered_pairs, linked / (0.5 * n * (n - 1)), 1e-15);
  EXPECT_NEAR(ob.order, (w.transpose() * x).norm(), 1e-15);
  // Components by breadth-first search on the same graph.
  std::vector<int> label(n, -1);
  std::vector<Index> sizes;
  for (Index s = 0; s < n; ++s) {
    if (label[s] >= 0) continue;
    std::vector<Index> queue{s};
    label[s] = static_cast<int>(sizes.size());
    for (size_t q = 0; q < queue.size(); ++q)
      for (Index j = 0; j < n; ++j)
        if (label[j] < 0 && x.row(queue[q]).dot(x.row(j)) > 1 - o.delta) {
          label[j] = label[s];
          queue.push_back(j);
        }
    sizes.push_back(static_cast<Index>(queue.size()));
  }
  std::sort(sizes.begin(), sizes.end(), std::greater<Index>());
  EXPECT_EQ(ob.clusters, static_cast<Index>(sizes.size()));
  EXPECT_EQ(ob.cluster_sizes, sizes);
  EXPECT_GT(ob.clusters, 1);
  EXPECT_LT(ob.clusters, n);
}

TEST(FlowObserve, ClustersOfAKnownConfigurationOnSphereAndInRd) {
  Rng rng(62);
  const Matrix x = three_groups(rng, 1e-4);
  ObserveOptions o;
  o.delta = 1e-3;
  const Observables ob = observe(x, Vector(), o);
  EXPECT_EQ(ob.clusters, 3);
  EXPECT_EQ(ob.cluster_sizes, (std::vector<Index>{5, 3, 1}));
  EXPECT_NEAR(ob.clustered_pairs, (10.0 + 3.0) / 36.0, 1e-15);
  o.sphere = false;  // |x - y|^2 < 2 delta: the same relation for unit vectors
  const Observables rd = observe(1000.0 * x, Vector(), o);
  EXPECT_EQ(rd.clusters, 5 + 3 + 1);  // scaled by 1000, the jitter exceeds sqrt(2 delta)
  EXPECT_EQ(observe(x, Vector(), o).cluster_sizes, (std::vector<Index>{5, 3, 1}));
}

TEST(FlowObserve, LargeBetaEnergyIsFiniteInLogForm) {
  // All points equal: E = e^beta / (2 beta), log E = beta - log(2 beta), finite at beta = 1000.
  Matrix x = Matrix::Zero(5, 3);
  x.col(1).setOnes();
  ObserveOptions o;
  o.beta = 1000.0;
  const Observables ob = observe(x, Vector(), o);
  EXPECT_NEAR(ob.log_energy, 1000.0 - std::log(2000.0), 1e-12);
  EXPECT_TRUE(std::isinf(ob.energy));
  EXPECT_EQ(ob.clusters, 1);
  EXPECT_EQ(ob.mean_cosine, 1.0);
  EXPECT_NEAR(ob.order, 1.0, 1e-15);
  // Two antipodal halves: E = (1/2)(e^beta + e^-beta) / (2 beta) -> log E = beta - log(4 beta).
  Matrix y(4, 3);
  y << 0, 1, 0, 0, 1, 0, 0, -1, 0, 0, -1, 0;
  const Observables ab = observe(y, Vector(), o);
  EXPECT_NEAR(ab.log_energy, 1000.0 - std::log(4000.0), 1e-12);
  EXPECT_EQ(ab.clusters, 2);
  EXPECT_NEAR(ab.order, 0.0, 1e-15);
  EXPECT_NEAR(ab.min_cosine, -1.0, 1e-15);
  EXPECT_NEAR(ab.mean_cosine, -1.0 / 3.0, 1e-15);  // pairs: 2 at +1, 4 at -1 (ordered: 4, 8)
}

TEST(FlowObserve, PairLimitSkipsThePairPassAndSingleTokenIsOneCluster) {
  Rng rng(63);
  const Matrix x = sample_sphere(50, 3, rng);
  ObserveOptions o;
  o.pair_limit = 10;
  const Observables ob = observe(x, Vector(), o);
  EXPECT_FALSE(ob.pairs_computed);
  EXPECT_EQ(ob.clusters, -1);
  EXPECT_TRUE(ob.cluster_sizes.empty());
  const Observables one = observe(x.topRows(1), Vector(), ObserveOptions{});
  EXPECT_EQ(one.clusters, 1);
  EXPECT_EQ(one.mean_cosine, 1.0);
  EXPECT_EQ(observable_names().size(), observable_values(one).size());
}

TEST(FlowObserve, OnTheSphereDirectionsAreObservedAndRadiiReportedApart) {
  // Tokens r_i theta_i (pre-LN grows r to ~t) must give the thetas'
  // clusters, cosines, energy and order parameter, and the radii separately.
  Rng rng(64);
  const Matrix theta = three_groups(rng, 1e-3);
  Vector r(theta.rows());
  for (Index i = 0; i < r.size(); ++i) r[i] = 1.0 + 20.0 * rng.uniform();
  const Matrix x = r.asDiagonal() * theta;
  const Vector w = random_weights(theta.rows(), rng);
  ObserveOptions o;
  o.beta = 9.0;
  o.delta = 0.01;
  const Observables a = observe(x, w, o, 12.0), b = observe(theta, w, o, 12.0);
  EXPECT_EQ(a.clusters, 3);
  EXPECT_EQ(a.cluster_sizes, b.cluster_sizes);
  EXPECT_EQ(a.clustered_pairs, b.clustered_pairs);
  EXPECT_NEAR(a.log_energy, b.log_energy, 1e-12);
  EXPECT_TRUE(std::isfinite(a.energy));  // e^{9 r^2} on r theta would overflow: r up to 21
  EXPECT_NEAR(a.energy, b.energy, 1e-12 * b.energy);
  EXPECT_NEAR(a.order, (w.transpose() * theta).norm(), 1e-14);
  EXPECT_NEAR(a.min_cosine, b.min_cosine, 1e-14);
  EXPECT_NEAR(a.mean_cosine, b.mean_cosine, 1e-14);
  EXPECT_NEAR(a.radius_mean, w.dot(r) / w.sum(), 1e-13);
  EXPECT_EQ(a.radius_min, x.rowwise().norm().minCoeff());
  EXPECT_EQ(a.radius_max, x.rowwise().norm().maxCoeff());
  EXPECT_NEAR(b.radius_min, 1.0, 1e-15);
  EXPECT_NEAR(b.radius_max, 1.0, 1e-15);
  const auto names = observable_names();
  const auto values = observable_values(a);
  ASSERT_EQ(names.size(), values.size());
  EXPECT_EQ(names[names.size() - 3], "radius_mean");
  EXPECT_EQ(values[values.size() - 1], a.radius_max);
  // A zero row has no direction: refused on the sphere, fine in R^d.
  Matrix z = theta;
  z.row(4).setZero();
  EXPECT_TRUE(throws_with([&] { observe(z, Vector(), o); }, "observe: |x_4| = 0, must be > 0 on the sphere"));
  o.sphere = false;
  EXPECT_EQ(observe(z, Vector(), o).radius_min, 0.0);
}

TEST(FlowObserve, BadOptionsNameTheField) {
  const Matrix x = Matrix::Identity(3, 3);
  ObserveOptions o;
  o.delta = 2.0;
  EXPECT_TRUE(throws_with([&] { observe(x, Vector(), o); }, "observe: delta = 2, must be in (0, 2)"));
  o.delta = 0.0;
  EXPECT_TRUE(throws_with([&] { observe(x, Vector(), o); }, "observe: delta = 0, must be in (0, 2)"));
  o = ObserveOptions{};
  o.beta = -1;
  EXPECT_TRUE(throws_with([&] { observe(x, Vector(), o); }, "observe: beta = -1, must be > 0"));
  Matrix bad = x;
  bad(1, 2) = std::nan("");
  EXPECT_TRUE(throws_with([&] { observe(bad, Vector(), ObserveOptions{}); }, "observe: points"));
  EXPECT_TRUE(throws_with([&] { observe(x, Vector::Ones(2), ObserveOptions{}); },
                          "observe: weights size = 2"));
}

}  // namespace
}  // namespace attnflow
