// TOML -> typed options for `attnflow icl` and `attnflow largeprompt` (icl_run.hpp). Every
// value is checked here, naming the config file and key ("icl.toml: train.lr = 0, must be
// > 0"), before the numerics see it.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "attnflow/io/csv.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/run/icl_run.hpp"
#include "attnflow/base/limits.hpp"
#include "attnflow/io/npy.hpp"
#include "attnflow/base/parallel.hpp"

namespace attnflow {

namespace {

Matrix load_covariance(const std::string& path, const std::string& context) {
  if (!std::filesystem::exists(path))
    throw_invalid(context, "data.covariance_file", fmt::format("\"{}\"", path), "an existing file");
  try {
    if (std::filesystem::path(path).extension() == ".csv") return read_csv(path).values;
    return read_npy_matrix(path);
  } catch (const std::exception& e) {
    throw std::invalid_argument(
        fmt::format("{}: data.covariance_file = \"{}\": {}", context, path, e.what()));
  }
}

// The prompt length: an integer L >= 1 or the word "infinite" (-> 0, the ODE).
Index parse_prompt(Config& c) {
  const std::string ctx = c.name();
  if (!c.has("train.prompt")) return static_cast<Index>(c.get_int("train.prompt", 100));
  const std::string text = c.get_text("train.prompt", "100");
  if (text == "infinite" || text == "inf") return 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != '\0' || v < 1)
    throw_invalid(ctx, "train.prompt", text, "a prompt length >= 1 or \"infinite\"");
  return static_cast<Index>(v);
}

void parse_data(Config& c, IclRunConfig& r) {
  const std::string ctx = c.name();
  const Index d = static_cast<Index>(c.get_int("data.d", 5));
  require(d >= 1 && d <= 1000, ctx, "data.d", d, "in [1, 1000]");
  const double rho = c.get_double("data.rho", 0.5);
  require(std::isfinite(rho) && std::abs(rho) < 1.0, ctx, "data.rho", rho, "in (-1, 1)");
  const std::string file = c.get_string("data.covariance_file", "");
  if (file.empty()) {
    r.data.cov = toeplitz_covariance(d, rho);
  } else {
    r.data.cov = load_covariance(file, ctx);
    require(r.data.cov.rows() == d && r.data.cov.cols() == d, ctx, "data.covariance_file shape",
            fmt::format("{} x {}", r.data.cov.rows(), r.data.cov.cols()),
            fmt::format("data.d x data.d = {} x {}", d, d));
  }
  r.data.noise = c.get_double("data.noise", 0.1);
  require(std::isfinite(r.data.noise) && r.data.noise >= 0.0, ctx, "data.noise", r.data.noise, ">= 0");
  r.data.prior = parse_task_prior(c.get_string("data.task_prior", "gaussian"), ctx + ": data");
  r.data.task_scale = c.get_double("data.task_scale", 1.0);
  require(std::isfinite(r.data.task_scale) && r.data.task_scale > 0.0, ctx, "data.task_scale",
          r.data.task_scale, "> 0");
  try {
    r.data.validate();
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(fmt::format("{}: [data] {}", ctx, e.what()));
  }
}

void parse_train(Config& c, IclRunConfig& r) {
  const std::string ctx = c.name();
  IclTrainOptions& t = r.train;
  t.model = parse_icl_model(c.get_string("model.kind", "softmax"), ctx + ": model");
  r.init_scale = c.get_double("model.init_scale", r.init_scale);
  require(std::isfinite(r.init_scale) && r.init_scale > 0.0, ctx, "model.init_scale", r.init_scale, "> 0");
  r.init_seed = static_cast<std::uint64_t>(c.get_int("model.seed", 0));
  t.prompt_length = parse_prompt(c);
  t.steps = c.get_int("train.steps", 1000);
  require(t.steps >= 1, ctx, "train.steps", t.steps, ">= 1");
  t.lr = c.get_double("train.lr", 0.01);
  require(std::isfinite(t.lr) && t.lr > 0.0, ctx, "train.lr", t.lr, "> 0");
  t.batch = static_cast<Index>(c.get_int("train.batch", 128));
  require(t.batch >= 1, ctx, "train.batch", t.batch, ">= 1");
  t.seed = static_cast<std::uint64_t>(c.get_int("train.seed", 0));
  t.log_every = c.get_int("train.log_every", 1);
  require(t.log_every >= 1, ctx, "train.log_every", t.log_every, ">= 1");
  t.method = parse_method(c.get_string("train.method", "rk4"), ctx + ": train");
  t.ode_dt = c.get_double("train.ode_dt", 0.0);
  require(std::isfinite(t.ode_dt) && t.ode_dt >= 0.0, ctx, "train.ode_dt", t.ode_dt, ">= 0 (0 = lr)");
  r.checkpoint_every = c.get_int("train.checkpoint_every", r.checkpoint_every);
  require(r.checkpoint_every >= 0, ctx, "train.checkpoint_every", r.checkpoint_every,
          ">= 0 (0 = no checkpoints)");
  r.eval_prompts = static_cast<Index>(c.get_int("eval.prompts", 2048));
  require(r.eval_prompts == 0 || r.eval_prompts >= 2, ctx, "eval.prompts", r.eval_prompts, "0 or >= 2");
}

}  // namespace

IclRunConfig parse_icl_config(Config& c) {
  IclRunConfig r;
  parse_data(c, r);
  parse_train(c, r);
  c.reject_unknown();
  // Refused before anything is allocated (C2/H3): one prompt (L, d + 2) per thread,
  // one d x d gradient per batch entry, one loss per evaluation prompt.
  const double d = static_cast<double>(r.data.cov.rows()), threads = num_threads();
  require_memory(c.name(), "train.prompt", fmt::format("{}", r.train.prompt_length),
                 threads * static_cast<double>(r.train.prompt_length) * (d + 2.0) * 8.0);
  require_memory(c.name(), "train.batch", fmt::format("{}", r.train.batch),
                 static_cast<double>(r.train.batch) * (d * d + 2.0) * 8.0);
  require_memory(c.name(), "eval.prompts", fmt::format("{}", r.eval_prompts),
                 static_cast<double>(r.eval_prompts) * 8.0);
  return r;
}

LargePromptRunConfig parse_largeprompt_config(Config& c) {
  const std::string ctx = c.name();
  LargePromptRunConfig r;
  ConcentrationOptions& o = r.options;
  o.law = parse_token_law(c.get_string("tokens.law", "gaussian"), ctx + ": tokens");
  o.dim = static_cast<Index>(c.get_int("tokens.dim", o.dim));
  require(o.dim >= 1 && o.dim <= 64, ctx, "tokens.dim", o.dim, "in [1, 64]");
  o.scale = c.get_double("tokens.scale", o.scale);
  require(std::isfinite(o.scale) && o.scale > 0.0, ctx, "tokens.scale", o.scale, "> 0");
  o.u_scale = c.get_double("operator.u_scale", o.u_scale);
  require(std::isfinite(o.u_scale) && o.u_scale >= 0.0, ctx, "operator.u_scale", o.u_scale, ">= 0");
  std::vector<double> def;
  for (const Index l : o.lengths) def.push_back(static_cast<double>(l));
  o.lengths.clear();
  for (const double l : c.get_doubles("experiment.lengths", def)) {
    require(l >= 1 && l == std::floor(l) && l <= 1e9, ctx, "experiment.lengths entry", l,
            "an integer >= 1");
    o.lengths.push_back(static_cast<Index>(l));
  }
  require(o.lengths.size() >= 3, ctx, "experiment.lengths size", o.lengths.size(),
          ">= 3 (a slope and its band)");
  o.prompts = static_cast<Index>(c.get_int("experiment.prompts", o.prompts));
  require(o.prompts >= 2, ctx, "experiment.prompts", o.prompts, ">= 2");
  o.queries = static_cast<Index>(c.get_int("experiment.queries", o.queries));
  require(o.queries >= 1, ctx, "experiment.queries", o.queries, ">= 1");
  o.seed = static_cast<std::uint64_t>(c.get_int("experiment.seed", 0));
  c.reject_unknown();
  // One prompt of the longest length (L, D) per thread.
  const Index longest = *std::max_element(o.lengths.begin(), o.lengths.end());
  require_memory(ctx, "experiment.lengths", fmt::format("[..., {}]", longest),
                 num_threads() * static_cast<double>(longest) * (static_cast<double>(o.dim) + 2.0) * 8.0);
  return r;
}

std::string default_icl_config_toml() {
  return R"(# attnflow icl: in-context linear regression with one attention layer.
# The mathematics: docs/math.md section 7.
# Tokens z_i = (x_i, y_i), x ~ N(0, S), y = <w, x> + noise; query (x_q, 0). Model: softmax
# (or linear) attention with U = [[A, 0], [0, 0]], V = [[0, 0], [0, b]]; the prediction is
# the last coordinate of the output. Risk = (1/2) E (prediction - <w, x_q>)^2.

[data]
d = 5                   # dimension of x
rho = 0.5               # S_ij = rho^|i-j| (0 = identity), unless covariance_file is given
covariance_file = ""    # a (d, d) symmetric positive definite S as .npy or .csv
noise = 0.1             # variance of the label noise on the prompt tokens
task_prior = "gaussian" # gaussian: w ~ N(0, task_scale^2 I) | sphere: |w| = task_scale sqrt(d)
task_scale = 1.0

[model]
kind = "softmax"        # softmax | linear (the comparison model (1/L) sum V z z^T U z_q)
init_scale = 0.1        # balanced start: A = alpha Theta Theta^T / |Theta Theta^T|_F, b = alpha
seed = 0                # seed of Theta

[train]
prompt = 100            # prompt length L, or "infinite": the infinite-prompt gradient flow ODE
steps = 1000            # SGD steps (infinite: the ODE is reported at t = step * lr)
lr = 0.01               # SGD learning rate (infinite: time per step)
batch = 128             # fresh prompts per SGD step
seed = 0                # prompt k of step s is drawn from Rng(seed).split(s * batch + k)
log_every = 1           # a risk.csv row every log_every steps (and the last)
method = "rk4"          # infinite prompt: euler | rk4 | dopri5
ode_dt = 0.0            # infinite prompt: integrator step (0 = lr)
checkpoint_every = 1000 # write DIR/checkpoint.bin every this many steps (0 = never); --resume

[eval]
prompts = 2048          # finite L: final risk on this many fresh prompts (0 = skip)
)";
}

std::string default_largeprompt_config_toml() {
  return R"(# attnflow largeprompt: concentration of softmax attention on long prompts (docs/math.md
# section 7). For each prompt length L, the mean squared error between the empirical-prompt
# operator T[mu_L](z) and the infinite-prompt operator T[mu](z) (outputs, and the per-query
# gradients in U and V), over prompts x queries, with the fitted log-log slope.

[tokens]
law = "gaussian"        # gaussian: N(0, scale^2 I) (T = V G U z) | rademacher: +-scale (T = V s tanh(s U z))
dim = 3                 # token dimension D
scale = 1.0

[operator]
u_scale = 1.0           # U = u_scale G / sqrt(D), V = G' / sqrt(D), G, G' standard normal (seeded)

[experiment]
lengths = [8, 32, 128, 512, 2048, 8192, 32768, 100000]
prompts = 32            # independent prompts per length
queries = 32            # queries z (from the token law) per prompt, shared by every length
seed = 0
)";
}

}  // namespace attnflow
