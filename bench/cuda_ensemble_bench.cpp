// The published phase-diagram workload for one dimension d on the batched ensemble's GPU path
// (Ensemble with set_device(cuda), batch_cuda.hpp): for each beta of 0.1, 0.2, ..., 9.0, an
// ensemble of `systems` SA systems of n = 32 tokens drawn uniformly on the sphere, `steps`
// residual steps of dt = 0.1, observed every step (the clustered-pair fraction at delta 1e-3,
// with the energy, min cosine and order of the same pass) and its ensemble mean formed per time.
// Driven by bench/cuda_compare.py, beside the published step in PyTorch on the same card.
// --observe-every K observes every K steps instead (K = steps: the steps alone in one launch per
// ensemble, which separates the GPU's stepping from the observations).
// The observations go through Ensemble::advance_observe_each: up to --launch-observations of
// them per GPU launch (0, the default: the ensemble's choice, 32 for 2048 systems; 1: a round
// trip per observation, as advance_observe makes).
// --points shared (the default) starts every beta from the same points, drawn once per d, as
// `attnflow sweep` does for the betas of one measure and seed; fresh draws each beta's own.
// --overlap 1 (the default) builds the next beta's ensemble (fresh: draws its points) on the
// host's other cores while the GPU runs this beta's; 0 builds them in turn.
//
//   cuda_ensemble_bench --d D [--betas 90] [--systems 2048] [--steps 300] [--device cuda|cpu]
//                       [--together 0|1] [--observe-every K] [--launch-observations K]
//                       [--points shared|fresh] [--overlap 0|1]
//
// Prints "RESULT d=D betas=B ... seconds=S setup=S waited=S per_beta=S gpu=0|1 p_end=<mean
// clustered fraction at t_end, first / middle / last beta>": seconds is the whole job, setup the
// time spent drawing the initial points (in parallel on the host's cores) and building the
// ensembles (their span form when d > n), waited the part of it the job waited for (all of it
// without overlap).
#include <chrono>
#include <cstdio>
#include <future>
#include <map>
#include <memory>
#include <optional>
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
    const Index launch = std::stoll(get(a, "launch-observations", "0"));
    const bool overlap = get(a, "overlap", "1") == "1";
    std::vector<double> p_end(static_cast<std::size_t>(betas), 0.0);
    bool gpu = true;
    const auto t0 = std::chrono::steady_clock::now();
    const int groups = together ? 1 : betas, per_group = together ? betas : 1;
    double setup = 0.0, waited = 0.0;  // drawing the initial points and building the ensembles
    // --points shared (the default): every beta starts from the same points, drawn once per d
    // (seed 1000), as `attnflow sweep` runs the betas of one measure and seed (a StartCache:
    // the span form too, formed once when d > n). fresh: each beta draws its own (seed 1000 +
    // beta's index).
    const std::string points = get(a, "points", "shared");
    if (points != "shared" && points != "fresh")
      throw std::invalid_argument("cuda_ensemble_bench: --points must be shared or fresh");
    const bool shared = points == "shared";
    // Points of `count` systems, system k of beta b drawn from stream (seed, k % systems) in
    // parallel: the same points on any thread count.
    const auto draw = [&](int g, Index count) {
      std::vector<Matrix> x0(static_cast<std::size_t>(count));
#pragma omp parallel for schedule(static)
      for (Index k = 0; k < count; ++k) {
        const int b = shared ? 0 : g * per_group + static_cast<int>(k / systems);
        Rng rng(static_cast<std::uint64_t>(1000 + b), static_cast<std::uint64_t>(k % systems));
        x0[static_cast<std::size_t>(k)] = sample_sphere(n, d, rng);
      }
      return x0;
    };
    std::vector<Matrix> shared_x0;                        // shared: the points, d <= n
    std::shared_ptr<const Ensemble::SpanStart> start;     // shared: their span form, d > n
    if (shared) {
      const auto s0 = std::chrono::steady_clock::now();
      Ensemble first(std::vector<FlowOptions>(static_cast<std::size_t>(systems)), draw(0, systems), io);
      first.batched = true;
      if (first.reduces_span()) start = first.span_start();
      else for (Index k = 0; k < systems; ++k) shared_x0.push_back(first.state(k));
      setup += std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
    }
    // Group g's ensemble (with d > n its span form: the QR of every system unless shared).
    const auto make = [&](int g) {
      const auto s0 = std::chrono::steady_clock::now();
      const Index count = systems * per_group;
      std::vector<FlowOptions> flows(static_cast<std::size_t>(count));
      for (Index k = 0; k < count; ++k)
        flows[static_cast<std::size_t>(k)].beta = 0.1 * (g * per_group + static_cast<int>(k / systems) + 1);
      std::optional<Ensemble> e;
      if (start) {
        auto rep = std::make_shared<Ensemble::SpanStart>();
        for (int j = 0; j < per_group; ++j) {
          rep->coords.insert(rep->coords.end(), start->coords.begin(), start->coords.end());
          rep->bases.insert(rep->bases.end(), start->bases.begin(), start->bases.end());
        }
        e.emplace(Ensemble::from_span_start(std::move(flows), std::move(rep), io));
      } else if (shared) {
        std::vector<Matrix> x0;
        for (int j = 0; j < per_group; ++j) x0.insert(x0.end(), shared_x0.begin(), shared_x0.end());
        e.emplace(std::move(flows), std::move(x0), io);
      } else {
        e.emplace(std::move(flows), draw(g, count), io);
      }
      e->batched = true;
      e->gpu_launch_observations = launch;
      if (!shared && e->reduces_span()) e->span_start();
      setup += std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
      return std::move(*e);
    };
    std::vector<double> times;
    for (int k = every; k <= steps; k += every) times.push_back(k * dt);
    std::future<Ensemble> next = std::async(overlap ? std::launch::async : std::launch::deferred, make, 0);
    for (int g = 0; g < groups; ++g) {
      const auto w0 = std::chrono::steady_clock::now();
      Ensemble e = next.get();
      waited += std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
      if (g + 1 < groups) next = std::async(overlap ? std::launch::async : std::launch::deferred, make, g + 1);
      gpu = gpu && e.runs_on_gpu();
      // The phase diagram's curve: each beta's mean clustered-pair fraction (systems in order).
      // A run's full per-time summaries (summarize) add about 0.1 ms per step of 2048 systems.
      e.advance_observe_each(times, oo, false, [&](std::size_t, const std::vector<Observables>& obs) {
        for (int j = 0; j < per_group; ++j) {
          double p = 0.0;
          for (Index s = 0; s < systems; ++s) p += obs[static_cast<std::size_t>(j * systems + s)].clustered_pairs;
          p_end[static_cast<std::size_t>(g * per_group + j)] = p / static_cast<double>(systems);
        }
      });
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(
        "RESULT d=%lld betas=%d systems=%lld steps=%d together=%d observe_every=%d launch_observations=%lld "
        "points=%s overlap=%d seconds=%.6g setup=%.6g waited=%.6g per_beta=%.6g gpu=%d p_end=%.6g/%.6g/%.6g\n",
        static_cast<long long>(d), betas, static_cast<long long>(systems), steps, together ? 1 : 0, every,
        static_cast<long long>(launch), points.c_str(), overlap ? 1 : 0, seconds, setup, waited, seconds / betas,
        gpu ? 1 : 0, p_end.front(), p_end[p_end.size() / 2], p_end.back());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
