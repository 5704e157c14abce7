// The batched ensemble in float32 (Ensemble::precision): the state is float (every entry a
// float value), it follows the float64 path to float accuracy, it is bit-identical on 1, 2 and
// 3 threads and in any block, a saved state continues bit for bit, an observation's pair
// kernel serves the next step bit for bit, and what float32 cannot run is refused by name.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "attnflow/flow/ensemble.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/measure/sample.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {
namespace float32_test {

using test::bit_equal;

struct Systems {
  std::vector<FlowOptions> flows;
  std::vector<Matrix> x0;
};
// 21 systems (not a multiple of 16: the last block is padded), betas 0.5 .. 8.5.
Systems systems(FieldKind kind, Index count, Index n, Index d) {
  Systems s;
  for (Index k = 0; k < count; ++k) {
    Rng rng(5, static_cast<std::uint64_t>(k));
    FlowOptions o;
    o.kind = kind;
    o.beta = 0.5 + 8.0 * static_cast<double>(k) / static_cast<double>(count - 1);
    if (kind == FieldKind::usa) o.usa_log_shift = o.beta;
    if (k == 3) {  // non-uniform weights, one zero
      o.weights = Vector::Ones(n);
      o.weights[0] = 0.0;
      o.weights[1] = 3.0;
    }
    s.flows.push_back(o);
    s.x0.push_back(sample_sphere(n, d, rng));
  }
  return s;
}

Ensemble make(const Systems& s, Method m, Precision p) {
  Ensemble e(s.flows, s.x0, IntegratorOptions{.method = m, .dt = 0.1});
  e.batched = true;
  e.precision = p;
  return e;
}

bool all_float(const Matrix& x) {
  for (Index i = 0; i < x.size(); ++i)
    if (static_cast<double>(static_cast<float>(x.data()[i])) != x.data()[i]) return false;
  return true;
}

// float32 against float64 from the same points: SA and USA, euler, residual and rk4, d < n
// (the points) and d > n (coordinates in the span), times on and off the grid. Float rounds
// each step's update at 6e-8 relative; over 15 steps of a contracting flow the states agree
// to 3e-7 (measured), checked at 2e-6. The observables to the same accuracy.
TEST(FlowFloat32, FollowsFloat64ToFloatAccuracy) {
  ObserveOptions oo;
  oo.delta = 1e-2;
  for (const FieldKind kind : {FieldKind::sa, FieldKind::usa})
    for (const Index d : {5, 20})
      for (const Method m : {Method::euler, Method::residual, Method::rk4}) {
        const Systems s = systems(kind, 21, 8, d);
        Ensemble a = make(s, m, Precision::float32), b = make(s, m, Precision::float64);
        ASSERT_EQ(a.precision_refusal(), "");
        for (const double t : {0.35, 1.5}) {
          a.advance(t);
          b.advance(t);
        }
        const std::vector<Observables> oa = a.observe(oo), ob = b.observe(oo);
        double worst = 0.0;
        for (Index k = 0; k < a.size(); ++k) {
          const std::string what = to_string(kind) + " d " + std::to_string(d) + " " + to_string(m) + " system " +
                                   std::to_string(k);
          const Matrix sa = a.saved_state(k);
          EXPECT_TRUE(all_float(sa.leftCols(d > 8 ? 8 : d))) << what;  // the state (points or coordinates)
          const double err = (a.state(k) - b.state(k)).cwiseAbs().maxCoeff();
          worst = std::max(worst, err);
          EXPECT_LT(err, 2e-6) << what;
          EXPECT_EQ(a.flow_state(k).integrator.steps, b.flow_state(k).integrator.steps) << what;
          const Observables &x = oa[static_cast<std::size_t>(k)], &y = ob[static_cast<std::size_t>(k)];
          EXPECT_NEAR(x.log_energy, y.log_energy, 2e-6 * std::max(1.0, std::abs(y.log_energy))) << what;
          EXPECT_NEAR(x.min_cosine, y.min_cosine, 2e-6) << what;
          EXPECT_NEAR(x.order, y.order, 2e-6) << what;
          EXPECT_NEAR(x.mean_cosine, y.mean_cosine, 2e-6) << what;
          EXPECT_EQ(x.t, 1.5);
        }
        EXPECT_GT(worst, 0.0) << "float32 computes in float";
        EXPECT_GT((b.state(0) - s.x0[0]).norm(), 1e-3);  // it moved
      }
}

TEST(FlowFloat32, BitIdenticalOnOneTwoThreeThreadsAndInAnyBlock) {
  ObserveOptions oo;
  oo.delta = 0.05;
  for (const Index d : {4, 14}) {  // 14 > n = 10: coordinates in the span
    const Systems s = systems(FieldKind::sa, 37, 10, d);
    std::vector<Ensemble> runs;
    std::vector<std::vector<Observables>> obs;
    for (const int threads : {1, 2, 3}) {
      set_num_threads(threads);
      Ensemble e = make(s, Method::residual, Precision::float32);
      for (const double t : {0.5, 1.0, 2.0}) obs.push_back(e.advance_observe(t, oo));
      runs.push_back(std::move(e));
    }
    set_num_threads(0);
    for (std::size_t r = 1; r < runs.size(); ++r)
      for (Index k = 0; k < runs[0].size(); ++k) {
        EXPECT_TRUE(bit_equal(runs[r].state(k), runs[0].state(k))) << "threads " << r + 1 << " system " << k;
        for (std::size_t o = 0; o < 3; ++o)
          EXPECT_EQ(observable_values(obs[3 * r + o][k]), observable_values(obs[o][k]));
      }
    // System 33 alone (lane 0 of its own block) against its lane 1 of the fourth block.
    Systems one;
    one.flows = {s.flows[33]};
    one.x0 = {s.x0[33]};
    Ensemble alone = make(one, Method::residual, Precision::float32);
    alone.advance(2.0);
    EXPECT_TRUE(bit_equal(alone.state(0), runs[0].state(33))) << "d " << d;
  }
}

// A checkpoint's resume: saved_state() then restore_state() continues bit for bit (the points,
// and on the reduced path coordinates and basis), as does an observation's kept pair kernel.
TEST(FlowFloat32, SavedStateAndKeptKernelContinueBitForBit) {
  ObserveOptions oo;
  oo.delta = 1e-2;
  for (const Index d : {5, 20}) {
    const Systems s = systems(FieldKind::usa, 21, 8, d);
    for (const Method m : {Method::residual, Method::rk4}) {
      Ensemble a = make(s, m, Precision::float32), b = make(s, m, Precision::float32),
               c = make(s, m, Precision::float32);
      a.advance(1.0);
      b.advance(0.3);  // b holds other states before they are replaced
      for (Index k = 0; k < a.size(); ++k) b.restore_state(k, a.saved_state(k), a.flow_state(k));
      c.advance(1.0);
      for (const double t : {1.2, 1.45, 2.0}) {  // 1.45: off the grid (a shortened step)
        a.advance(t);
        (void)b.advance_observe(t, oo);  // observed: its kept kernel serves the next step
        (void)c.observe(oo);             // observed (kernel kept), then advanced
        c.advance(t);
      }
      for (Index k = 0; k < a.size(); ++k) {
        EXPECT_TRUE(bit_equal(a.saved_state(k), b.saved_state(k))) << "d " << d << " system " << k;
        EXPECT_TRUE(bit_equal(a.state(k), c.state(k))) << "d " << d << " system " << k;
      }
    }
  }
}

TEST(FlowFloat32, RefusesWhatItCannotRunByName) {
  const auto refused = [](Ensemble e, const std::string& rule) {
    for (const bool step : {true, false}) {  // advance() and observe() alike
      try {
        if (step)
          e.advance(0.5);
        else
          (void)e.observe(ObserveOptions());
        ADD_FAILURE() << "no error for " << rule;
      } catch (const std::invalid_argument& err) {
        const std::string msg = err.what();
        EXPECT_NE(msg.find("precision = float32 needs"), std::string::npos) << msg;
        EXPECT_NE(msg.find(rule), std::string::npos) << msg;
      }
    }
  };
  const Systems sa = systems(FieldKind::sa, 5, 6, 3);
  refused(make(systems(FieldKind::sinkhorn, 5, 6, 3), Method::residual, Precision::float32), "Sinkhorn");
  Ensemble unbatched = make(sa, Method::residual, Precision::float32);
  unbatched.batched = false;
  refused(std::move(unbatched), "batched");
  refused(make(sa, Method::dopri5, Precision::float32), "euler, residual or rk4");
  Systems pre = sa;
  for (FlowOptions& o : pre.flows) o.scheme.scheme = Scheme::pre_ln;
  refused(make(pre, Method::residual, Precision::float32), "scheme none");
  Systems hot = sa;
  hot.flows[2].beta = 1e31;
  refused(make(hot, Method::residual, Precision::float32), "beta <= 1e+30");
  Ensemble ok = make(sa, Method::residual, Precision::float32);
  EXPECT_NO_THROW(ok.advance(0.5));
}

}  // namespace float32_test
}  // namespace
}  // namespace attnflow
