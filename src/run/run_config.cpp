// Config -> RunConfig: the runner's schema, defaults and validation (messages name the key).
#include "attnflow/run/run_config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>

#include "attnflow/base/error.hpp"
#include "attnflow/base/limits.hpp"
#include "attnflow/flow/flow.hpp"
#include "attnflow/flow/scheme.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"

namespace attnflow {

namespace {

// An integer key as int, out-of-range values pinned to the int range (the range checks that
// follow then refuse them).
int saturate_int(std::int64_t v) {
  return static_cast<int>(std::clamp<std::int64_t>(v, std::numeric_limits<int>::min(),
                                                   std::numeric_limits<int>::max()));
}

void require_one_of(const std::string& ctx, const std::string& key, const std::string& value,
                    const std::set<std::string>& allowed, const std::string& list) {
  require(allowed.count(value) > 0, ctx, key, fmt::format("\"{}\"", value), "one of " + list);
}

void read_measure(Config& c, RunConfig& r) {
  const std::string& ctx = c.name();
  const auto n = c.get_int("measure.n", r.n);
  require(n >= 1, ctx, "measure.n", n, ">= 1");
  const auto d = c.get_int("measure.d", r.d);
  require(d >= 1, ctx, "measure.d", d, ">= 1");
  r.n = n;
  r.d = d;
  r.init = c.get_string("measure.init", r.init);
  require_one_of(ctx, "measure.init", r.init, {"uniform_sphere", "gaussian", "equiangular", "file"},
                 "uniform_sphere, gaussian, equiangular, file");
  r.rho0 = c.get_double("measure.rho0", r.rho0);
  require(r.rho0 >= 0.0 && r.rho0 < 1.0, ctx, "measure.rho0", r.rho0, "in [0, 1)");
  r.file = c.get_string("measure.file", r.file);
  if (r.init == "file") require(!r.file.empty(), ctx, "measure.file", "\"\"", "a .npy path when init = \"file\"");
  const auto seed = c.get_int("measure.seed", 0);
  require(seed >= 0, ctx, "measure.seed", seed, ">= 0");
  r.seed = static_cast<std::uint64_t>(seed);
  const auto systems = c.get_int("measure.systems", r.systems);
  require(systems >= 1, ctx, "measure.systems", systems, ">= 1");
  r.systems = systems;
  r.batched = c.get_bool("measure.batched", r.batched);
  r.reduce_span = c.get_bool("measure.reduce_span", r.reduce_span);
  if (r.init == "equiangular")
    require(r.d >= r.n + 1, ctx, "measure.d", r.d, fmt::format(">= n + 1 = {} for init = \"equiangular\"", r.n + 1));
}

void read_model(Config& c, RunConfig& r) {
  const std::string& ctx = c.name();
  r.kind = c.get_string("model.kind", r.kind);
  parse_field_kind(r.kind, ctx, "model.kind");  // the one parser (flow.hpp)
  r.beta = c.get_double("model.beta", r.beta);
  // > 0: the energy (1 / (2 beta)) sum e^{beta <x_i, x_j>} is observed at every step.
  require(std::isfinite(r.beta) && r.beta > 0.0, ctx, "model.beta", r.beta, "> 0 and finite");
  r.gamma = c.get_double("model.gamma", r.gamma);
  require(std::isfinite(r.gamma) && r.gamma >= 0.0, ctx, "model.gamma", r.gamma, ">= 0 (0 = use model.beta)");
  if (r.gamma > 0.0) {
    require(r.n >= 2, ctx, "measure.n", r.n, ">= 2 when model.gamma > 0 (beta = gamma log n)");
    r.beta = r.gamma * std::log(static_cast<double>(r.n));
  }
  const auto heads = c.get_int("model.heads", r.heads);
  require(heads >= 1, ctx, "model.heads", heads, ">= 1");
  r.heads = heads;
  r.qkv = c.get_string("model.qkv", r.qkv);
  check_qkv(r.qkv, ctx, "model.qkv");  // make_heads' own check (flow.hpp)
  const auto qseed = c.get_int("model.qkv_seed", 0);
  require(qseed >= 0, ctx, "model.qkv_seed", qseed, ">= 0");
  r.qkv_seed = static_cast<std::uint64_t>(qseed);
  r.sphere = c.get_bool("model.sphere", r.sphere);
  r.kappa = c.get_double("model.kappa", r.kappa);
  require(!std::isnan(r.kappa) && r.kappa >= 0.0, ctx, "model.kappa", r.kappa, ">= 0 (0 = no noise)");
  r.kuramoto_form = c.get_string("model.kuramoto_form", r.kuramoto_form);
  require_one_of(ctx, "model.kuramoto_form", r.kuramoto_form, {"sa", "usa"}, "sa, usa");
  r.usa_log_shift = c.get_double("model.usa_log_shift", r.usa_log_shift);
  require(std::isfinite(r.usa_log_shift), ctx, "model.usa_log_shift", r.usa_log_shift, "finite");
  // The Sinkhorn stopping rule's own validate() (sinkhorn.hpp), under the config's names.
  SinkhornControl sk;
  sk.iterations = saturate_int(c.get_int("model.sinkhorn_iterations", r.sinkhorn_iterations));
  sk.tol = c.get_double("model.sinkhorn_tol", r.sinkhorn_tol);
  sk.max_iterations = saturate_int(c.get_int("model.sinkhorn_max_iterations", r.sinkhorn_max_iterations));
  sk.validate(ctx, "model.sinkhorn_");
  r.sinkhorn_iterations = sk.iterations;
  r.sinkhorn_tol = sk.tol;
  r.sinkhorn_max_iterations = sk.max_iterations;
  if (r.kind == "kuramoto") require(r.d == 2, ctx, "measure.d", r.d, "2 for model.kind = \"kuramoto\"");
}

void read_scheme_vlasov(Config& c, RunConfig& r) {
  const std::string& ctx = c.name();
  r.scheme = c.get_string("model.scheme", r.scheme);
  parse_scheme(r.scheme, ctx, "model.scheme");  // the one scheme parser (scheme.hpp)
  r.tau = c.get_double("model.tau", r.tau);
  require(std::isfinite(r.tau) && r.tau >= 0.0, ctx, "model.tau", r.tau, ">= 0");
  r.alpha = c.get_double("model.alpha", r.alpha);
  require(std::isfinite(r.alpha) && r.alpha > 0.0, ctx, "model.alpha", r.alpha, "> 0");
  r.interaction = c.get_string("model.interaction", r.interaction);
  // The one parser (flow.hpp); custom needs a function, which a config cannot give.
  require(parse_interaction(r.interaction, ctx, "model.interaction") != Interaction::custom, ctx,
          "model.interaction", "\"custom\"", "gaussian or power in a config (custom takes a Python function)");
  r.sigma = c.get_double("model.sigma", r.sigma);
  require(std::isfinite(r.sigma) && r.sigma > 0.0, ctx, "model.sigma", r.sigma, "> 0");
  r.a = c.get_double("model.a", r.a);
  r.b = c.get_double("model.b", r.b);
  require(std::isfinite(r.b) && r.b >= 1.0, ctx, "model.b", r.b, ">= 1");
  require(std::isfinite(r.a) && r.a > r.b, ctx, "model.a", r.a, fmt::format("> model.b = {}", r.b));
}

void read_integrate(Config& c, RunConfig& r) {
  const std::string& ctx = c.name();
  r.integrator.method = parse_method(c.get_string("integrate.method", "euler"), ctx + ": integrate");
  r.integrator.dt = c.get_double("integrate.dt", r.integrator.dt);
  require(std::isfinite(r.integrator.dt) && r.integrator.dt > 0.0, ctx, "integrate.dt", r.integrator.dt, "> 0");
  r.t_end = c.get_double("integrate.t_end", r.t_end);
  require(std::isfinite(r.t_end) && r.t_end >= 0.0, ctx, "integrate.t_end", r.t_end, ">= 0");
  r.integrator.rtol = c.get_double("integrate.rtol", r.integrator.rtol);
  require(std::isfinite(r.integrator.rtol) && r.integrator.rtol > 0.0, ctx, "integrate.rtol", r.integrator.rtol, "> 0");
  r.integrator.atol = c.get_double("integrate.atol", r.integrator.atol);
  require(std::isfinite(r.integrator.atol) && r.integrator.atol > 0.0, ctx, "integrate.atol", r.integrator.atol, "> 0");
  // The noisy model is an Euler-Maruyama scheme: no higher-order or adaptive SDE method.
  if (r.kappa > 0.0 && std::isfinite(r.kappa))
    require(r.integrator.method == Method::euler, ctx, "integrate.method",
            fmt::format("\"{}\"", to_string(r.integrator.method)), "\"euler\" when model.kappa > 0 (noise)");
}

void read_observe_output(Config& c, RunConfig& r) {
  const std::string& ctx = c.name();
  r.every = c.get_double("observe.every", r.every);
  require(std::isfinite(r.every) && r.every > 0.0, ctx, "observe.every", r.every, "> 0");
  r.on_steps = c.get_bool("observe.on_steps", r.on_steps);
  if (r.on_steps) {
    const double dt = r.integrator.dt, steps = r.t_end / dt;
    require(r.integrator.method != Method::dopri5, ctx, "observe.on_steps", "true",
            "a fixed-step integrate.method (euler, residual, rk4), not dopri5");
    require(r.every >= dt, ctx, "observe.every", r.every,
            fmt::format(">= integrate.dt = {} with observe.on_steps (one observation per step at most)", dt));
    require(std::abs(steps - std::round(steps)) <= 1e-9 * std::max(1.0, steps), ctx, "integrate.t_end", r.t_end,
            fmt::format("a whole number of steps of integrate.dt = {} with observe.on_steps", dt));
  }
  r.delta = c.get_double("observe.delta", r.delta);
  require(r.delta > 0.0 && r.delta < 2.0, ctx, "observe.delta", r.delta, "in (0, 2)");
  const auto pl = c.get_int("observe.pair_limit", r.pair_limit);
  require(pl >= 0, ctx, "observe.pair_limit", pl, ">= 0 (0 = never skip)");
  r.pair_limit = pl;
  r.clusters = c.get_bool("observe.clusters", r.clusters);
  r.per_system = c.get_bool("observe.per_system", r.per_system);
  r.quantiles = c.get_doubles("observe.quantiles", r.quantiles);
  for (double q : r.quantiles) require(q >= 0.0 && q <= 1.0, ctx, "observe.quantiles", q, "in [0, 1]");
  r.snapshots = c.get_bool("output.snapshots", r.snapshots);
  r.final_states = c.get_bool("output.final", r.final_states);
  const auto ck = c.get_int("output.checkpoint_every", r.checkpoint_every);
  require(ck >= 0, ctx, "output.checkpoint_every", ck, ">= 0 (0 = no checkpoints)");
  r.checkpoint_every = ck;
}

// Memory and output estimated before anything is allocated or written (H3; limits
// in limits.hpp, override ATTNFLOW_NO_SIZE_LIMITS=1). The state of one system is n x (d + 1)
// doubles, of which the integrator and the field keep about kStateCopies copies (dopri5's
// stages, u = beta Q x and v = K x per head, the observables' buffers).
void check_sizes(const std::string& ctx, const RunConfig& r) {
  constexpr double kStateCopies = 16.0, kCsvRowBytes = 400.0;
  const double systems = static_cast<double>(r.systems), n = static_cast<double>(r.n),
               d = static_cast<double>(r.d), heads = static_cast<double>(r.heads);
  const double state = systems * n * (d + 1.0) * 8.0;
  require_memory(ctx, "model.heads", fmt::format("{} (with measure.d = {})", r.heads, r.d),
                 heads * d * d * 8.0 * 3.0 + heads * n * d * 8.0 * 2.0);
  require_memory(ctx, "measure.systems x measure.n x measure.d",
                 fmt::format("{} x {} x {}", r.systems, r.n, r.d),
                 state * kStateCopies + heads * n * d * 8.0 * 2.0);
  const double observations = std::floor(r.t_end / r.every) + 2.0;
  const std::string obs_value = fmt::format("{:g} / {:g}", r.t_end, r.every);
  require_count(ctx, "integrate.t_end / observe.every", obs_value, observations,
                kMaxObservations, "observations");
  require_count(ctx, "integrate.t_end / observe.every", obs_value,
                observations * (systems * kCsvRowBytes + (r.snapshots ? state : 0.0)),
                kMaxOutputBytes,
                r.snapshots ? "bytes of observables.csv and snapshots" : "bytes of observables.csv");
}

}  // namespace

void read_compute(Config& c, std::string& device, std::string& precision) {
  const std::string& ctx = c.name();
  device = c.get_string("compute.device", device);
  require_one_of(ctx, "compute.device", device, {"", "cpu", "cuda"}, "cpu, cuda (\"\" = --device)");
  precision = c.get_string("compute.precision", precision);
  require_one_of(ctx, "compute.precision", precision, {"", "float64", "float32"}, "float64, float32");
  // float32 on the CPU: the batched ensemble's single-precision path (Ensemble::precision),
  // which the run checks against its systems (run_precision); the CPU kernel stays float64.
}

void apply_compute(const std::string& device, const std::string& precision) {
  if (device.empty() && precision.empty()) return;
  const Device d = device.empty() ? current_device().device : parse_device(device, "compute.device");
  // float32 on the CPU is the ensemble's (run_precision): the process-wide kernel stays float64.
  const bool f32 = precision == "float32" && d == Device::cuda;
  set_device(d, f32 ? Precision::float32 : Precision::float64);
}

Precision run_precision(const RunConfig& cfg) {
  return cfg.precision == "float32" && current_device().device == Device::cpu ? Precision::float32
                                                                              : Precision::float64;
}

namespace {
std::int64_t grid_step(const RunConfig& c, std::int64_t k) {
  return static_cast<std::int64_t>(std::ceil(static_cast<double>(k) * c.every / c.integrator.dt - 1e-9));
}
}  // namespace

// The 1e-9 slack keeps t_end = 15, every = 0.1 at 150 intervals (and 0.3 / 0.1 at 3 steps).
std::int64_t last_observation(const RunConfig& c) {
  auto last = static_cast<std::int64_t>(std::ceil(c.t_end / c.every - 1e-9));
  if (!c.on_steps) return last;
  // On steps, the observation before t_end may already round up to t_end's step: then it is
  // the last (every >= dt: at most one such).
  const std::int64_t steps = std::llround(c.t_end / c.integrator.dt);
  if (last > 0 && grid_step(c, last - 1) >= steps) --last;
  return last;
}

double observation_time(const RunConfig& c, std::int64_t k) {
  if (k >= last_observation(c)) return c.t_end;
  return c.on_steps ? static_cast<double>(grid_step(c, k)) * c.integrator.dt : static_cast<double>(k) * c.every;
}

RunConfig parse_run_config(Config& config) {
  RunConfig r;
  read_measure(config, r);
  read_model(config, r);
  read_scheme_vlasov(config, r);
  read_integrate(config, r);
  read_observe_output(config, r);
  read_compute(config, r.device, r.precision);
  config.reject_unknown();
  check_sizes(config.name(), r);
  return r;
}

std::string default_run_config_toml() {
  return R"(# attnflow run: the default experiment (every key, with its default value).
# Tokens x_i on the sphere S^{d-1} follow dx_i/dt = P_{x_i}(attention average),
# docs/math.md section 5.1.

[measure]
n = 64                    # number of tokens (>= 1)
d = 3                     # dimension of the ambient space R^d (tokens on S^{d-1} when model.sphere)
init = "uniform_sphere"   # uniform_sphere | gaussian | equiangular | file
rho0 = 0.0                # equiangular: pairwise cosine in [0, 1) (needs d >= n + 1)
file = ""                 # init = "file": .npy of shape (n, d), or (systems, n, d)
seed = 0                  # seed of the initial measure; system k uses stream k of this seed
systems = 1               # number of independent systems advanced together (an ensemble)
batched = true            # ensembles of SA/USA (or Sinkhorn) systems: W systems per SIMD vector (false: one by one)
reduce_span = true        # batched, d > n: each system in coordinates of its points' span (exact; the cost of d = n)

[model]
kind = "sa"               # sa | usa | sinkhorn | kuramoto | meanshift | hardmax | vlasov
beta = 1.0                # inverse temperature (> 0)
gamma = 0.0               # > 0: beta = gamma * log(n) (long-context scaling); 0: use beta
heads = 1                 # attention heads (their fields are summed)
qkv = "identity"          # identity | gaussian (N(0, 1/d) entries) | goe (Q = I, K, V symmetric GOE-type)
qkv_seed = 0              # seed of the random Q, K, V
sphere = true             # true: project on the tangent space and retract onto the sphere; false: R^d
kappa = 0.0               # noisy model dX = drift dt + sqrt(2 / kappa) dW (needs method = "euler"); 0 = no noise
kuramoto_form = "sa"      # kuramoto (d = 2, angles): sa (normalized by sum_k e^{beta cos}) | usa
usa_log_shift = 0.0       # usa: field times exp(-usa_log_shift), a time rescaling for huge beta
sinkhorn_iterations = 0   # sinkhorn: fixed number of iterations (1 = softmax); 0 = to tolerance
)" + fmt::format(R"(sinkhorn_tol = {:<11g}# sinkhorn: stop when the marginal violation sum_j |sum_i pi_ij - w_j| <= this
sinkhorn_max_iterations = {}  # sinkhorn: cap per field evaluation (a miss is counted in summary.json)
)", SinkhornControl{}.tol, SinkhornControl{}.max_iterations) + R"(scheme = "none"           # none | post-ln | pre-ln | mix-ln | peri-ln | ngpt | sqrt (docs/math.md section 5)
tau = 1.0                 # mix-ln: time at which post-LN switches to pre-LN
alpha = 1.0               # ngpt: step factor alpha
interaction = "gaussian"  # vlasov: gaussian (F = -(x - y) e^{-|x - y|^2 / (2 sigma^2)}) | power
sigma = 1.0               # vlasov gaussian: width sigma
a = 2.0                   # vlasov power: W(z) = |z|^a / a - |z|^b / b, attraction exponent a > b
b = 1.0                   # vlasov power: repulsion exponent b >= 1

[integrate]
method = "euler"          # euler | residual | rk4 | dopri5 (residual: normalize(x + dt A), the published step)
dt = 0.1                  # step (euler, rk4); first trial step (dopri5); > 0
t_end = 15.0              # final time (>= 0)
rtol = 1e-06              # dopri5 relative tolerance
atol = 1e-09              # dopri5 absolute tolerance

[observe]
every = 1.0               # observe at t = 0, every, 2 every, ..., and t_end
on_steps = false          # fixed steps: observe on the first step at or after each k * every (no shortened step; every >= dt)
delta = 0.01              # cluster threshold: i ~ j when <x_i, x_j> > 1 - delta, in (0, 2)
pair_limit = 20000        # n above this skips the O(n^2) pair pass (clusters = -1); 0 = never skip
clusters = true           # cluster counts (union-find); false: clusters = largest_cluster = -1
per_system = true         # ensembles: one observables.csv row per system (false: ensemble.csv only)
quantiles = [0.1, 0.5, 0.9]  # ensembles: quantiles per time in ensemble.csv

[output]
snapshots = true          # write snapshots/snap_KKKKKK.npy at every observation
final = true              # write final.npy (the final positions; false: only the tables and summary)
checkpoint_every = 10     # checkpoint every this many observations (0 = never)

[compute]
device = ""               # "" = the process setting (--device, default cpu) | cpu | cuda (docs/usage/gpu.md)
precision = ""            # "" = float64 | float64 | float32 (cuda: the kernel; cpu: the batched ensemble on the sphere, SA/USA)
)";
}

}  // namespace attnflow
