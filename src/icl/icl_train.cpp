// Training the in-context regression models (docs/math.md section 7): mini-batch SGD on fresh
// prompts (finite L), or the infinite-prompt gradient flow solved with the shared
// integrators. Prompt k of step s is drawn from its own stream Rng(seed, 0).split(s B + k)
// and per-prompt gradients are summed in prompt order, so training is bit-identical on any
// number of threads. Training can start from a saved IclTrainState and offers its state to a
// checkpoint hook every N steps (the run layer writes the files; nothing here does).
#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <vector>

#include "attnflow/base/error.hpp"
#include "attnflow/icl/icl.hpp"
#include "attnflow/base/limits.hpp"
#include "attnflow/base/parallel.hpp"

namespace attnflow {

namespace {
constexpr const char* kIclTrainCtx = "icl";

IclStepRecord make_record(const IclData& data, const IclParams& p, long step, double lr,
                          double risk) {
  IclStepRecord r;
  r.step = step;
  r.time = static_cast<double>(step) * lr;
  r.risk = risk;
  r.risk_infinite = icl_infinite_risk(data, p);
  r.b = p.b;
  r.a_norm = p.a.norm();
  r.balance = p.a.squaredNorm() - p.b * p.b;
  return r;
}

bool should_log(long step, long steps, long every) { return step % every == 0 || step == steps; }

// Divergence is a status, never a silent NaN: the first non-finite quantity ends training,
// named with its step (the records logged so far are all finite).
bool record_finite(const IclStepRecord& r) {
  return std::isfinite(r.risk) && std::isfinite(r.risk_infinite) && std::isfinite(r.b) &&
         std::isfinite(r.a_norm) && std::isfinite(r.balance);
}
void diverged(IclTrainResult& res, long step, double lr, const char* what) {
  res.finite = false;
  res.diverged_step = step;
  res.message = fmt::format("training diverged at step {}: {} became non-finite (lr = {} is too large)",
                            step, what, lr);
}

// Batch risk and mean gradient over the prompts of one SGD step.
struct BatchResult {
  double risk = 0.0;
  Matrix grad_a;
  double grad_b = 0.0;
};

BatchResult batch_gradient(const IclSampler& sampler, const IclParams& params,
                           const IclTrainOptions& o, long step) {
  const Index n = o.batch, d = sampler.data().dim();
  std::vector<double> loss(n), gb(n);
  std::vector<Matrix> ga(n);
  const Rng base(o.seed, 0);
  ParallelErrors errors;  // an exception (bad_alloc) must not leave the region
#pragma omp parallel num_threads(num_threads())
  {
    IclPrompt pr;  // per-thread buffers, reused by every prompt of the thread
#pragma omp for schedule(static)
    for (Index k = 0; k < n; ++k) {
      errors.run(k, [&] {
        Rng rng = base.split(static_cast<std::uint64_t>(step) * n + k);
        sampler.sample_into(o.prompt_length, rng, pr);
        const IclPrediction pred = icl_predict(o.model, params, pr, true);
        const double r = pred.value - pr.target;
        loss[k] = 0.5 * r * r;
        gb[k] = r * pred.grad_b;
        ga[k] = r * pred.grad_a;
      });
    }
  }
  errors.rethrow();
  BatchResult out;
  out.grad_a = Matrix::Zero(d, d);
  for (Index k = 0; k < n; ++k) {  // fixed order: thread-count independent
    out.risk += loss[k];
    out.grad_b += gb[k];
    out.grad_a += ga[k];
  }
  out.risk /= n;
  out.grad_b /= n;
  out.grad_a /= n;
  return out;
}

// Offers the state to the hook after `taken` steps (not after the last); false = stop.
bool keep_going(const IclCheckpointHook& hook, long taken, long total,
                const std::function<IclTrainState()>& state) {
  if (!hook.save || taken <= 0 || taken >= total) return true;
  if (hook.stop_now && hook.stop_now()) {
    hook.save(state());
    return false;
  }
  if (hook.every <= 0 || taken % hook.every != 0) return true;
  return hook.save(state());
}

IclTrainResult train_sgd(const IclData& data, const IclTrainState& start, const IclTrainOptions& o,
                         const IclProgress& progress, const IclCheckpointHook& hook) {
  const IclSampler sampler(data);
  IclTrainResult res;
  res.params = start.params;
  res.history = start.history;
  res.steps = start.step;
  for (long step = start.step; step < o.steps; ++step) {
    const BatchResult br = batch_gradient(sampler, res.params, o, step);
    if (!std::isfinite(br.risk) || !br.grad_a.allFinite() || !std::isfinite(br.grad_b)) {
      diverged(res, step, o.lr, "the mini-batch risk or its gradient");
      break;
    }
    if (should_log(step, o.steps - 1, o.log_every)) {
      const IclStepRecord rec = make_record(data, res.params, step, o.lr, br.risk);
      if (!record_finite(rec)) {
        diverged(res, step, o.lr, "the infinite-prompt risk");
        break;
      }
      res.history.push_back(rec);
      if (progress) progress(res.history.back());
    }
    IclParams next{res.params.a - o.lr * br.grad_a, res.params.b - o.lr * br.grad_b};
    if (!next.a.allFinite() || !std::isfinite(next.b) || !std::isfinite(icl_infinite_risk(data, next))) {
      diverged(res, step, o.lr, "the parameters (A, b) or their risk");
      break;
    }
    res.params = std::move(next);
    res.steps = step + 1;
    const auto state = [&] { return IclTrainState{step + 1, res.params, {}, res.history}; };
    if (!keep_going(hook, step + 1, o.steps, state)) {
      res.stopped = true;
      break;
    }
  }
  return res;
}

IclTrainResult train_ode(const IclData& data, const IclTrainState& start, const IclTrainOptions& o,
                         const IclProgress& progress, const IclCheckpointHook& hook) {
  const Ode ode = icl_flow_ode(data);
  IntegratorOptions io;
  io.method = o.method;
  io.dt = o.ode_dt > 0.0 ? o.ode_dt : o.lr;
  io.validate();
  Matrix x = icl_pack(start.params);
  IntegratorState st = start.integrator;
  IclTrainResult res;
  res.params = start.params;
  res.history = start.history;
  res.steps = std::max(start.step - 1, 0L);
  const Index d = data.dim();
  for (long step = start.step; step <= o.steps; ++step) {
    if (step > 0) {
      try {
        advance(ode, x, st, static_cast<double>(step) * o.lr, io);
      } catch (const std::runtime_error&) {  // the integrator's state overflowed (integrate.cpp)
        diverged(res, step, o.lr, "the ODE state (A, b)");
        break;
      }
    }
    const IclParams p = icl_unpack(x, d);
    if (!p.a.allFinite() || !std::isfinite(p.b)) {
      diverged(res, step, o.lr, "the parameters (A, b)");
      break;
    }
    const IclStepRecord rec = make_record(data, p, step, o.lr, icl_infinite_risk(data, p));
    if (!record_finite(rec)) {
      diverged(res, step, o.lr, "the infinite-prompt risk");
      break;
    }
    res.params = p;
    res.steps = step;
    if (should_log(step, o.steps, o.log_every)) {
      res.history.push_back(rec);
      if (progress) progress(res.history.back());
    }
    const auto state = [&] { return IclTrainState{step + 1, res.params, st, res.history}; };
    if (!keep_going(hook, step, o.steps, state)) {
      res.stopped = true;
      break;
    }
  }
  return res;
}
}  // namespace

void IclTrainOptions::validate() const {
  require(prompt_length >= 0, kIclTrainCtx, "prompt_length", prompt_length, ">= 1 (or 0 = infinite)");
  require(steps >= 1, kIclTrainCtx, "steps", steps, ">= 1");
  require(std::isfinite(lr) && lr > 0.0, kIclTrainCtx, "lr", lr, "> 0");
  require(batch >= 1, kIclTrainCtx, "batch", batch, ">= 1");
  require(log_every >= 1, kIclTrainCtx, "log_every", log_every, ">= 1");
  require(std::isfinite(ode_dt) && ode_dt >= 0.0, kIclTrainCtx, "ode_dt", ode_dt, ">= 0 (0 = lr)");
}

IclTrainState icl_initial_state(const IclParams& init) {
  IclTrainState s;
  s.params = init;
  return s;
}

IclTrainResult icl_train(const IclData& data, const IclParams& init,
                         const IclTrainOptions& options, const IclProgress& progress) {
  return icl_train(data, icl_initial_state(init), options, progress, {});
}

IclTrainResult icl_train(const IclData& data, const IclTrainState& start,
                         const IclTrainOptions& options, const IclProgress& progress,
                         const IclCheckpointHook& checkpoint) {
  data.validate();
  options.validate();
  const Index d = data.dim();
  const IclParams& init = start.params;
  require(init.a.rows() == d && init.a.cols() == d, kIclTrainCtx, "initial A shape",
          fmt::format("{} x {}", init.a.rows(), init.a.cols()), fmt::format("{} x {}", d, d));
  require(init.a.allFinite() && std::isfinite(init.b), kIclTrainCtx, "initial parameters",
          "(non-finite)", "finite");
  const bool infinite = options.prompt_length == 0;
  const long last = infinite ? options.steps + 1 : options.steps;
  require(start.step >= 0 && start.step <= last, kIclTrainCtx, "start step", start.step,
          fmt::format("in [0, {}] (train.steps = {})", last, options.steps));
  require(checkpoint.every >= 0, kIclTrainCtx, "checkpoint every", checkpoint.every, ">= 0 (0 = never)");
  if (infinite) return train_ode(data, start, options, progress, checkpoint);
  // Refused before allocating (C2/H3): one prompt (L, d + 1) per thread and one
  // d x d gradient per batch entry.
  const double dd = static_cast<double>(d), threads = num_threads();
  require_memory(kIclTrainCtx, "prompt_length", fmt::format("{}", options.prompt_length),
                 threads * static_cast<double>(options.prompt_length) * (dd + 2.0) * 8.0);
  require_memory(kIclTrainCtx, "batch", fmt::format("{}", options.batch),
                 static_cast<double>(options.batch) * (dd * dd + 2.0) * 8.0);
  return train_sgd(data, start, options, progress, checkpoint);
}

IclRiskEstimate icl_estimate_risk(const IclData& data, IclModel model, const IclParams& params,
                                  Index length, Index prompts, std::uint64_t seed) {
  require(length >= 1, kIclTrainCtx, "prompt_length", length, ">= 1");
  require(prompts >= 2, kIclTrainCtx, "eval prompts", prompts, ">= 2");
  require_memory(kIclTrainCtx, "prompt_length", fmt::format("{}", length),
                 num_threads() * static_cast<double>(length) * (static_cast<double>(data.dim()) + 2.0) * 8.0);
  require_memory(kIclTrainCtx, "eval prompts", fmt::format("{}", prompts), static_cast<double>(prompts) * 8.0);
  const IclSampler sampler(data);
  std::vector<double> loss(prompts);
  const Rng base(seed, 0);
  ParallelErrors errors;
#pragma omp parallel num_threads(num_threads())
  {
    IclPrompt pr;
#pragma omp for schedule(static)
    for (Index k = 0; k < prompts; ++k) {
      errors.run(k, [&] {
        Rng rng = base.split(static_cast<std::uint64_t>(k));
        sampler.sample_into(length, rng, pr);
        const double r = icl_predict(model, params, pr, false).value - pr.target;
        loss[k] = 0.5 * r * r;
      });
    }
  }
  errors.rethrow();
  double sum = 0.0, sum_sq = 0.0;
  for (const double l : loss) {
    sum += l;
    sum_sq += l * l;
  }
  IclRiskEstimate e;
  e.mean = sum / prompts;
  const double var = (sum_sq / prompts - e.mean * e.mean) * prompts / (prompts - 1.0);
  e.standard_error = std::sqrt(std::max(var, 0.0) / prompts);
  return e;
}

}  // namespace attnflow
