// The `attnflow fit` job and model files (fit_run.hpp).
#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/io/csv.hpp"
#include "attnflow/run/fit_run.hpp"
#include "attnflow/run/job.hpp"
#include "attnflow/base/parallel.hpp"

namespace attnflow {

void save_model(const std::string& path, const Model& model) {
  write_file_atomic(path, model_to_bytes(model));
}

Model load_model(const std::string& path) { return model_from_bytes(read_file(path), path); }

namespace {

nlohmann::json summary_json(const FitConfig& cfg, const FitRunResult& r, const Job& job) {
  const FitResult& f = r.fit;
  nlohmann::json j = job.summary(f.finite ? "finished" : "diverged");
  j.update({{"converged", f.finite && f.sinkhorn.converged()},
          {"message", !f.message.empty() ? f.message : f.sinkhorn.message},
          {"sinkhorn_solves", f.sinkhorn.solves},
          {"sinkhorn_not_converged", f.sinkhorn.not_converged},
          {"iterations", f.steps},
          {"steps", f.steps},
          {"task", to_string(cfg.task.kind)},
          {"normalization", to_string(cfg.model.normalization)},
          {"depth", cfg.model.depth},
          {"heads", cfg.model.heads},
          {"mlp_hidden", cfg.model.mlp_hidden},
          {"parameters", r.parameters},
          {"final_train_loss", f.final_train_loss},
          {"final_test_loss", f.final_test_loss},
          {"identity_train_loss", f.identity_train_loss},
          {"identity_test_loss", f.identity_test_loss},
          {"relative_test_loss", f.final_test_loss / f.identity_test_loss},
          {"seconds", r.seconds},
          {"threads", num_threads()},
          {"files", {"config.toml", "loss.csv", "model.afm", "summary.json"}}});
  return j;
}

}  // namespace

FitRunResult run_fit(const FitConfig& cfg, const std::string& resolved_toml, const std::string& out_dir,
                     const std::string& version, std::FILE* progress_out) {
  const auto t0 = std::chrono::steady_clock::now();
  Job job({.kind = "fit", .out_dir = out_dir, .version = version, .resumable = false, .resume = false,
           .outputs = {"config.toml", "loss.csv", "model.afm"}, .noun = "run", .marker = ""});
  const TaskData data = make_task(cfg.task);
  Rng rng(cfg.model_seed, 0x6d6f64656c);  // "model": the initialization stream
  Model model = random_model(cfg.model, rng);
  FitRunResult r;
  r.parameters = model.parameter_count();
  Progress progress = job.progress(static_cast<double>(cfg.fit.steps > 0 ? cfg.fit.steps : 1), progress_out);
  r.fit = fit_model(model, data.train, data.test, cfg.fit, [&](const FitRecord& rec) {
    progress.update(static_cast<double>(rec.step),
                    fmt::format("step {} train {:.4g} test {:.4g}", rec.step, rec.train_loss, rec.test_loss));
  });
  progress.finish(fmt::format("{} steps", r.fit.steps));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Outputs only after success, staged and committed: a failed fit leaves nothing behind.
  job.start();
  Matrix loss(static_cast<Index>(r.fit.history.size()), 3);
  for (size_t i = 0; i < r.fit.history.size(); ++i) {
    const auto& h = r.fit.history[i];
    loss.row(static_cast<Index>(i)) << static_cast<double>(h.step), h.train_loss, h.test_loss;
  }
  write_file_atomic(job.path("config.toml"), resolved_toml);
  write_csv(job.path("loss.csv"), loss, {"step", "train_loss", "test_loss"});
  save_model(job.path("model.afm"), model);
  job.write_summary(summary_json(cfg, r, job));
  job.commit();
  return r;
}

}  // namespace attnflow
