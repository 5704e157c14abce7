// Google Benchmark: in-context regression training steps (docs/math.md section 7) at the
// published size d = 5, L = 1000, batch 128: one step = draw 128 fresh prompts, one streaming
// softmax pass per prompt, gradients, SGD update. Also the large-prompt operator with gradients.
// Run: build/bench/icl_bench [--benchmark_filter=...]; threads via OMP_NUM_THREADS.
#include <benchmark/benchmark.h>

#include "attnflow/icl/icl.hpp"
#include "attnflow/icl/large_prompt.hpp"
#include "attnflow/base/rng.hpp"

namespace {

using namespace attnflow;

// args: model (0 softmax, 1 linear), d, L, batch.
void BM_IclTrainStep(benchmark::State& state) {
  const IclModel model = state.range(0) == 0 ? IclModel::softmax : IclModel::linear;
  const Index d = state.range(1);
  IclData data;
  data.cov = toeplitz_covariance(d, 0.5);
  data.noise = 0.1;
  Rng rng(1);
  IclParams params = icl_balanced_init(d, 0.5, rng);
  IclTrainOptions o;
  o.model = model;
  o.prompt_length = state.range(2);
  o.batch = state.range(3);
  o.steps = 1;
  o.lr = 0.01;
  for (auto _ : state) {
    const IclTrainResult r = icl_train(data, params, o);
    params = r.params;
    ++o.seed;  // fresh prompts every step, as in training
    benchmark::DoNotOptimize(params.a.data());
  }
  state.counters["steps_per_s"] = benchmark::Counter(double(state.iterations()),
                                                     benchmark::Counter::kIsRate);
}
BENCHMARK(BM_IclTrainStep)
    ->Args({0, 5, 1000, 128})
    ->Args({1, 5, 1000, 128})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The empirical operator with gradients: L tokens, n queries, dimension D.
void BM_EmpiricalPromptVjp(benchmark::State& state) {
  const Index length = state.range(0), n = state.range(1), dim = state.range(2);
  Rng rng(2);
  Matrix x(length, dim), z(n, dim), g(n, dim);
  rng.fill_normal(x);
  rng.fill_normal(z);
  rng.fill_normal(g);
  const Measure mu(x);
  const PromptOperator op{0.5 * Matrix::Identity(dim, dim), Matrix::Identity(dim, dim)};
  for (auto _ : state) {
    const PromptOutput r = empirical_prompt(op, mu, z, g);
    benchmark::DoNotOptimize(r.grad_u.data());
  }
  state.counters["pairs_per_s"] = benchmark::Counter(double(length) * n * state.iterations(),
                                                     benchmark::Counter::kIsRate);
}
BENCHMARK(BM_EmpiricalPromptVjp)->Args({100000, 64, 4})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
