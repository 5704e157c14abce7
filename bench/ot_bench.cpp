// Google Benchmark: entropic OT. One Sinkhorn half-step (one streaming kernel pass over n x m
// pairs) at several sizes, including 1e4 queries against 1e6 keys (1e10 pairs; a full
// half-step at n = m = 1e6 is 100x that), and a full solve at n = m = 4000 with the settings of
// bench/ot_compare.py (uniform in [0, 1]^3, eps = 0.01 max cost, tol 1e-6).
// Run: build/bench/ot_bench [--benchmark_filter=...]; threads via OMP_NUM_THREADS.
#include <benchmark/benchmark.h>

#include <cmath>

#include "attnflow/ot/ot.hpp"
#include "attnflow/base/rng.hpp"

namespace {

using namespace attnflow;

Matrix uniform_cube(Index n, std::uint64_t seed) {
  Rng rng(seed);
  Matrix x(n, 3);
  for (Index i = 0; i < n; ++i)
    for (Index t = 0; t < 3; ++t) x(i, t) = rng.uniform();
  return x;
}

void BM_SinkhornHalfStep(benchmark::State& state) {
  const Index n = state.range(0), m = state.range(1);
  const TransportCost cost = TransportCost::sqeuclidean(uniform_cube(n, 1), uniform_cube(m, 2));
  const Vector g = Vector::Zero(m), logb = Vector::Constant(m, -std::log(double(m)));
  const double eps = 0.03;  // 0.01 * max cost for the unit cube (max cost ~ 3)
  for (auto _ : state) {
    Vector f = cost.gibbs(false, g, logb, eps, false).softmin;
    benchmark::DoNotOptimize(f.data());
  }
  state.counters["pairs_per_s"] =
      benchmark::Counter(double(n) * double(m) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SinkhornHalfStep)->Args({4000, 4000})->Unit(benchmark::kMillisecond)->UseRealTime();
// Large sizes: one repetition (1e10 pairs each, tens of seconds on 2 cores).
BENCHMARK(BM_SinkhornHalfStep)
    ->Args({100000, 100000})
    ->Args({10000, 1000000})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

void BM_SinkhornSolve(benchmark::State& state) {
  const Index n = state.range(0);
  const TransportCost cost = TransportCost::sqeuclidean(uniform_cube(n, 1), uniform_cube(n, 2));
  SinkhornOptions opt;
  opt.eps = 0.01 * cost.max_cost();
  opt.tol = 1e-6;
  int iterations = 0;
  for (auto _ : state) {
    const SinkhornResult r = sinkhorn(Vector(), Vector(), cost, opt);
    iterations = r.iterations;
    benchmark::DoNotOptimize(r.cost);
  }
  state.counters["iterations"] = iterations;
}
BENCHMARK(BM_SinkhornSolve)->Arg(4000)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
