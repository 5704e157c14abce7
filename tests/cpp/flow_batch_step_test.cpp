// The GPU path of the batched ensemble (src/cuda/batch_step.cuh, one system per thread block)
// run on the host: each phase's threads one after the other (HostBlock), in several orders
// and partitions, against the CPU ensemble (Ensemble, batched and per system). This is the
// arithmetic the GPU runs; tests/cuda/device_wiring_test.cpp checks the GPU itself.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "../../src/cuda/batch_step.cuh"
#include "attnflow/base/parallel.hpp"
#include "attnflow/flow/ensemble.hpp"
#include "attnflow/flow/flow.hpp"
#include "attnflow/kernel/batch_cuda.hpp"
#include "attnflow/kernel/batch_kernel.hpp"
#include "attnflow/measure/measure.hpp"
#include "attnflow/measure/sample.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

namespace bs = batch_step;

using HostBlock = bs::HostBlock;  // a phase's threads one after the other, either order

struct Emulated {
  Matrix x;
  double obs[5] = {};
  int status = 0, failed = -1;
};

// One system through the block algorithm: the steps h, then the pair observables.
Emulated emulate(const FlowOptions& o, const Matrix& x0, const std::vector<double>& h, bs::Method m, HostBlock b,
                 double obs_beta, double delta) {
  const int n = static_cast<int>(x0.rows()), d = static_cast<int>(x0.cols());
  const Vector lw = log_weights(o.weights);
  bs::System sys;
  sys.n = n;
  sys.d = d;
  sys.beta = o.beta;
  sys.usa = o.kind == FieldKind::usa;
  sys.usa_shift = o.usa_log_shift;
  sys.log_w = lw.data();
  sys.w = o.weights.data();
  std::vector<double> smem(bs::shared_doubles(n, d, m), std::nan(""));  // uninitialized: NaN
  int flag = 0;
  const bs::Shared sh = bs::carve(smem.data(), &flag, n, d, m);
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < d; ++k) sh.x[i * bs::stride(d) + k] = x0(i, k);
  Emulated e;
  e.status = bs::advance(b, sys, sh, h.data(), static_cast<int>(h.size()), m, &e.failed);
  e.x.resize(n, d);
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < d; ++k) e.x(i, k) = sh.x[i * bs::stride(d) + k];
  bs::observe(b, sys, sh, obs_beta, log_two_beta(obs_beta), delta, e.obs);
  return e;
}

double rel(const Matrix& a, const Matrix& b) { return (a - b).cwiseAbs().maxCoeff() / b.cwiseAbs().maxCoeff(); }

struct Case {
  Index n, d;
  Method method;
};

// An SA or a USA system at beta (USA shifted by beta, so that e^{lse} stays representable).
FlowOptions sa_or_usa(bool usa, double beta) {
  FlowOptions o;
  o.kind = usa ? FieldKind::usa : FieldKind::sa;
  o.beta = beta;
  o.usa_log_shift = usa ? beta : 0.0;
  return o;
}

// Weights rising linearly from 1 to 2, normalized (mean_cosine then depends on |w|^2).
Vector uneven_weights(Index n) {
  const Vector w = Vector::LinSpaced(n, 1.0, 2.0);
  return w / w.sum();
}

bs::Method to_step(Method m) {
  return m == Method::euler ? bs::Method::euler : m == Method::residual ? bs::Method::residual : bs::Method::rk4;
}

// SA and USA systems with several betas and uneven weights (one of them 0), integrated to
// t = 1.2 in steps of 0.1 (and a last shortened step), then observed.
TEST(FlowBatchStep, HostEmulationOfTheGpuBlockMatchesTheCpuEnsemble) {
  for (const Case& c : {Case{7, 3, Method::euler}, Case{7, 3, Method::residual}, Case{7, 3, Method::rk4},
                        Case{9, 12, Method::rk4}, Case{6, 10, Method::residual}, Case{32, 32, Method::residual}}) {
    SCOPED_TRACE(::testing::Message() << "n = " << c.n << ", d = " << c.d << ", method " << to_string(c.method));
    std::vector<FlowOptions> flows;
    std::vector<Matrix> x0;
    for (int s = 0; s < 5; ++s) {
      FlowOptions o = sa_or_usa(s % 2 == 1, 0.5 + 1.5 * s);
      Vector w = Vector::Ones(c.n);
      for (Index i = 0; i < c.n; ++i) w[i] += 0.3 * static_cast<double>(i % 3);
      if (s == 3) w[1] = 0.0;
      o.weights = w / w.sum();
      flows.push_back(o);
      Rng rng(7, static_cast<std::uint64_t>(s));
      x0.push_back(sample_sphere(c.n, c.d, rng));
    }
    IntegratorOptions io;
    io.method = c.method;
    io.dt = 0.1;
    ObserveOptions oo;
    oo.delta = 0.05;
    Ensemble cpu(flows, x0, io);
    cpu.batched = true;
    ASSERT_TRUE(cpu.batchable());
    cpu.advance(1.25);
    const std::vector<Observables> ob = cpu.observe(oo, false);
    std::vector<double> h(12, 0.1);
    h.push_back(1.25 - (0.0 + 12 * 0.1));  // the schedule of advance(): 12 grid steps, then 0.05
    for (Index s = 0; s < cpu.size(); ++s) {
      const FlowOptions& fo = cpu.flow(s).options();
      const Emulated e = emulate(fo, x0[s], h, to_step(c.method), HostBlock{64, false}, fo.beta, oo.delta);
      EXPECT_EQ(e.status, 0);
      EXPECT_LE(rel(e.x, cpu.state(s)), 1e-12) << "system " << s;
      const double pairs = 0.5 * static_cast<double>(c.n) * static_cast<double>(c.n - 1);
      EXPECT_NEAR(e.obs[0], ob[s].log_energy, 1e-12 * (1.0 + std::abs(ob[s].log_energy)));
      EXPECT_NEAR(e.obs[1], ob[s].min_cosine, 1e-12);
      EXPECT_EQ(e.obs[2] / pairs, ob[s].clustered_pairs);
      EXPECT_NEAR(e.obs[3], ob[s].order, 1e-12);
      const double w2 = fo.weights.squaredNorm();
      EXPECT_NEAR((e.obs[4] - w2) / (1.0 - w2), ob[s].mean_cosine, 1e-12);
      // The energy at another beta than the system's (observe's other form): against the CPU's
      // log_energy; the pair values do not depend on beta.
      const double other = 1.7 * fo.beta + 0.1;
      const Emulated g = emulate(fo, x0[s], h, to_step(c.method), HostBlock{64, false}, other, oo.delta);
      const double ref = log_energy(cpu.state(s), fo.weights, other);
      EXPECT_NEAR(g.obs[0], ref, 1e-12 * (1.0 + std::abs(ref)));
      EXPECT_EQ(0, std::memcmp(g.obs + 1, e.obs + 1, 4 * sizeof(double)));
      // Any partition of the block's work and any order of its threads: the same bits.
      for (const HostBlock b : {HostBlock{1, false}, HostBlock{7, true}, HostBlock{128, true}}) {
        for (const double bt : {fo.beta, other}) {
          const Emulated f = emulate(fo, x0[s], h, to_step(c.method), b, bt, oo.delta);
          EXPECT_TRUE(test::bit_equal(f.x, e.x));
          EXPECT_EQ(0, std::memcmp(f.obs, bt == fo.beta ? e.obs : g.obs, sizeof e.obs));
        }
      }
    }
  }
}

// Status: a USA scale beyond e^709.78 is reported (the CPU path throws there), and a state
// that stops being finite is reported with the step after which it happened.
TEST(FlowBatchStep, HostEmulationReportsOverflowAndNonFiniteStates) {
  FlowOptions o;
  o.kind = FieldKind::usa;
  o.beta = 800.0;  // lse about beta on the sphere: e^{800} overflows without a shift
  o.weights = Vector::Constant(4, 0.25);
  Rng rng(3, 0);
  const Matrix x0 = sample_sphere(4, 3, rng);
  const Emulated e = emulate(o, x0, {0.1, 0.1}, bs::Method::euler, HostBlock{32, false}, o.beta, 1e-3);
  EXPECT_TRUE(e.status & bs::kUsaOverflow);
  EXPECT_EQ(e.failed, 0);
  FlowOptions sa;
  sa.beta = 1.0;
  sa.weights = Vector::Constant(4, 0.25);
  Matrix bad = x0;
  bad(2, 1) = std::nan("");
  const Emulated f = emulate(sa, bad, {0.1, 0.1, 0.1}, bs::Method::residual, HostBlock{32, false}, 1.0, 1e-3);
  EXPECT_TRUE(f.status & bs::kNonFinite);
  EXPECT_EQ(f.failed, 0);
}

// The ensemble's GPU path with its blocks emulated on the host (Ensemble::gpu_emulation):
// advance_observe, states, a replaced state, cluster counts (from the downloaded states), a
// saved and restored ensemble (bit for bit the uninterrupted one), d > n (which the CPU
// reduces to the span) and a USA overflow, against the CPU's batched path.
TEST(FlowBatchStep, EnsembleGpuPathInEmulationKeepsTheCpuResultsAndBookkeeping) {
  for (const Index d : {Index{3}, Index{14}}) {
    SCOPED_TRACE(::testing::Message() << "d = " << d);
    const Index n = 10;
    std::vector<FlowOptions> flows;
    std::vector<Matrix> x0;
    for (int s = 0; s < 11; ++s) {
      flows.push_back(sa_or_usa(s % 4 == 1, 1.0 + 0.7 * s));
      if (s % 3 == 2) flows.back().weights = uneven_weights(n);
      Rng rng(11, static_cast<std::uint64_t>(s));
      x0.push_back(sample_sphere(n, d, rng));
    }
    IntegratorOptions io;
    io.method = Method::rk4;
    io.dt = 0.1;
    ObserveOptions oo;
    oo.delta = 0.02;
    Ensemble cpu(flows, x0, io), emu(flows, x0, io);
    cpu.batched = emu.batched = true;
    emu.gpu_emulation = true;
    EXPECT_FALSE(cpu.runs_on_gpu());
    EXPECT_TRUE(emu.runs_on_gpu()) << emu.gpu_refusal();
    for (double t : {0.3, 1.05}) {
      const auto a = cpu.advance_observe(t, oo, false), b = emu.advance_observe(t, oo, false);
      for (Index s = 0; s < cpu.size(); ++s) {
        EXPECT_EQ(b[s].t, a[s].t);
        EXPECT_NEAR(b[s].log_energy, a[s].log_energy, 1e-12 * (1.0 + std::abs(a[s].log_energy)));
        EXPECT_NEAR(b[s].energy, a[s].energy, 1e-12 * a[s].energy);
        EXPECT_NEAR(b[s].mean_cosine, a[s].mean_cosine, 1e-12);
        EXPECT_NEAR(b[s].min_cosine, a[s].min_cosine, 1e-12);
        EXPECT_EQ(b[s].clustered_pairs, a[s].clustered_pairs);
        EXPECT_NEAR(b[s].order, a[s].order, 1e-12);
        EXPECT_EQ(b[s].clusters, -1);
      }
    }
    for (Index s = 0; s < cpu.size(); ++s) {
      EXPECT_LE(rel(emu.state(s), cpu.state(s)), 1e-12);
      EXPECT_TRUE(test::bit_equal(emu.positions(s), emu.state(s)));
      // Saved: the points, or where d > n the coordinates and basis [C | B] of the span (as the
      // CPU path saves them), C B being the points.
      const Matrix saved = emu.saved_state(s);
      if (d > n) {
        ASSERT_EQ(saved.cols(), n + d);
        EXPECT_LE(rel(saved.leftCols(n) * saved.rightCols(d), emu.state(s)), 1e-14);
      } else {
        EXPECT_TRUE(test::bit_equal(saved, emu.state(s)));
      }
      EXPECT_EQ(emu.flow_state(s).integrator.steps, cpu.flow_state(s).integrator.steps);
    }
    // A replaced state: the GPU copy is dropped and uploaded again at the next advance.
    Rng rng(99, 0);
    const Matrix fresh = sample_sphere(n, d, rng);
    cpu.set_state(4, fresh, cpu.flow_state(4));
    emu.set_state(4, fresh, emu.flow_state(4));
    cpu.advance(2.0);
    emu.advance(2.0);
    for (Index s = 0; s < cpu.size(); ++s) EXPECT_LE(rel(emu.state(s), cpu.state(s)), 1e-12) << "system " << s;
    // Cluster counts: from the states on the CPU.
    const auto ca = cpu.observe(oo, true), cb = emu.observe(oo, true);
    for (Index s = 0; s < cpu.size(); ++s) EXPECT_EQ(cb[s].cluster_sizes, ca[s].cluster_sizes);
    // A new ensemble on the emulated GPU path restored from src's saved states.
    const auto restored_from = [&](const Ensemble& src) {
      auto e = std::make_unique<Ensemble>(flows, x0, io);
      e->batched = true;
      e->gpu_emulation = true;
      for (Index s = 0; s < src.size(); ++s) e->restore_state(s, src.saved_state(s), src.flow_state(s));
      return e;
    };
    // Saved and restored into a new ensemble: it continues bit for bit.
    const auto resumed_owner = restored_from(emu);
    Ensemble& resumed = *resumed_owner;
    emu.advance(2.6);
    resumed.advance(2.6);
    for (Index s = 0; s < emu.size(); ++s) EXPECT_TRUE(test::bit_equal(resumed.state(s), emu.state(s)));
    // The CPU's saved state (coordinates and basis where it reduces the span) restores too.
    const auto from_cpu_owner = restored_from(cpu);
    Ensemble& from_cpu = *from_cpu_owner;
    cpu.advance(2.6);
    from_cpu.advance(2.6);
    for (Index s = 0; s < cpu.size(); ++s) EXPECT_LE(rel(from_cpu.state(s), cpu.state(s)), 1e-12);
  }
  // A USA scale beyond e^709.78 stops both paths with the same kind of error.
  FlowOptions o;
  o.kind = FieldKind::usa;
  o.beta = 800.0;
  Rng rng(5, 0);
  for (bool emulate : {false, true}) {
    Ensemble e({o, o}, {sample_sphere(6, 3, rng), sample_sphere(6, 3, rng)}, IntegratorOptions{});
    e.batched = true;
    e.gpu_emulation = emulate;
    try {
      e.advance(0.05);
      ADD_FAILURE() << "no overflow reported";
    } catch (const std::runtime_error& err) {
      EXPECT_NE(std::string(err.what()).find("usa field overflows"), std::string::npos) << err.what();
    }
  }
}

// An ensemble large enough that the GPU path forms its observables across threads: the same
// values on 1 and 2 threads, equal to the CPU ensemble's, and again equal at the next step
// (the observation betas, steps and buffers kept from call to call).
TEST(FlowBatchStep, LargeEnsembleObservablesOnTheGpuPathAcrossThreads) {
  const Index n = 3, d = 2, systems = 20000;  // above gpu_observables' threshold of 16384
  std::vector<FlowOptions> flows;
  std::vector<Matrix> x0;
  for (Index s = 0; s < systems; ++s) {
    flows.push_back(sa_or_usa(false, 0.5 + 0.001 * static_cast<double>(s % 997)));
    if (s % 5 == 0) flows.back().weights = uneven_weights(n);
    Rng rng(21, static_cast<std::uint64_t>(s));
    x0.push_back(sample_sphere(n, d, rng));
  }
  IntegratorOptions io;
  io.method = Method::residual;
  io.dt = 0.1;
  ObserveOptions oo;
  oo.delta = 0.05;
  Ensemble cpu(flows, x0, io);
  cpu.batched = true;
  std::vector<std::vector<Observables>> emu_obs;
  for (const int threads : {1, 2}) {
    set_num_threads(threads);
    Ensemble emu(flows, x0, io);
    emu.batched = true;
    emu.gpu_emulation = true;
    ASSERT_TRUE(emu.runs_on_gpu()) << emu.gpu_refusal();
    for (double t : {0.1, 0.2}) {
      const auto b = emu.advance_observe(t, oo, false);
      if (threads == 1) emu_obs.push_back(b);
      const auto& a = emu_obs[static_cast<std::size_t>(t > 0.15)];
      for (Index s = 0; s < systems; ++s) {
        const auto& x = b[static_cast<std::size_t>(s)];
        const auto& y = a[static_cast<std::size_t>(s)];
        ASSERT_EQ(std::memcmp(&x.log_energy, &y.log_energy, sizeof(double)), 0) << "system " << s;
        ASSERT_EQ(std::memcmp(&x.mean_cosine, &y.mean_cosine, sizeof(double)), 0) << "system " << s;
        ASSERT_EQ(x.clustered_pairs, y.clustered_pairs) << "system " << s;
        ASSERT_EQ(x.t, t);
      }
    }
  }
  set_num_threads(0);
  for (double t : {0.1, 0.2}) {
    const auto a = cpu.advance_observe(t, oo, false);
    const auto& b = emu_obs[static_cast<std::size_t>(t > 0.15)];
    for (Index s = 0; s < systems; s += 7) {
      const auto& x = b[static_cast<std::size_t>(s)];
      const auto& y = a[static_cast<std::size_t>(s)];
      ASSERT_NEAR(x.log_energy, y.log_energy, 1e-12 * (1.0 + std::abs(y.log_energy))) << "system " << s;
      ASSERT_NEAR(x.energy, y.energy, 1e-12 * y.energy) << "system " << s;
      ASSERT_NEAR(x.mean_cosine, y.mean_cosine, 1e-12) << "system " << s;
      ASSERT_NEAR(x.order, y.order, 1e-12) << "system " << s;
      ASSERT_EQ(x.clustered_pairs, y.clustered_pairs) << "system " << s;
    }
  }
}


using test::same_bits;

// Every value of two observations, bit for bit.
void expect_same_observations(const std::vector<Observables>& a, const std::vector<Observables>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t s = 0; s < a.size(); ++s) {
    EXPECT_TRUE(same_bits(a[s].t, b[s].t)) << "system " << s;
    EXPECT_TRUE(same_bits(a[s].log_energy, b[s].log_energy)) << "system " << s;
    EXPECT_TRUE(same_bits(a[s].energy, b[s].energy)) << "system " << s;
    EXPECT_TRUE(same_bits(a[s].mean_cosine, b[s].mean_cosine)) << "system " << s;
    EXPECT_TRUE(same_bits(a[s].min_cosine, b[s].min_cosine)) << "system " << s;
    EXPECT_TRUE(same_bits(a[s].order, b[s].order)) << "system " << s;
    EXPECT_EQ(a[s].clustered_pairs, b[s].clustered_pairs) << "system " << s;
    EXPECT_EQ(a[s].clusters, b[s].clusters) << "system " << s;
  }
}

// advance_observe_each on the GPU path takes the steps and observations of many times in one
// launch (BatchCuda::advance with obs_after): the same bits as one advance_observe per time,
// for any number of observations per launch (1, 3, the automatic one) and thread count, with
// repeated times, a time between grid points and d > n (the span form); equal to the CPU
// path's advance_observe_each to rounding. Bad times and a failure inside a launch are reported.
TEST(FlowBatchStep, ObservationsOfManyTimesInOneLaunchEqualOnePerTime) {
  const std::vector<double> times{0.1, 0.1, 0.25, 0.3, 0.7, 0.7, 1.0, 1.05};
  for (const Index d : {Index{3}, Index{14}}) {
    for (const Method method : {Method::residual, Method::rk4}) {
      SCOPED_TRACE(::testing::Message() << "d = " << d << ", method " << static_cast<int>(method));
      const Index n = 8;
      std::vector<FlowOptions> flows;
      std::vector<Matrix> x0;
      for (int s = 0; s < 9; ++s) {
        flows.push_back(sa_or_usa(s % 4 == 1, 0.8 + 0.9 * s));
        if (s % 3 == 0) flows.back().weights = uneven_weights(n);
        Rng rng(31, static_cast<std::uint64_t>(s));
        x0.push_back(sample_sphere(n, d, rng));
      }
      IntegratorOptions io;
      io.method = method;
      io.dt = 0.1;
      ObserveOptions oo;
      oo.delta = 0.03;
      const auto make = [&](bool emulate, Index per_launch) {
        auto e = std::make_unique<Ensemble>(flows, x0, io);
        e->batched = true;
        e->gpu_emulation = emulate;
        e->gpu_launch_observations = per_launch;
        return e;
      };
      auto one_owner = make(true, 0);
      Ensemble& one = *one_owner;
      std::vector<std::vector<Observables>> expected;
      for (double t : times) expected.push_back(one.advance_observe(t, oo, false));
      for (const int threads : {1, 2}) {
        set_num_threads(threads);
        for (const Index per_launch : {Index{0}, Index{1}, Index{3}}) {
          SCOPED_TRACE(::testing::Message() << threads << " threads, " << per_launch << " per launch");
          auto e = make(true, per_launch);
          ASSERT_TRUE(e->runs_on_gpu()) << e->gpu_refusal();
          std::size_t next = 0;
          e->advance_observe_each(times, oo, false, [&](std::size_t k, const std::vector<Observables>& o) {
            ASSERT_EQ(k, next++);
            expect_same_observations(o, expected[k]);
          });
          EXPECT_EQ(next, times.size());
          for (Index s = 0; s < e->size(); ++s) {
            EXPECT_TRUE(test::bit_equal(e->state(s), one.state(s))) << "system " << s;
            EXPECT_EQ(e->flow_state(s).integrator.steps, one.flow_state(s).integrator.steps);
            EXPECT_EQ(e->flow_state(s).integrator.t, one.flow_state(s).integrator.t);
          }
        }
      }
      set_num_threads(0);
      // The CPU path hands over the same observations, to rounding.
      auto cpu = make(false, 0);
      std::size_t seen = 0;
      cpu->advance_observe_each(times, oo, false, [&](std::size_t k, const std::vector<Observables>& o) {
        ++seen;
        for (Index s = 0; s < cpu->size(); ++s) {
          const Observables& a = o[static_cast<std::size_t>(s)];
          const Observables& b = expected[k][static_cast<std::size_t>(s)];
          EXPECT_EQ(a.t, b.t);
          EXPECT_NEAR(a.log_energy, b.log_energy, 1e-12 * (1.0 + std::abs(b.log_energy)));
          EXPECT_NEAR(a.min_cosine, b.min_cosine, 1e-12);
          EXPECT_NEAR(a.mean_cosine, b.mean_cosine, 1e-12);
          EXPECT_EQ(a.clustered_pairs, b.clustered_pairs);
        }
      });
      EXPECT_EQ(seen, times.size());
    }
  }
  // Bad input, named.
  FlowOptions o;
  o.beta = 1.0;
  Rng rng(7, 0);
  Ensemble e({o, o}, {sample_sphere(5, 3, rng), sample_sphere(5, 3, rng)}, IntegratorOptions{});
  e.batched = true;
  e.gpu_emulation = true;
  const auto nothing = [](std::size_t, const std::vector<Observables>&) {};
  EXPECT_TRUE(test::throws_with([&] { e.advance_observe_each({0.2, 0.1}, ObserveOptions{}, false, nothing); },
                                "times[1]"));
  e.gpu_launch_observations = -1;
  EXPECT_TRUE(test::throws_with([&] { e.advance_observe_each({0.1}, ObserveOptions{}, false, nothing); },
                                "gpu_launch_observations"));
  BatchCudaSystems sys;
  sys.n = 2;
  sys.d = 2;
  sys.beta = {1.0};
  sys.usa = {0};
  sys.usa_shift = {0.0};
  sys.log_w = {std::log(0.5), std::log(0.5)};
  sys.w = {0.5, 0.5};
  BatchCuda direct(sys, {1.0, 0.0, 0.0, 1.0}, true);
  std::vector<double> out;
  const std::vector<double> beta{1.0};
  for (const std::vector<int>& after : {std::vector<int>{2}, std::vector<int>{1, 0}, std::vector<int>{-1}})
    EXPECT_TRUE(test::throws_with(
        [&] { direct.advance({0.1}, BatchStepMethod::residual, &beta, 0.1, &out, &after); }, "obs_after["));
  direct.start({0.1}, BatchStepMethod::residual);
  EXPECT_THROW(direct.start({0.1}, BatchStepMethod::residual), std::logic_error);  // finish() first
  EXPECT_LT(direct.finish().system, 0);
  // A sink that throws: the launch running meanwhile is waited for, and the ensemble is where
  // the GPU got (3 times per launch: the second launch's end, t = 0.6), the same state as an
  // ensemble advanced there.
  {
    std::vector<FlowOptions> f(4, o);
    std::vector<Matrix> x;
    for (int k = 0; k < 4; ++k) x.push_back(sample_sphere(5, 3, rng));
    IntegratorOptions io;
    io.method = Method::residual;
    io.dt = 0.1;
    Ensemble a(f, x, io), ref(f, x, io);
    for (Ensemble* q : {&a, &ref}) {
      q->batched = true;
      q->gpu_emulation = true;
    }
    a.gpu_launch_observations = 3;
    std::vector<double> times;
    for (int k = 1; k <= 10; ++k) times.push_back(0.1 * k);
    EXPECT_THROW(a.advance_observe_each(times, ObserveOptions{}, false,
                                        [](std::size_t k, const std::vector<Observables>&) {
                                          if (k == 1) throw std::runtime_error("sink");
                                        }),
                 std::runtime_error);
    EXPECT_EQ(a.flow_state(0).integrator.t, times[5]);
    ref.advance(times[5]);
    for (Index s = 0; s < a.size(); ++s) EXPECT_TRUE(test::bit_equal(a.state(s), ref.state(s))) << s;
    // Inside each, the ensemble may be used only where it is at times[k]: the last time of the
    // last launch (k = 9); elsewhere reading, observing or advancing it throws.
    std::vector<double> rest;
    for (int k = 7; k <= 10; ++k) rest.push_back(0.1 * k);
    std::size_t refused = 0;
    a.advance_observe_each(rest, ObserveOptions{}, false, [&](std::size_t k, const std::vector<Observables>&) {
      if (k + 1 < rest.size()) {
        EXPECT_THROW(a.state(0), std::logic_error);
        EXPECT_THROW(a.observe(ObserveOptions{}, false), std::logic_error);
        EXPECT_THROW(a.advance(5.0), std::logic_error);
        ++refused;
      } else {
        ref.advance(rest.back());
        EXPECT_TRUE(test::bit_equal(a.state(1), ref.state(1)));
      }
    });
    EXPECT_EQ(refused, rest.size() - 1);
  }
  // A system failing inside a launch: the error of advance_observe, and no observation of that
  // launch handed over.
  FlowOptions usa;
  usa.kind = FieldKind::usa;
  usa.beta = 800.0;
  Ensemble big({usa, usa}, {sample_sphere(6, 3, rng), sample_sphere(6, 3, rng)}, IntegratorOptions{});
  big.batched = true;
  big.gpu_emulation = true;
  std::size_t handed = 0;
  try {
    big.advance_observe_each({0.0, 0.05, 0.1}, ObserveOptions{}, false,
                             [&](std::size_t, const std::vector<Observables>&) { ++handed; });
    ADD_FAILURE() << "no overflow reported";
  } catch (const std::runtime_error& err) {
    EXPECT_NE(std::string(err.what()).find("usa field overflows"), std::string::npos) << err.what();
  }
  EXPECT_EQ(handed, 0u);
}

}  // namespace
}  // namespace attnflow
