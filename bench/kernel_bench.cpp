// Google Benchmark: the streaming kernel (softmax attention through lse_reduce) at the sizes
// of the README's performance table, and the vectorized exp throughput that bounds it.
// Run: build/bench/kernel_bench [--benchmark_filter=...]; threads via OMP_NUM_THREADS.
#include <benchmark/benchmark.h>

#include <vector>

#include "attnflow/attention/attention.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/base/rng.hpp"
#include "attnflow/measure/sample.hpp"

namespace {

using namespace attnflow;

// exps per second of exp_inplace on an L1-resident array, all threads: the speed limit of
// the kernel, which needs one exp per (query, key) pair. Argument 1: exp2_inplace instead
// (2^x, the form the fused and symmetric loops evaluate, their inputs carrying log2(e)).
void BM_ExpThroughput(benchmark::State& state) {
  const int threads = num_threads();
  const bool base2 = state.range(0) == 1;
  const Index len = 2048;
  for (auto _ : state) {
#pragma omp parallel num_threads(threads)
    {
      std::vector<double> buf(len);
      for (Index i = 0; i < len; ++i) buf[i] = -0.001 * static_cast<double>(i);
      for (int rep = 0; rep < 2000; ++rep) {
        if (base2)
          exp2_inplace(buf.data(), len);
        else
          exp_inplace(buf.data(), len);
        benchmark::DoNotOptimize(buf.data());
        buf[0] = -1.0;  // (the values grow to inf within a few reps; the cost of the vector
                        // exp does not depend on them)
      }
    }
  }
  state.counters["exp_per_s"] =
      benchmark::Counter(double(len) * 2000 * threads * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ExpThroughput)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_SoftmaxAttention(benchmark::State& state) {
  const Index n = state.range(0), d = state.range(1);
  Rng rng(1);
  Matrix x(n, d), y(n, d);
  rng.fill_normal(x);
  rng.fill_normal(y);
  x /= std::sqrt(double(d));
  const Vector col = Vector::Zero(n);
  Vector lse;
  Matrix out;
  for (auto _ : state) {
    lse_reduce(x, y, col, y, lse, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["pairs_per_s"] =
      benchmark::Counter(double(n) * double(n) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SoftmaxAttention)
    ->Args({16384, 3})
    ->Args({4096, 64})
    ->Args({131072, 3})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
