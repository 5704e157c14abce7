// Google Benchmark: attention flows at the sizes of the README's performance table.
//   BM_SaEulerStep/n/d     one Euler + retraction step of SA on S^{d-1} (one kernel pass)
//   BM_SaRun/n/steps       a whole run of `steps` Euler steps at d = 3 (n = 1e5: the O(n)-memory
//                          large run); reports peak RSS of the process in MB
//   BM_EnsembleSmall/s     s systems of n = 64 tokens, 100 Euler steps, parallel across systems
// Run: build/bench/flow_bench [--benchmark_filter=...]; threads via OMP_NUM_THREADS.
// bench/flow_compare.py runs these next to the dense NumPy step.
#include <benchmark/benchmark.h>
#include <fstream>
#include <string>

#include "attnflow/flow/ensemble.hpp"
#include "attnflow/flow/flow.hpp"
#include "attnflow/base/rng.hpp"
#include "attnflow/measure/sample.hpp"

namespace {

using namespace attnflow;

// Peak RSS of this program in MB: VmHWM, the high-water mark of the current address space.
// (getrusage's ru_maxrss also counts the pages of the process that forked this one, before
// exec: a Python driver holding NumPy's n x n matrix would show up here.)
double peak_rss_mb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  return -1.0;
}

void BM_SaEulerStep(benchmark::State& state) {
  const Index n = state.range(0), d = state.range(1);
  Rng rng(1);
  FlowOptions o;
  o.beta = 1.0;
  const Flow f(o, n, d);
  const Matrix x0 = f.initial_state(sample_sphere(n, d, rng));
  IntegratorOptions io;
  io.method = Method::euler;
  io.dt = 0.1;
  for (auto _ : state) {
    Matrix x = x0;
    fixed_step(f.ode(), x, 0.0, io.dt, io.method);
    benchmark::DoNotOptimize(x.data());
  }
  state.counters["pairs_per_s"] =
      benchmark::Counter(double(n) * double(n) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SaEulerStep)->Args({4096, 3})->Args({16384, 3})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_SaRun(benchmark::State& state) {
  const Index n = state.range(0), steps = state.range(1), d = 3;
  Rng rng(2);
  FlowOptions o;
  o.beta = 1.0;
  const Flow f(o, n, d);
  const Matrix x0 = f.initial_state(sample_sphere(n, d, rng));
  IntegratorOptions io;
  io.method = Method::euler;
  io.dt = 0.1;
  for (auto _ : state) {
    Matrix x = x0;
    FlowState st = f.initial_flow_state();
    f.advance(x, st, io.dt * static_cast<double>(steps), io);
    benchmark::DoNotOptimize(x.data());
  }
  state.counters["peak_rss_mb"] = peak_rss_mb();
  state.counters["steps"] = static_cast<double>(steps);
}
BENCHMARK(BM_SaRun)->Args({4096, 100})->Args({100000, 10})->Args({100000, 100})->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

void BM_EnsembleSmall(benchmark::State& state) {
  const Index systems = state.range(0), n = 64, d = 3;
  std::vector<FlowOptions> flows(static_cast<size_t>(systems));
  std::vector<Matrix> x0;
  for (Index s = 0; s < systems; ++s) {
    Rng rng(3, static_cast<std::uint64_t>(s));
    flows[static_cast<size_t>(s)].beta = 4.0;
    x0.push_back(sample_sphere(n, d, rng));
  }
  IntegratorOptions io;
  io.method = Method::euler;
  io.dt = 0.1;
  for (auto _ : state) {
    Ensemble e(flows, x0, io);
    e.advance(10.0);
    benchmark::DoNotOptimize(e.state(0).data());
  }
}
BENCHMARK(BM_EnsembleSmall)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
