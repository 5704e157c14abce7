// Training-step throughput of a transformer on measures: 4 attention layers, 2 heads,
// d = 16 (head dim 8), measures of 256 atoms, batch 32: forward + analytic backward + Adam.
// Compared side by side with the same model in PyTorch (float64, autograd) by model_compare.py.
#include <benchmark/benchmark.h>

#include "attnflow/model/model_grad.hpp"
#include "attnflow/measure/sample.hpp"

namespace {

using namespace attnflow;

struct Setup {
  Model model;
  std::vector<Example> data;
  std::vector<size_t> batch;
};

Setup make_setup(Normalization norm, Index n, Index batch) {
  ModelSpec spec;
  spec.dim = 16;
  spec.depth = 4;
  spec.heads = 2;
  spec.head_dim = 8;
  spec.normalization = norm;
  spec.beta = 1.0;
  spec.sinkhorn.iterations = 3;
  Rng rng(1);
  Setup s{random_model(spec, rng), {}, {}};
  for (Index b = 0; b < batch; ++b) {
    Rng r(2, static_cast<std::uint64_t>(b));
    Matrix x = sample_gaussian(n, 16, r);
    Matrix y = sample_gaussian(n, 16, r);
    s.data.push_back({Measure(std::move(x)), std::move(y)});
    s.batch.push_back(static_cast<size_t>(b));
  }
  return s;
}

void train_step(benchmark::State& state, Normalization norm) {
  Setup s = make_setup(norm, state.range(0), state.range(1));
  Optimizer opt(s.model, {OptimizerKind::adam, 1e-3});
  Model grad;
  for (auto _ : state) {
    benchmark::DoNotOptimize(batch_loss_and_gradient(s.model, s.data, s.batch, grad));
    opt.step(s.model, grad);
  }
  state.counters["steps_per_s"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                      benchmark::Counter::kIsRate);
}

void BM_TrainStepSoftmax(benchmark::State& state) { train_step(state, Normalization::softmax); }
void BM_TrainStepSinkhorn(benchmark::State& state) { train_step(state, Normalization::sinkhorn); }

// Forward only on one large measure: the Sinkhorn layer streams (O(n) memory), so n = 4096
// needs no 4096^2 buffer (128 MB in float64).
void BM_ForwardSinkhornLarge(benchmark::State& state) {
  Setup s = make_setup(Normalization::sinkhorn, state.range(0), 1);
  for (auto _ : state) benchmark::DoNotOptimize(transport(s.model, s.data[0].mu));
}

}  // namespace

BENCHMARK(BM_TrainStepSoftmax)->Args({256, 32})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TrainStepSinkhorn)->Args({256, 32})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ForwardSinkhornLarge)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);

BENCHMARK_MAIN();
