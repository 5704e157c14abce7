// The experiment runner's configuration: the TOML schema of `attnflow run`, its
// typed form RunConfig, and the translation Config -> RunConfig with validation that names
// the offending key ("run.toml: integrate.dt = -0.1, must be > 0"). Numerics never see a
// Config; the runner (runner.hpp) only sees a RunConfig. Schema documented in docs/usage/run.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attnflow/io/config.hpp"
#include "attnflow/flow/integrate.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"  // Precision
#include "attnflow/ot/sinkhorn.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

struct RunConfig {
  // [measure]: the initial measure of each system.
  Index n = 64;
  Index d = 3;
  std::string init = "uniform_sphere";  // uniform_sphere | gaussian | equiangular | file
  double rho0 = 0.0;                    // equiangular cosine, in [0, 1)
  std::string file;                     // init = "file": (n, d) .npy or (systems, n, d)
  std::uint64_t seed = 0;
  Index systems = 1;  // independent systems (system k uses Rng stream k of the seed)
  bool batched = true;  // ensembles: the batched small-system path where it applies (ensemble.hpp)
  bool reduce_span = true;  // batched, d > n: coordinates in the span (Ensemble::reduce_span)

  // [model]
  std::string kind = "sa";  // sa | usa | sinkhorn | kuramoto | meanshift | hardmax | vlasov
  double beta = 1.0;        // resolved: gamma log n when gamma > 0
  double gamma = 0.0;       // > 0: beta = gamma log n (long-context scaling)
  Index heads = 1;
  std::string qkv = "identity";  // identity | gaussian | goe (seeded by qkv_seed)
  std::uint64_t qkv_seed = 0;
  std::string scheme = "none";  // none | post-ln | pre-ln | mix-ln | peri-ln | ngpt | sqrt
  double tau = 1.0;             // mix-ln switch time
  double alpha = 1.0;           // nGPT step factor
  bool sphere = true;           // tangent projection + retraction onto S^{d-1}
  double kappa = 0.0;           // noisy model dX = drift dt + sqrt(2/kappa) dW; 0 = no noise
  std::string kuramoto_form = "sa";       // kuramoto: sa (normalized) | usa
  double usa_log_shift = 0.0;             // usa: field times exp(-shift) (time rescaling)
  std::string interaction = "gaussian";   // vlasov: gaussian | power (aggregation kernels)
  double sigma = 1.0;                     // vlasov gaussian width
  double a = 2.0, b = 1.0;                // vlasov power exponents, a > b >= 1
  // kind = sinkhorn: fixed iterations (0 = to tolerance), marginal violation to stop at, cap
  // per field evaluation; defaults from sinkhorn.hpp.
  int sinkhorn_iterations = SinkhornControl{}.iterations;
  double sinkhorn_tol = SinkhornControl{}.tol;
  int sinkhorn_max_iterations = SinkhornControl{}.max_iterations;

  // [integrate]
  IntegratorOptions integrator{Method::euler, 0.1};
  double t_end = 15.0;

  // [observe]
  double every = 1.0;   // observation interval (times k * every, plus t_end)
  bool on_steps = false;  // fixed steps: observe on the first step at or after k * every (observation_time)
  double delta = 1e-2;  // clusters: components of <x_i, x_j> > 1 - delta
  Index pair_limit = 20000;  // above this n the O(n^2) pair observables are skipped (0 = never)
  bool clusters = true;      // cluster counts (union-find); false: -1
  bool per_system = true;    // ensembles: per-system rows in observables.csv
  std::vector<double> quantiles{0.1, 0.5, 0.9};  // ensembles: quantiles in ensemble.csv

  // [output]
  bool snapshots = true;
  bool final_states = true;  // output.final: write final.npy (false: a sweep of large ensembles skips GBs)
  Index checkpoint_every = 10;  // observations between checkpoints; 0 = none

  // [compute]: where the kernel's reductions run (kernel_cuda.hpp set_device). "" keeps the
  // process setting (--device / set_device(), default cpu); "cpu" or "cuda" sets it for the run.
  std::string device;
  // "" = float64 (or the process setting with device = ""); float32: on cuda the kernel's
  // reductions, on the CPU the batched ensemble on the sphere (Ensemble::precision, run_precision).
  std::string precision;
};

// Reads every key of the schema from `config` (recording defaults, so config.resolved() is
// the full resolved document), validates the values naming the key, and rejects unknown keys.
// [compute] device / precision of any config (run, sweep, icl, fit): validated strings, "" when
// absent (keep the process setting). apply_compute() sets the process-wide device from them.
void read_compute(Config& config, std::string& device, std::string& precision);
void apply_compute(const std::string& device, const std::string& precision);
// The ensemble precision of a run after apply_compute: float32 where compute.precision is
// float32 and the device is the CPU, float64 otherwise (on cuda, float32 is the kernel's).
Precision run_precision(const RunConfig& cfg);

RunConfig parse_run_config(Config& config);

// The observation times of a run: observation k for k = 0, ..., last_observation(cfg) is at
// k * every (by multiplication, never accumulated) and the last one exactly at t_end. With
// observe.on_steps they are the integrator's grid times instead: the first step of dt at or
// after k * every (ceil(k every / dt) dt, never a shortened step), the last one t_end (a whole
// number of steps: parse_run_config checks it). every >= dt keeps them on distinct steps.
std::int64_t last_observation(const RunConfig& cfg);
double observation_time(const RunConfig& cfg, std::int64_t k);

// The full default configuration as commented TOML (`attnflow run --print-default-config`).
std::string default_run_config_toml();

}  // namespace attnflow
