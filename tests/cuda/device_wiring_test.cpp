// The process-wide device (set_device, kernel_cuda.hpp) followed end to end on a GPU:
// attention (softmax, none, sinkhorn), entropic OT (Sinkhorn), a flow and ensembles (per
// system through the GPU reduction; batched SA / USA systems on the GPU path of batch_cuda.hpp;
// batched Sinkhorn systems on the CPU, device_fallback() saying so)
// against the same calls on the CPU, within the documented tolerances (docs/usage/gpu.md):
// float64 relative 1e-12 on one reduction, 1e-9 after a fixed number of Sinkhorn iterations
// or a flow's steps (1e-5 where a solve to tolerance stops one iteration apart), float32 1e-4. GPU runs repeat bit for bit. Needs a CUDA device: built where CMake finds a
// CUDA compiler (cmake/cuda.cmake), run by scripts/gpu-check.sh.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <algorithm>
#include <functional>
#include <iostream>
#include <optional>
#include <utility>
#include <vector>

#include "attnflow/attention/attention.hpp"
#include "attnflow/flow/ensemble.hpp"
#include "attnflow/flow/flow.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"
#include "attnflow/measure/sample.hpp"
#include "attnflow/ot/ot.hpp"

namespace attnflow {
namespace {

double rel_diff(const Matrix& a, const Matrix& b) {
  return (a - b).cwiseAbs().maxCoeff() / std::max(1e-300, b.cwiseAbs().maxCoeff());
}
double rel_diff(const Vector& a, const Vector& b) {
  return (a - b).cwiseAbs().maxCoeff() / std::max(1e-300, b.cwiseAbs().maxCoeff());
}
bool bit_equal(const Matrix& a, const Matrix& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(double) * a.size()) == 0;
}

std::vector<Matrix> states_of(const Ensemble& e) {
  std::vector<Matrix> out;
  for (Index k = 0; k < e.size(); ++k) out.push_back(e.state(k));
  return out;
}

// An ensemble on the batched path, steps of 0.1 with method m.
Ensemble batched_ensemble(const std::vector<FlowOptions>& flows, const std::vector<Matrix>& x0, Method m) {
  IntegratorOptions io;
  io.method = m;
  io.dt = 0.1;
  Ensemble e(flows, x0, io);
  e.batched = true;
  return e;
}

template <typename T>
struct Both {
  T cpu, gpu, again;  // on the CPU, on the GPU, on the GPU again
};

// Runs f on the CPU and twice on the GPU (float64 unless told), restoring the CPU afterwards.
template <typename F>
auto on_both(F f, Precision precision = Precision::float64) {
  using T = decltype(f());
  set_device(Device::cpu);
  T cpu = f();
  set_device(Device::cuda, precision);
  T gpu = f();
  T again = f();
  set_device(Device::cpu);
  return Both<T>{std::move(cpu), std::move(gpu), std::move(again)};
}

class DeviceWiring : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cuda_available()) << "needs a CUDA device: " << cuda_device_description();
  }
  void TearDown() override { set_device(Device::cpu); }
};

Measure cloud(Index n, Index d, std::uint64_t stream) {
  Rng rng(21, stream);
  return Measure(sample_sphere(n, d, rng));
}

TEST_F(DeviceWiring, AttentionFollowsTheDevice) {
  const Measure x = cloud(700, 3, 1), y = cloud(900, 3, 2);
  for (Normalization norm : {Normalization::softmax, Normalization::none}) {
    AttentionOptions o;
    o.beta = 4.0;
    o.normalization = norm;
    const auto r = on_both([&] { return attention(x, y, std::nullopt, o); });
    EXPECT_EQ(r.cpu.device, "cpu");
    EXPECT_EQ(r.gpu.device, "cuda");
    EXPECT_LE(rel_diff(r.gpu.out, r.cpu.out), 1e-12);
    EXPECT_LE(rel_diff(r.gpu.lse[0], r.cpu.lse[0]), 1e-12);
    EXPECT_TRUE(bit_equal(r.gpu.out, r.again.out));
  }
  AttentionOptions o;
  o.beta = 4.0;
  o.normalization = Normalization::sinkhorn;
  o.sinkhorn.iterations = 30;  // the same iterations on both devices
  const auto r = on_both([&] { return attention(x, y, std::nullopt, o); });
  EXPECT_EQ(r.gpu.device, "cuda");
  EXPECT_LE(rel_diff(r.gpu.out, r.cpu.out), 1e-9);
  EXPECT_TRUE(bit_equal(r.gpu.out, r.again.out));
  AttentionOptions s;
  s.beta = 4.0;
  const auto f = on_both([&] { return attention(x, y, std::nullopt, s); }, Precision::float32);
  const double err = rel_diff(f.gpu.out, f.cpu.out);
  std::cout << "attention float32 relative error " << err << "\n";
  EXPECT_LE(err, 1e-4);
}

TEST_F(DeviceWiring, SinkhornFollowsTheDevice) {
  const Measure x = cloud(1500, 3, 3), y = cloud(1200, 3, 4);
  SinkhornOptions o;
  o.eps = 0.05;
  const auto r = on_both([&] { return sinkhorn(x, y, o); });
  EXPECT_TRUE(r.gpu.converged) << r.gpu.message;
  // To tolerance: the stopping test may fall one iteration apart (rounding near tol); then the
  // two solutions agree to the tolerance's order only.
  EXPECT_LE(std::abs(r.gpu.iterations - r.cpu.iterations), 1);
  const double tol = r.gpu.iterations == r.cpu.iterations ? 1e-9 : 1e-5;
  EXPECT_NEAR(r.gpu.cost, r.cpu.cost, tol * std::abs(r.cpu.cost));
  EXPECT_LE(rel_diff(r.gpu.f, r.cpu.f), tol);
  std::cout << "sinkhorn iterations cpu " << r.cpu.iterations << " gpu " << r.gpu.iterations
            << ", potential relative difference " << rel_diff(r.gpu.f, r.cpu.f) << "\n";
  EXPECT_EQ(0, std::memcmp(r.gpu.f.data(), r.again.f.data(), sizeof(double) * r.gpu.f.size()));
}

TEST_F(DeviceWiring, FlowFollowsTheDevice) {
  for (FieldKind kind : {FieldKind::sa, FieldKind::usa}) {
    FlowOptions o;
    o.kind = kind;
    o.beta = 3.0;
    const Flow flow(o, 400, 3);
    const Measure x0 = cloud(400, 3, 5);
    IntegratorOptions io;
    io.method = Method::rk4;
    io.dt = 0.05;
    const auto r = on_both([&] {
      Matrix x = flow.initial_state(x0.points());
      FlowState st = flow.initial_flow_state();
      flow.advance(x, st, 1.0, io);
      return x;
    });
    EXPECT_LE(rel_diff(r.gpu, r.cpu), 1e-9);
    EXPECT_TRUE(bit_equal(r.gpu, r.again));
  }
}

TEST_F(DeviceWiring, EnsemblesPerSystemAndBatchedOnTheGpu) {
  std::vector<FlowOptions> flows;
  std::vector<Matrix> x0;
  for (int k = 0; k < 8; ++k) {
    FlowOptions o;
    o.beta = 1.0 + k;
    flows.push_back(o);
    x0.push_back(cloud(64, 3, 10 + k).points());
  }
  IntegratorOptions io;
  io.method = Method::euler;
  io.dt = 0.1;
  for (bool batched : {false, true}) {
    const auto r = on_both([&] {
      Ensemble e(flows, x0, io);
      e.batched = batched;
      e.advance(1.0);
      return std::make_pair(states_of(e), e.runs_on_gpu());
    });
    EXPECT_FALSE(r.cpu.second);
    EXPECT_EQ(r.gpu.second, batched);  // the batched systems on the GPU path (batch_cuda.hpp)
    for (size_t k = 0; k < r.cpu.first.size(); ++k) {
      EXPECT_LE(rel_diff(r.gpu.first[k], r.cpu.first[k]), 1e-9) << "system " << k;
      EXPECT_TRUE(bit_equal(r.gpu.first[k], r.again.first[k])) << "system " << k;
    }
  }
}

// The batched ensemble's GPU path against its CPU path: SA and USA systems, every fixed-step
// method, d below, at and above the CPU lanes' coordinate block (and d > n, which the CPU
// reduces to the span), observed on the way as a run does (advance_observe), then states.
TEST_F(DeviceWiring, BatchedEnsembleOnTheGpuMatchesTheCpu) {
  struct Case {
    Index n, d;
    Method method;
  };
  for (const Case& c : {Case{32, 3, Method::residual}, Case{32, 32, Method::residual}, Case{16, 12, Method::rk4},
                        Case{12, 40, Method::euler}}) {
    SCOPED_TRACE(::testing::Message() << "n = " << c.n << ", d = " << c.d << ", " << to_string(c.method));
    std::vector<FlowOptions> flows;
    std::vector<Matrix> x0;
    for (int k = 0; k < 37; ++k) {  // not a multiple of the CPU's lane width
      FlowOptions o;
      o.kind = k % 3 == 2 ? FieldKind::usa : FieldKind::sa;
      o.beta = 0.5 + 0.25 * k;
      o.usa_log_shift = o.kind == FieldKind::usa ? o.beta : 0.0;
      flows.push_back(o);
      x0.push_back(cloud(c.n, c.d, 100 + k).points());
    }
    IntegratorOptions io;
    io.method = c.method;
    io.dt = 0.1;
    ObserveOptions oo;
    oo.delta = 0.05;
    using Run = std::pair<std::vector<Matrix>, std::vector<Observables>>;
    const auto r = on_both([&] {
      Ensemble e(flows, x0, io);
      e.batched = true;
      std::vector<Observables> obs;
      for (double t : {0.3, 1.0, 2.25}) {
        const std::vector<Observables> o = e.advance_observe(t, oo, false);
        obs.insert(obs.end(), o.begin(), o.end());
      }
      EXPECT_EQ(e.runs_on_gpu(), current_device().device == Device::cuda) << e.gpu_refusal();
      return Run{states_of(e), obs};
    });
    for (size_t k = 0; k < r.cpu.first.size(); ++k) {
      EXPECT_LE(rel_diff(r.gpu.first[k], r.cpu.first[k]), 1e-9) << "system " << k;
      EXPECT_TRUE(bit_equal(r.gpu.first[k], r.again.first[k])) << "system " << k;
    }
    ASSERT_EQ(r.gpu.second.size(), r.cpu.second.size());
    for (size_t k = 0; k < r.cpu.second.size(); ++k) {
      const Observables &g = r.gpu.second[k], &q = r.cpu.second[k], &a = r.again.second[k];
      EXPECT_EQ(g.t, q.t);
      EXPECT_NEAR(g.log_energy, q.log_energy, 1e-9 * (1.0 + std::abs(q.log_energy))) << k;
      EXPECT_NEAR(g.min_cosine, q.min_cosine, 1e-9) << k;
      EXPECT_NEAR(g.order, q.order, 1e-9) << k;
      EXPECT_NEAR(g.mean_cosine, q.mean_cosine, 1e-9) << k;
      // A pair within rounding of the threshold may count on one side only.
      EXPECT_NEAR(g.clustered_pairs, q.clustered_pairs, 1.0 / (0.5 * c.n * (c.n - 1)) + 1e-15) << k;
      EXPECT_EQ(g.clusters, -1);
      EXPECT_EQ(0, std::memcmp(&g.log_energy, &a.log_energy, sizeof(double)));
      EXPECT_EQ(g.clustered_pairs, a.clustered_pairs);
    }
  }
}

// advance_observe_each: the observations of many times in one launch, the same bits as one
// advance_observe per time on the GPU, for 1, 4 and the automatic number per launch.
TEST_F(DeviceWiring, ManyObservationsPerLaunchEqualOnePerTime) {
  std::vector<FlowOptions> flows;
  std::vector<Matrix> x0;
  for (int k = 0; k < 300; ++k) {
    FlowOptions o;
    o.beta = 0.1 * (k % 90 + 1);
    flows.push_back(o);
    x0.push_back(cloud(32, k % 2 ? 3 : 40, 500 + k).points());  // d = 40 > n: the span form
  }
  const std::vector<double> times{0.1, 0.2, 0.2, 0.5, 0.9, 1.0, 1.35, 2.0, 2.1, 3.0};
  ObserveOptions oo;
  oo.delta = 1e-3;
  for (const Index d : {Index{3}, Index{40}}) {
    std::vector<FlowOptions> f;
    std::vector<Matrix> x;
    for (size_t k = 0; k < flows.size(); ++k)
      if (x0[k].cols() == d) {
        f.push_back(flows[k]);
        x.push_back(x0[k]);
      }
    set_device(Device::cuda);
    Ensemble one = batched_ensemble(f, x, Method::residual);
    ASSERT_TRUE(one.runs_on_gpu()) << one.gpu_refusal();
    std::vector<std::vector<Observables>> expected;
    for (double t : times) expected.push_back(one.advance_observe(t, oo, false));
    for (const Index per_launch : {Index{0}, Index{1}, Index{4}}) {
      SCOPED_TRACE(::testing::Message() << "d = " << d << ", " << per_launch << " per launch");
      Ensemble e = batched_ensemble(f, x, Method::residual);
      e.gpu_launch_observations = per_launch;
      std::size_t next = 0;
      e.advance_observe_each(times, oo, false, [&](std::size_t k, const std::vector<Observables>& o) {
        ASSERT_EQ(k, next++);
        for (size_t s = 0; s < o.size(); ++s) {
          EXPECT_EQ(0, std::memcmp(&o[s].log_energy, &expected[k][s].log_energy, sizeof(double))) << s;
          EXPECT_EQ(0, std::memcmp(&o[s].min_cosine, &expected[k][s].min_cosine, sizeof(double))) << s;
          EXPECT_EQ(0, std::memcmp(&o[s].mean_cosine, &expected[k][s].mean_cosine, sizeof(double))) << s;
          EXPECT_EQ(o[s].clustered_pairs, expected[k][s].clustered_pairs) << s;
          EXPECT_EQ(o[s].t, expected[k][s].t) << s;
        }
      });
      EXPECT_EQ(next, times.size());
      const std::vector<Matrix> a = states_of(e), b = states_of(one);
      for (size_t s = 0; s < a.size(); ++s) EXPECT_TRUE(bit_equal(a[s], b[s])) << s;
    }
  }
}

// A small batched ensemble on the GPU path (rk4, USA and SA, zero weight), small enough for
// compute-sanitizer's memcheck and racecheck in scripts/gpu-check.sh.
TEST_F(DeviceWiring, BatchedEnsembleSmallForSanitizers) {
  std::vector<FlowOptions> flows(3);
  std::vector<Matrix> x0;
  for (int k = 0; k < 3; ++k) {
    flows[k].beta = 1.5 + k;
    flows[k].kind = k == 1 ? FieldKind::usa : FieldKind::sa;
    flows[k].usa_log_shift = k == 1 ? flows[k].beta : 0.0;
    x0.push_back(cloud(5, 3, 300 + k).points());
  }
  flows[2].weights = Vector::Ones(5);
  flows[2].weights[3] = 0.0;
  const auto r = on_both([&] {
    Ensemble e = batched_ensemble(flows, x0, Method::rk4);
    double last = 0.0;  // two observations in one launch (advance_observe_each)
    e.advance_observe_each({0.1, 0.2}, ObserveOptions{}, false,
                           [&](std::size_t, const std::vector<Observables>& o) { last = o[2].log_energy; });
    return std::make_pair(states_of(e), last);
  });
  for (size_t k = 0; k < r.cpu.first.size(); ++k) EXPECT_LE(rel_diff(r.gpu.first[k], r.cpu.first[k]), 1e-9) << k;
  EXPECT_NEAR(r.gpu.second, r.cpu.second, 1e-9 * (1.0 + std::abs(r.cpu.second)));
}

// Cluster counts come from the states on the CPU; Sinkhorn systems stay on the CPU's batched
// path (the summary's device_fallback says so), with the CPU's bits.
TEST_F(DeviceWiring, BatchedEnsembleClustersAndSinkhornFallBack) {
  std::vector<FlowOptions> flows(9);
  std::vector<Matrix> x0;
  for (int k = 0; k < 9; ++k) {
    flows[k].beta = 2.0 + k;
    x0.push_back(cloud(20, 3, 200 + k).points());
  }
  const auto r = on_both([&] {
    Ensemble e = batched_ensemble(flows, x0, Method::residual);
    return e.advance_observe(3.0, ObserveOptions{}, true);
  });
  for (size_t k = 0; k < r.cpu.size(); ++k) EXPECT_EQ(r.gpu[k].cluster_sizes, r.cpu[k].cluster_sizes) << k;
  for (FlowOptions& o : flows) {
    o.kind = FieldKind::sinkhorn;
    o.sinkhorn.iterations = 5;
  }
  const auto s = on_both([&] {
    Ensemble e = batched_ensemble(flows, x0, Method::residual);
    e.advance(1.0);
    return std::make_pair(states_of(e), e.runs_on_gpu() ? std::string("gpu") : device_fallback(true));
  });
  EXPECT_FALSE(s.gpu.second.empty());
  EXPECT_NE(s.gpu.second, "gpu");
  for (size_t k = 0; k < s.cpu.first.size(); ++k) EXPECT_TRUE(bit_equal(s.gpu.first[k], s.cpu.first[k])) << k;
}

}  // namespace
}  // namespace attnflow
