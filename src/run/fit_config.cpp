// TOML -> typed options for `attnflow fit` (fit_run.hpp).
#include <fmt/format.h>

#include "attnflow/run/fit_run.hpp"
#include "attnflow/base/limits.hpp"

namespace attnflow {

namespace {

// Re-throws a validation error of the numerics with the config name in front.
template <typename F>
void validated(const Config& cfg, const char* section, F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(fmt::format("{}: [{}] {}", cfg.name(), section, e.what()));
  }
}

Index get_index(Config& c, const std::string& key, Index def) { return static_cast<Index>(c.get_int(key, def)); }

}  // namespace

FitConfig parse_fit_config(Config& c) {
  FitConfig f;
  TaskOptions& t = f.task;
  t.kind = parse_task_kind(c.get_string("task.kind", "gaussian"), c.name() + ": task.kind");
  t.dim = get_index(c, "task.dim", t.dim);
  t.n_min = get_index(c, "task.n_min", t.n_min);
  t.n_max = get_index(c, "task.n_max", t.n_max);
  t.train_size = get_index(c, "task.train_size", t.train_size);
  t.test_size = get_index(c, "task.test_size", t.test_size);
  t.seed = static_cast<std::uint64_t>(c.get_int("task.seed", 1));
  t.random_weights = c.get_bool("task.random_weights", t.random_weights);
  t.spread = c.get_double("task.spread", t.spread);
  t.beta = c.get_double("task.beta", t.beta);
  t.time = c.get_double("task.time", t.time);
  t.heads = get_index(c, "task.heads", t.heads);
  t.dt = c.get_double("task.dt", t.dt);
  t.eps = c.get_double("task.eps", t.eps);

  ModelSpec& m = f.model;
  m.dim = t.dim;
  m.depth = get_index(c, "model.depth", m.depth);
  m.heads = get_index(c, "model.heads", m.heads);
  m.head_dim = get_index(c, "model.head_dim", m.head_dim);
  m.mlp_hidden = get_index(c, "model.mlp_hidden", 16);
  m.normalization = parse_normalization(c.get_string("model.normalization", "softmax"),
                                        c.name() + ": model.normalization");
  m.beta = c.get_double("model.beta", m.beta);
  m.step = c.get_double("model.step", m.step);
  m.init_scale = c.get_double("model.init_scale", m.init_scale);
  m.sinkhorn.iterations = static_cast<int>(c.get_int("model.sinkhorn_iterations", m.sinkhorn.iterations));
  m.sinkhorn.tol = c.get_double("model.sinkhorn_tol", m.sinkhorn.tol);
  m.sinkhorn.max_iterations = static_cast<int>(c.get_int("model.sinkhorn_max_iterations", m.sinkhorn.max_iterations));
  f.model_seed = static_cast<std::uint64_t>(c.get_int("model.seed", 1));

  FitOptions& o = f.fit;
  o.steps = c.get_int("train.steps", o.steps);
  o.batch_size = get_index(c, "train.batch_size", o.batch_size);
  o.eval_every = c.get_int("train.eval_every", o.eval_every);
  o.seed = static_cast<std::uint64_t>(c.get_int("train.seed", 1));
  o.optimizer.kind = parse_optimizer(c.get_string("train.optimizer", "adam"), c.name() + ": train.optimizer");
  o.optimizer.lr = c.get_double("train.lr", o.optimizer.lr);
  o.optimizer.momentum = c.get_double("train.momentum", o.optimizer.momentum);
  o.optimizer.beta1 = c.get_double("train.beta1", o.optimizer.beta1);
  o.optimizer.beta2 = c.get_double("train.beta2", o.optimizer.beta2);
  o.optimizer.eps = c.get_double("train.eps", o.optimizer.eps);

  c.reject_unknown();
  validated(c, "task", [&] { t.validate(); });
  validated(c, "model", [&] { m.validate(); });
  validated(c, "train", [&] { o.validate(); });
  // Refused before anything is allocated (H3/M2): the model's parameters (kept with
  // its gradient, Adam's two moments and one gradient per batch entry) and the task data.
  const double dim = static_cast<double>(t.dim);
  const double params = static_cast<double>(m.depth) *
                        (static_cast<double>(m.heads) * (2.0 * static_cast<double>(m.head_dim) + 2.0 * dim) * dim +
                         2.0 * static_cast<double>(m.mlp_hidden) * (dim + 1.0));
  require_memory(c.name(), "model.depth x model.heads x model.head_dim",
                 fmt::format("{} x {} x {} (task.dim = {})", m.depth, m.heads, m.head_dim, t.dim),
                 params * 8.0 * (4.0 + static_cast<double>(o.batch_size)));
  require_memory(c.name(), "task.train_size + task.test_size",
                 fmt::format("{} + {} (task.n_max = {}, task.dim = {})", t.train_size, t.test_size, t.n_max, t.dim),
                 static_cast<double>(t.train_size + t.test_size) * static_cast<double>(t.n_max) * dim * 8.0 * 2.0);
  return f;
}

std::string default_fit_config_toml() {
  return R"(# attnflow fit: learn an in-context map mu -> G(mu, .) (docs/math.md section 4).
# Loss: mean over measures of sum_i w_i |G(mu, x_i) - T(mu, x_i)|^2, T the target map.

[task]
kind = "gaussian"         # gaussian: T(mu, x) = S^{-1/2} (x - m) (m, S: mean, covariance of mu)
                          # vlasov:   time-T flow map of the SA Vlasov equation (flow.hpp, RK4)
                          # sinkhorn: barycentric projection of the entropic OT plan of mu with itself
dim = 2                   # dimension d of the points
n_min = 16                # atoms per measure: uniform in [n_min, n_max] (measures of different sizes)
n_max = 32
train_size = 256          # training measures (measure k uses Rng(seed, 2k))
test_size = 64            # held-out measures (measure k uses Rng(seed, 2k + 1))
seed = 1
random_weights = false    # true: weights uniform in [0.5, 1.5] then normalized; false: uniform
spread = 0.5              # measures ~ N(m, A A^T), A = I + spread G / sqrt(d), m ~ N(0, I / 4)
beta = 1.0                # vlasov: inverse temperature of the target field
time = 1.0                # vlasov: flow time T
heads = 1                 # vlasov: heads of the target field (Gaussian Q, K, V, seed + 7919)
dt = 0.01                 # vlasov: RK4 step
eps = 0.5                 # sinkhorn: entropic regularization of the cost |x - y|^2

[model]
depth = 2                 # blocks: attention layer (+ MLP layer when mlp_hidden > 0)
heads = 2                 # attention heads per layer
head_dim = 0              # dk = dv per head; 0 = dim
mlp_hidden = 16           # hidden units of the MLP layers; 0 = attention only
normalization = "softmax" # softmax | sinkhorn | none
beta = 1.0                # inverse temperature of every attention layer
step = 1.0                # residual step of attention layers; <= 0 means 1 / depth
init_scale = 0.5          # weights ~ N(0, (init_scale^2) / fan_in)
sinkhorn_iterations = 3   # sinkhorn: fixed number of iterations (1 = softmax); 0 = to sinkhorn_tol
)" + fmt::format(R"(sinkhorn_tol = {:<11g}# sinkhorn with iterations = 0: marginal-violation tolerance
sinkhorn_max_iterations = {}
)", SinkhornControl{}.tol, SinkhornControl{}.max_iterations) + R"(seed = 1                  # initialization seed

[train]
steps = 500               # optimizer steps
batch_size = 16           # measures per step (drawn with replacement, seeded)
eval_every = 25           # full train/test loss every this many steps (rows of loss.csv)
seed = 1                  # minibatch stream
optimizer = "adam"        # adam | sgd
lr = 0.01                 # learning rate
momentum = 0.0            # sgd: heavy-ball momentum in [0, 1)
beta1 = 0.9               # adam
beta2 = 0.999             # adam
eps = 1e-8                # adam
)";
}

}  // namespace attnflow
