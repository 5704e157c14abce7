// The published phase-diagram workload for one dimension d on the batched ensemble's GPU path
// (Ensemble with set_device(cuda), batch_cuda.hpp): for each beta of 0.1, 0.2, ..., 9.0, an
// ensemble of `systems` SA systems of n = 32 tokens drawn uniformly on the sphere, `steps`
// residual steps of dt = 0.1, observed every step (the clustered-pair fraction at delta 1e-3,
// with the energy, min cosine and order of the same pass) and its ensemble mean formed per time.
// Driven by bench/cuda_compare.py, beside the published step in PyTorch on the same card.
// --observe-every K observes every K steps instead (K = steps: the steps alone in one launch per
// ensemble, which separates the GPU's stepping from the per-observation round trips).
//
//   cuda_ensemble_bench --d D [--betas 90] [--systems 2048] [--steps 300] [--device cuda|cpu]
//                       [--together 0|1] [--observe-every K]
//
// Prints "RESULT d=D betas=B ... seconds=S setup=S per_beta=S gpu=0|1 p_end=<mean clustered
// fraction at t_end, first / middle / last beta>": seconds is the whole job, setup the part of it
// that draws the initial points (in parallel on the host's cores) and builds the ensembles.
#include <chrono>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "attnflow/flow/ensemble.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"
#include "attnflow/measure/sample.hpp"
#include "bench_args.hpp"

namespace {

using namespace attnflow;

std::string get(const std::map<std::string, std::string>& a, const std::string& key, const std::string& fallback) {
  return attnflow::bench::arg(a, key, fallback, "cuda_ensemble_bench");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const auto a = attnflow::bench::parse_args(argc, argv, 1, "cuda_ensemble_bench");
    const Index d = std::stoll(get(a, "d", "32")), systems = std::stoll(get(a, "systems", "2048"));
    const int betas = std::stoi(get(a, "betas", "90")), steps = std::stoi(get(a, "steps", "300"));
    const Index n = 32;
    const double dt = 0.1;
    set_device(parse_device(get(a, "device", "cuda")));
    IntegratorOptions io;
    io.method = Method::residual;
    io.dt = dt;
    ObserveOptions oo;
    oo.delta = 1e-3;
    // --together 1: all betas' systems in one ensemble (one launch per step for the whole d),
    // instead of one ensemble per beta as a sweep's points run.
    const bool together = get(a, "together", "0") == "1";
    const int every = std::stoi(get(a, "observe-every", "1"));
    if (every < 1) throw std::invalid_argument("cuda_ensemble_bench: --observe-every must be >= 1");
    std::vector<double> p_end(static_cast<std::size_t>(betas), 0.0);
    bool gpu = true;
    const auto t0 = std::chrono::steady_clock::now();
    const int groups = together ? 1 : betas, per_group = together ? betas : 1;
    double setup = 0.0;  // drawing the initial points and building the ensembles
    for (int g = 0; g < groups; ++g) {
      const auto s0 = std::chrono::steady_clock::now();
      const Index count = systems * per_group;
      std::vector<FlowOptions> flows(static_cast<std::size_t>(count));
      std::vector<Matrix> x0(static_cast<std::size_t>(count));
      // One random stream per (beta, system): the same points on any thread count.
#pragma omp parallel for schedule(static)
      for (Index k = 0; k < count; ++k) {
        const int b = g * per_group + static_cast<int>(k / systems);
        flows[static_cast<std::size_t>(k)].beta = 0.1 * (b + 1);
        Rng rng(static_cast<std::uint64_t>(1000 + b), static_cast<std::uint64_t>(k % systems));
        x0[static_cast<std::size_t>(k)] = sample_sphere(n, d, rng);
      }
      Ensemble e(std::move(flows), std::move(x0), io);
      setup += std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
      e.batched = true;
      gpu = gpu && e.runs_on_gpu();
      for (int k = every; k <= steps; k += every) {
        const std::vector<Observables> obs = e.advance_observe(k * dt, oo, false);
        // The phase diagram's curve: each beta's mean clustered-pair fraction (systems in
        // order). A run's full per-time summaries (summarize) add about 0.1 ms per step of
        // 2048 systems.
        for (int j = 0; j < per_group; ++j) {
          double p = 0.0;
          for (Index s = 0; s < systems; ++s) p += obs[static_cast<std::size_t>(j * systems + s)].clustered_pairs;
          p_end[static_cast<std::size_t>(g * per_group + j)] = p / static_cast<double>(systems);
        }
      }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(
        "RESULT d=%lld betas=%d systems=%lld steps=%d together=%d observe_every=%d seconds=%.6g setup=%.6g "
        "per_beta=%.6g gpu=%d p_end=%.6g/%.6g/%.6g\n",
        static_cast<long long>(d), betas, static_cast<long long>(systems), steps, together ? 1 : 0, every, seconds, setup,
        seconds / betas, gpu ? 1 : 0, p_end.front(), p_end[p_end.size() / 2], p_end.back());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
