// run_ot_job: `attnflow ot` as a resumable job (include/attnflow/run/ot_run.hpp).
#include "attnflow/run/ot_run.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/io/npy.hpp"
#include "attnflow/run/checkpoint.hpp"
#include "attnflow/run/job.hpp"
#include "attnflow/run/reports.hpp"

namespace attnflow {

namespace {
const std::vector<std::string> kOtOutputs = {"f.npy", "g.npy", "plan.npy", "report.json"};
using Clock = std::chrono::steady_clock;
}  // namespace

OtRunSummary run_ot_job(const std::function<OtReport(const OtRequest&)>& solve, OtRequest request,
                        const OtRunOptions& opt) {
  const Collective* comm = opt.comm && opt.comm->size() > 1 ? opt.comm : nullptr;
  const bool writer = !comm || comm->writer();
  OtRunSummary s;
  std::optional<Job> job;
  int decision = 0;  // 0: start (over), 1: finished before, 2: continue from the checkpoint
  if (writer) {
    job.emplace(JobSpec{.kind = "ot", .out_dir = opt.out_dir, .version = opt.version, .resumable = true,
                        .resume = opt.resume, .outputs = kOtOutputs, .noun = "run", .marker = ""});
    decision = job->finished_before() ? 1 : job->has_checkpoint() ? 2 : 0;
  }
  if (comm) decision = std::stoi(comm->broadcast(std::to_string(decision)));  // a refusal on rank 0 stops all
  if (decision == 1) {
    s.already_finished = true;
    return s;
  }
  std::optional<SinkhornResumePoint> from;
  double seconds_before = 0.0;
  if (decision == 2) {
    // Every process reads it (across machines the directory is on a shared file system).
    OtCheckpoint ck = read_ot_checkpoint(opt.out_dir + "/checkpoint.bin");
    if (writer) job->require_same_config(ck.config, opt.fingerprint);
    from = SinkhornResumePoint{ck.iteration, std::move(ck.f), std::move(ck.g), ck.relaxed};
    seconds_before = ck.seconds;
  }
  if (comm) comm->check();  // every process is ready (or one failed, and every one stops)
  if (writer) job->start();

  Progress progress =
      writer ? job->progress(Progress::kOpenEnded, opt.progress) : Progress(Progress::kOpenEnded, "ot", nullptr);
  SinkhornOptions& sk = request.sinkhorn;
  sk.on_iteration = [&progress](int it, double eps, double err) {
    // NaN: not measured in this iteration (eps-scaling stages and the first iteration).
    progress.update(it, std::isnan(err) ? fmt::format("iteration {}, eps {:.3g}, marginal error not measured yet", it, eps)
                                        : fmt::format("iteration {}, eps {:.3g}, marginal error {:.3g}", it, eps, err));
  };
  sk.resume = from ? &*from : nullptr;
  const auto t0 = Clock::now();
  auto last = t0;
  sk.on_checkpoint = [&](const SinkhornIterate& it) {
    const int sig = static_cast<int>(comm ? comm->max(stop_signal()) : stop_signal());  // the same on every process
    const auto now = Clock::now();
    const bool write = sig != 0 || opt.checkpoint_every <= 0.0 ||
                       std::chrono::duration<double>(now - last).count() >= opt.checkpoint_every;
    bool stop = sig != 0;
    if (writer && write) {
      const double seconds = seconds_before + std::chrono::duration<double>(now - t0).count();
      write_ot_checkpoint(job->checkpoint(), {kCheckpointVersion, opt.fingerprint, it.iteration, seconds, it.f, it.g, it.relaxed});
      ++s.checkpoints;
      stop = stop || (opt.stop_after_checkpoints > 0 && s.checkpoints >= opt.stop_after_checkpoints);
    }
    if (write) last = now;
    s.signal = sig;
    return comm ? comm->max(stop ? 1 : 0) != 0 : stop;  // the test hook decides on rank 0
  };
  OtReport r = solve(request);
  if (r.interrupted) {
    s.interrupted = true;
    if (writer) job->keep();
    return s;
  }
  r.seconds += seconds_before;
  if (!writer) {
    s.report = std::move(r);
    return s;
  }
  const nlohmann::json report = ot_report_json(r, opt.version);
  write_npy(job->path("f.npy"), r.f);
  write_npy(job->path("g.npy"), r.g);
  if (r.has_plan) write_npy(job->path("plan.npy"), r.plan);
  write_file_atomic(job->path("report.json"), report.dump(2) + "\n");
  job->write_summary(report);
  job->commit();  // summary.json marks the solve finished; checkpoint.bin goes
  s.report = std::move(r);
  return s;
}

}  // namespace attnflow
