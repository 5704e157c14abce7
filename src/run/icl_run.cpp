// Runs `attnflow icl` and `attnflow largeprompt` and writes their output directories
// (icl_run.hpp). Every file is written atomically; results only after the computation, the
// training state in checkpoint.bin while it runs (--resume continues from it). A failed fresh
// run leaves no partial output; non-convergence and divergence are statuses in summary.json.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/run/checkpoint.hpp"
#include "attnflow/io/csv.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/run/icl_run.hpp"
#include "attnflow/run/job.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/run/progress.hpp"

namespace attnflow {

namespace {

using json = nlohmann::json;

json matrix_json(const Matrix& a) {
  json rows = json::array();
  for (Index i = 0; i < a.rows(); ++i) {
    json row = json::array();
    for (Index j = 0; j < a.cols(); ++j) row.push_back(a(i, j));
    rows.push_back(row);
  }
  return rows;
}

std::string risk_csv(const std::vector<IclStepRecord>& history) {
  std::ostringstream s;
  s << "step,time,risk,risk_infinite,b,a_norm,balance\n";
  for (const IclStepRecord& r : history)
    s << r.step << ',' << format_double(r.time) << ',' << format_double(r.risk) << ','
      << format_double(r.risk_infinite) << ',' << format_double(r.b) << ','
      << format_double(r.a_norm) << ',' << format_double(r.balance) << '\n';
  return s.str();
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

json icl_final_json(const IclRunConfig& c, const IclTrainResult& r, const IclRiskEstimate* eval) {
  const IclParams fp = icl_fixed_point(c.data.cov);
  const Index d = c.data.dim();
  const double residual = (r.params.b * c.data.cov * r.params.a - Matrix::Identity(d, d)).norm();
  json j{{"A", matrix_json(r.params.a)},
         {"b", r.params.b},
         {"risk_infinite", icl_infinite_risk(c.data, r.params)},
         {"bsa_minus_identity", residual},
         {"fixed_point", {{"A", matrix_json(fp.a)}, {"b", fp.b}}}};
  if (eval) j["risk_eval"] = {{"mean", eval->mean}, {"standard_error", eval->standard_error}};
  return j;
}

const std::vector<std::string> kIclOutputs = {"config.toml", "risk.csv", "final.json"};

bool icl_converged(const IclRunConfig& c, const IclTrainResult& r, double residual) {
  return r.finite && std::isfinite(residual) && residual < c.converged_tol;
}

json icl_summary_json(const IclRunConfig& c, const IclParams& init, const IclTrainResult& r,
                      const json& final_j, bool do_eval, const Job& job, double seconds) {
  const bool infinite = c.train.prompt_length == 0;
  const double residual = final_j["bsa_minus_identity"].get<double>();
  json summary = job.summary("finished");
  summary.update({{"model", to_string(c.train.model)},
               {"prompt", infinite ? json("infinite") : json(c.train.prompt_length)},
               {"steps", r.steps},
               {"finite", r.finite},
               {"diverged_step", r.finite ? json(nullptr) : json(r.diverged_step)},
               {"converged", icl_converged(c, r, residual)},
               {"converged_rule", fmt::format("finite and |b S A - I|_F < {}", c.converged_tol)},
               {"message", r.finite ? "ok" : r.message},
               {"risk_infinite", final_j["risk_infinite"]},
               {"bsa_minus_identity", residual},
               {"b", r.params.b},
               {"fixed_point_b", final_j["fixed_point"]["b"]},
               {"balance_start", init.a.squaredNorm() - init.b * init.b},
               {"balance_end", r.params.a.squaredNorm() - r.params.b * r.params.b},
               {"threads", num_threads()},
               {"seconds", seconds},
               {"files", {"config.toml", "risk.csv", "final.json", "summary.json"}}});
  if (!r.history.empty()) summary["risk_last_step"] = r.history.back().risk;
  if (do_eval) summary["risk_eval"] = final_j["risk_eval"];
  return summary;
}

// Trains from `start`, offering a checkpoint every c.checkpoint_every steps.
IclTrainResult train_with_checkpoints(const IclRunConfig& c, const std::string& resolved,
                                      const IclRunOptions& opt, const IclTrainState& start,
                                      const Job& job, IclRunSummary& s) {
  Progress progress = job.progress(static_cast<double>(c.train.steps), opt.quiet ? nullptr : stderr);
  auto report = [&](const IclStepRecord& r) {
    if (opt.quiet) return;
    progress.update(static_cast<double>(r.step),
                    fmt::format("step {} risk {:.4g} b {:.4f}", r.step, r.risk, r.b));
  };
  IclCheckpointHook hook;
  hook.every = c.checkpoint_every;
  hook.save = [&](const IclTrainState& state) {
    write_icl_checkpoint(job.checkpoint(), {kCheckpointVersion, resolved, state});
    ++s.checkpoints;
    s.signal = stop_signal();
    return s.signal == 0 && (opt.stop_after_checkpoints <= 0 || s.checkpoints < opt.stop_after_checkpoints);
  };
  hook.stop_now = [] { return stop_signal() != 0; };  // each step is a safe point
  const IclTrainResult r = icl_train(c.data, start, c.train, report, hook);
  if (!opt.quiet) progress.finish(fmt::format("{} steps", r.steps));
  return r;
}

// The evaluation, final.json and summary.json of a finished training; removes the checkpoint.
void finish_run(const IclRunConfig& c, const IclParams& init, const IclTrainResult& r,
                Job& job, double seconds, IclRunSummary& s) {
  const bool infinite = c.train.prompt_length == 0;
  IclRiskEstimate eval;
  const bool do_eval = !infinite && r.finite && c.eval_prompts > 0;
  // Evaluation prompts come from a stream the training never uses (seed + 2^32).
  if (do_eval)
    eval = icl_estimate_risk(c.data, c.train.model, r.params, c.train.prompt_length,
                             c.eval_prompts, c.train.seed + (std::uint64_t{1} << 32));
  const json final_j = icl_final_json(c, r, do_eval ? &eval : nullptr);
  const json summary = icl_summary_json(c, init, r, final_j, do_eval, job, seconds);
  write_file_atomic(job.path("risk.csv"), risk_csv(r.history));
  write_file_atomic(job.path("final.json"), final_j.dump(2) + "\n");
  job.write_summary(summary);
  job.commit();  // summary.json now marks the run finished; checkpoint.bin goes
  s.finished = true;
  s.finite = r.finite;
  s.diverged_step = r.diverged_step;
  s.converged = icl_converged(c, r, summary["bsa_minus_identity"].get<double>());
  s.message = r.finite ? "ok" : "icl: " + r.message;
  s.text = fmt::format("icl ({}, prompt {}): {} steps, infinite-prompt risk {:.6g}, b = {:.6f} "
                       "(fixed point b = {:.6f}), |bSA - I|_F = {:.3g}{}{}\n",
                       to_string(c.train.model), infinite ? "infinite" : std::to_string(c.train.prompt_length),
                       r.steps, final_j["risk_infinite"].get<double>(), r.params.b,
                       final_j["fixed_point"]["b"].get<double>(), summary["bsa_minus_identity"].get<double>(),
                       do_eval ? fmt::format(", risk at L = {}: {:.6g} +- {:.2g}",
                                             c.train.prompt_length, eval.mean, eval.standard_error)
                               : "",
                       r.finite ? "" : " [" + r.message + "]");
}

}  // namespace

IclRunSummary run_icl_job(const IclRunConfig& c, const std::string& resolved_toml,
                          const IclRunOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  Job job({.kind = "icl", .out_dir = opt.out_dir, .version = opt.version, .resumable = true,
           .resume = opt.resume, .outputs = kIclOutputs, .noun = "run", .marker = ""});
  IclRunSummary s;
  if (job.finished_before()) {
    s.already_finished = true;
    return s;
  }
  Rng init_rng(c.init_seed, 7);
  const IclParams init = icl_balanced_init(c.data.dim(), c.init_scale, init_rng);
  IclTrainState start = icl_initial_state(init);
  if (job.has_checkpoint()) {
    IclCheckpoint ck = read_icl_checkpoint(job.checkpoint());
    job.require_same_config(ck.config, resolved_toml);
    start = std::move(ck.state);
  }  // a resume without a checkpoint yet starts over
  job.start();
  write_file_atomic(job.path("config.toml"), resolved_toml);
  const IclTrainResult r = train_with_checkpoints(c, resolved_toml, opt, start, job, s);
  if (r.stopped) {
    s.interrupted = true;
    job.keep();
    return s;
  }
  finish_run(c, init, r, job, seconds_since(t0), s);
  return s;
}

IclRunSummary run_icl(const IclRunConfig& c, const std::string& resolved_toml,
                      const std::string& out_dir, const std::string& version, bool quiet) {
  IclRunOptions opt;
  opt.out_dir = out_dir;
  opt.version = version;
  opt.quiet = quiet;
  return run_icl_job(c, resolved_toml, opt);
}

IclRunSummary run_largeprompt(const LargePromptRunConfig& c, const std::string& resolved_toml,
                              const std::string& out_dir, const std::string& version, bool quiet) {
  const auto t0 = std::chrono::steady_clock::now();
  Job job({.kind = "largeprompt", .out_dir = out_dir, .version = version, .resumable = false, .resume = false,
           .outputs = {"config.toml", "concentration.csv"}, .noun = "run", .marker = ""});
  const ConcentrationOptions& o = c.options;
  Progress progress = job.progress(static_cast<double>(o.lengths.size()), quiet ? nullptr : stderr);
  auto report = [&](const ConcentrationRow& row, Index done, Index) {
    progress.update(static_cast<double>(done),
                    fmt::format("L = {} output_error {:.3g}", row.length, row.output_error));
  };
  const ConcentrationResult r = concentration(o, report);
  progress.finish(fmt::format("{} lengths", r.rows.size()));
  // No iterative solver here: the status is whether every estimate is finite (a non-finite
  // one is named, never written as if it were a result).
  std::string bad;
  for (const ConcentrationRow& w : r.rows)
    for (const auto& [name, v] : {std::pair<const char*, double>{"output_error", w.output_error},
                                  {"grad_u_error", w.grad_u_error}, {"grad_v_error", w.grad_v_error}})
      if (bad.empty() && !std::isfinite(v)) bad = fmt::format("{} = {} at L = {}", name, v, w.length);
  const bool finite = bad.empty();
  Matrix table(static_cast<Index>(r.rows.size()), 7);
  for (size_t k = 0; k < r.rows.size(); ++k) {
    const ConcentrationRow& w = r.rows[k];
    table.row(static_cast<Index>(k)) << static_cast<double>(w.length), w.output_error,
        w.grad_u_error, w.grad_v_error, w.output_se, w.grad_u_se, w.grad_v_se;
  }
  auto fit_json = [](const SlopeFit& f) {
    return json{{"slope", f.slope}, {"lower", f.lower}, {"upper", f.upper},
                {"standard_error", f.standard_error}, {"intercept", f.intercept},
                {"points", f.points}, {"band", "95% (Student t on the log-log residuals)"}};
  };
  json summary = job.summary("finished");
  summary.update({{"law", to_string(o.law)},
                  {"dim", o.dim},
                  {"scale", o.scale},
                  {"u_scale", o.u_scale},
                  {"prompts", o.prompts},
                  {"queries", o.queries},
                  {"finite", finite},
                  {"converged", finite},
                  {"converged_rule", "no iterative solver: every estimate finite"},
                  {"message", finite ? std::string("ok") : "non-finite estimate: " + bad},
                  {"slopes", {{"output_error", fit_json(r.output)},
                              {"grad_u_error", fit_json(r.grad_u)},
                              {"grad_v_error", fit_json(r.grad_v)}}},
                  {"threads", num_threads()},
                  {"seconds", seconds_since(t0)},
                  {"files", {"config.toml", "concentration.csv", "summary.json"}}});
  job.start();
  write_file_atomic(job.path("config.toml"), resolved_toml);
  write_csv(job.path("concentration.csv"), table,
            {"L", "output_error", "grad_u_error", "grad_v_error", "output_se", "grad_u_se",
             "grad_v_se"});
  job.write_summary(summary);
  job.commit();
  IclRunSummary s;
  s.finished = true;
  s.finite = s.converged = finite;
  s.message = finite ? "ok" : "largeprompt: non-finite estimate: " + bad;
  s.text = fmt::format(
      "largeprompt ({} tokens, D = {}): log-log slopes output {:.3f} [{:.3f}, {:.3f}], "
      "grad_u {:.3f} [{:.3f}, {:.3f}], grad_v {:.3f} [{:.3f}, {:.3f}]\n",
      to_string(o.law), o.dim, r.output.slope, r.output.lower, r.output.upper, r.grad_u.slope,
      r.grad_u.lower, r.grad_u.upper, r.grad_v.slope, r.grad_v.lower, r.grad_v.upper);
  return s;
}

}  // namespace attnflow
