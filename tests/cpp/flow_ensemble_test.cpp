// Ensembles: each system equals the same Flow run alone, bit for bit, on 1 or 2 threads;
// statistics (mean, NumPy-"linear" quantiles) against hand-computed values; messages.
#include "attnflow/flow/ensemble.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "attnflow/base/parallel.hpp"
#include "attnflow/measure/sample.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::bit_equal;

using test::throws_with;

struct MixedSystems {
  std::vector<FlowOptions> flows;
  std::vector<Matrix> x0;
};

// Six systems differing in seed, beta, kind, size and noise.
MixedSystems mixed_systems() {
  MixedSystems s;
  const FieldKind kinds[6] = {FieldKind::sa, FieldKind::usa, FieldKind::sa,
                              FieldKind::sinkhorn, FieldKind::meanshift, FieldKind::sa};
  for (int k = 0; k < 6; ++k) {
    Rng rng(100, static_cast<std::uint64_t>(k));
    FlowOptions o;
    o.kind = kinds[k];
    o.beta = 1.0 + k;
    o.sinkhorn.iterations = 3;
    if (k == 5) {
      o.kappa = 10.0;
      o.noise_seed = 9;
      o.noise_stream = 5;
    }
    s.flows.push_back(o);
    s.x0.push_back(sample_sphere(20 + 5 * k, 3, rng));
  }
  return s;
}

TEST(FlowEnsemble, SystemsEqualSingleRunsOnOneOrTwoThreads) {
  const MixedSystems s = mixed_systems();
  IntegratorOptions io;
  io.method = Method::euler;
  io.dt = 0.05;
  std::vector<Matrix> alone;
  for (size_t k = 0; k < s.flows.size(); ++k) {
    const Flow f(s.flows[k], s.x0[k].rows(), 3);
    Matrix x = f.initial_state(s.x0[k]);
    FlowState st = f.initial_flow_state();
    f.advance(x, st, 1.0, io);
    alone.push_back(x);
  }
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    Ensemble e(s.flows, s.x0, io);
    e.advance(0.5);
    e.advance(1.0);
    const std::vector<Observables> obs = e.observe(ObserveOptions{});
    set_num_threads(0);
    for (Index k = 0; k < e.size(); ++k) {
      EXPECT_TRUE(bit_equal(e.state(k), alone[static_cast<size_t>(k)])) << "system " << k << " threads " << threads;
      EXPECT_EQ(obs[static_cast<size_t>(k)].t, 1.0);
      ObserveOptions own;
      own.beta = s.flows[static_cast<size_t>(k)].beta;
      EXPECT_EQ(obs[static_cast<size_t>(k)].log_energy, log_energy(e.positions(k), e.flow(k).options().weights, own.beta));
    }
  }
}

TEST(FlowEnsemble, SummaryMeanAndQuantilesMatchHandValues) {
  // NumPy: np.quantile([1, 2, 3, 4], [0.1, 0.5, 0.9]) = [1.3, 2.5, 3.7].
  EXPECT_NEAR(quantile({4, 1, 3, 2}, 0.1), 1.3, 1e-15);
  EXPECT_NEAR(quantile({4, 1, 3, 2}, 0.5), 2.5, 1e-15);
  EXPECT_NEAR(quantile({4, 1, 3, 2}, 0.9), 3.7, 1e-15);
  EXPECT_EQ(quantile({4, 1, 3, 2}, 1.0), 4.0);
  EXPECT_EQ(quantile({7}, 0.3), 7.0);
  std::vector<Observables> obs(4);
  for (int k = 0; k < 4; ++k) {
    obs[k].log_energy = k + 1.0;
    obs[k].energy = k == 3 ? INFINITY : std::exp(k + 1.0);
    obs[k].pairs_computed = k != 0;
    obs[k].clusters = k;
    obs[k].cluster_sizes = {k + 1};
  }
  const EnsembleStats st = summarize(obs, {0.1, 0.5, 0.9});
  ASSERT_EQ(st.stats.size(), observable_names().size());
  const ObservableStats& le = st.stats[0];
  EXPECT_EQ(le.name, "log_energy");
  EXPECT_EQ(le.count, 4);
  EXPECT_NEAR(le.mean, 2.5, 1e-15);
  EXPECT_NEAR(le.quantiles[0], 1.3, 1e-15);
  const ObservableStats& en = st.stats[1];
  EXPECT_EQ(en.count, 3);  // the +inf energy is left out
  EXPECT_NEAR(en.mean, (std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) / 3, 1e-12);
  const ObservableStats& cl = st.stats[4];
  EXPECT_EQ(cl.name, "clusters");
  EXPECT_EQ(cl.count, 3);  // system 0 skipped its pair pass
  EXPECT_NEAR(cl.mean, 2.0, 1e-15);
  EXPECT_NEAR(cl.quantiles[1], 2.0, 1e-15);
}

TEST(FlowEnsemble, BadInputNamesTheField) {
  IntegratorOptions io;
  EXPECT_TRUE(throws_with([&] { Ensemble({}, {}, io); }, "ensemble: systems = 0, must be >= 1"));
  EXPECT_TRUE(throws_with([&] { Ensemble({FlowOptions{}}, {}, io); },
                          "ensemble: systems = 1, must be equal to the number of initial point sets (0)"));
  io.dt = -0.1;
  EXPECT_TRUE(throws_with([&] { Ensemble({FlowOptions{}}, {Matrix::Identity(3, 3)}, io); },
                          "integrate: dt = -0.1, must be > 0"));
  Ensemble e({FlowOptions{}}, {Matrix::Identity(3, 3)}, IntegratorOptions{});
  EXPECT_TRUE(throws_with([&] { e.set_state(0, Matrix::Identity(2, 3), FlowState{}); },
                          "ensemble: state of system 0 has shape (2, 3), must be (3, 3)"));
  EXPECT_TRUE(throws_with([] { summarize({}, {1.5}); }, "ensemble: probs = 1.5, must be in [0, 1]"));
}

}  // namespace
}  // namespace attnflow
