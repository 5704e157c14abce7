// Observables against dense double sums written from SPEC.md section 5 (energy, cosines,
// order parameter), a breadth-first search for the clusters, closed forms at beta = 1000,
// the pair-pass limit and option messages.
#include "attnflow/observe.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "attnflow/sample.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::random_weights;
using test::throws_with;

// Kernel (max-shifted, tiled) vs a plain dense double sum.
constexpr double kTol = 1e-12;

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
  EXPECT_NEAR(ob.energy, e, kTol * e);
  EXPECT_NEAR(ob.log_energy, std::log(e), kTol);
  EXPECT_NEAR(ob.mean_cosine, cos_num / cos_den, kTol);
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
