// Running a sweep: validate every point, run the unfinished ones in parallel (one kernel
// thread each), then assemble the tidy table from the points' observables.csv.
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <filesystem>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>
#include <thread>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/io/config.hpp"
#include "attnflow/base/collective.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/run/job.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/run/progress.hpp"
#include "attnflow/run/runner.hpp"
#include "attnflow/run/start_cache.hpp"
#include "attnflow/run/sweep.hpp"

namespace attnflow {

namespace {

namespace fs = std::filesystem;

struct Point {
  Index index = 0;
  std::string dir, label;  // label: "model.beta=4, measure.seed=1"
  RunConfig cfg;
  std::string resolved;
  bool done = false;  // finished before this call
};

std::vector<Point> prepare_points(const SweepGrid& g, const std::string& out) {
  std::vector<Point> points;
  for (Index p = 0; p < g.size(); ++p) {
    Point pt;
    pt.index = p;
    pt.dir = fmt::format("{}/points/point_{:06d}", out, p);
    const auto c = g.coordinates(p);
    for (std::size_t a = 0; a < g.axes.size(); ++a)
      pt.label += fmt::format("{}{}={}", a ? ", " : "", g.axes[a].key, g.axes[a].labels[c[a]]);
    Config cfg = Config::parse(g.base, fmt::format("{} [sweep point {}: {}]", g.name, p, pt.label));
    for (std::size_t a = 0; a < g.axes.size(); ++a) cfg.set(g.axes[a].key + "=" + g.axes[a].values[c[a]]);
    pt.cfg = parse_run_config(cfg);  // every point is validated before anything runs
    pt.resolved = cfg.resolved();
    points.push_back(std::move(pt));
  }
  return points;
}

// RFC 4180 quoting for labels that need it (strings with commas or quotes).
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

// sweep.csv: point, the grid keys, then every column of the points' observables.csv.
void write_tidy(const SweepGrid& g, const std::vector<Point>& points, const std::string& path) {
  std::string out = "point";
  for (const auto& a : g.axes) out += "," + csv_field(a.key);
  for (const auto& c : observable_columns()) out += "," + c;
  out += '\n';
  for (const Point& p : points) {
    std::string prefix = std::to_string(p.index);
    const auto c = g.coordinates(p.index);
    for (std::size_t a = 0; a < g.axes.size(); ++a) prefix += "," + csv_field(g.axes[a].labels[c[a]]);
    const std::string text = read_file(p.dir + "/observables.csv");
    std::size_t pos = text.find('\n') + 1;  // skip the header
    while (pos < text.size()) {
      const std::size_t end = text.find('\n', pos);
      out += prefix + "," + text.substr(pos, end - pos) + "\n";
      pos = end == std::string::npos ? text.size() : end + 1;
    }
  }
  write_file_atomic(path, out);
}

// sweep_ensemble.csv (ensemble points): point, the grid keys, then ensemble.csv's columns
// (t, statistic, observables), from every point's ensemble.csv.
void write_tidy_ensemble(const SweepGrid& g, const std::vector<Point>& points, const std::string& path) {
  if (points.empty() || !fs::exists(points[0].dir + "/ensemble.csv")) return;
  std::string out;
  for (const Point& p : points) {
    std::string prefix = std::to_string(p.index);
    const auto c = g.coordinates(p.index);
    for (std::size_t a = 0; a < g.axes.size(); ++a) prefix += "," + csv_field(g.axes[a].labels[c[a]]);
    const std::string text = read_file(p.dir + "/ensemble.csv");
    std::size_t pos = text.find('\n') + 1;
    if (out.empty()) {
      out = "point";
      for (const auto& a : g.axes) out += "," + csv_field(a.key);
      out += "," + text.substr(0, pos);
    }
    while (pos < text.size()) {
      const std::size_t end = text.find('\n', pos);
      out += prefix + "," + text.substr(pos, end - pos) + "\n";
      pos = end == std::string::npos ? text.size() : end + 1;
    }
  }
  write_file_atomic(path, out);
}

void write_grid(const SweepGrid& g, const std::string& path) {
  std::string out = "point";
  for (const auto& a : g.axes) out += "," + csv_field(a.key);
  out += '\n';
  for (Index p = 0; p < g.size(); ++p) {
    out += std::to_string(p);
    const auto c = g.coordinates(p);
    for (std::size_t a = 0; a < g.axes.size(); ++a) out += "," + csv_field(g.axes[a].labels[c[a]]);
    out += '\n';
  }
  write_file_atomic(path, out);
}

// Restores the kernel's thread count when the sweep ends (points run one kernel thread each).
struct ThreadScope {
  int saved;
  explicit ThreadScope(int t) : saved(num_threads()) { set_num_threads(t); }
  ~ThreadScope() { set_num_threads(saved); }
};

}  // namespace
}  // namespace attnflow

namespace attnflow {

namespace {

struct Shared {
  std::atomic<std::size_t> next{0};
  std::atomic<long> finished{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::exception_ptr error;
  StartCache starts;
};

// Runs points todo[next...] until none is left, the stop hook fires, or a point fails.
void worker(const std::vector<Point*>& todo, const SweepOptions& opt, Shared& sh, Progress& progress,
            Index total, SweepResult& res) {
  for (;;) {
    const std::size_t i = sh.next++;
    if (i >= todo.size() || sh.stop) return;
    const Point& p = *todo[i];
    RunOptions ro;
    ro.out_dir = p.dir;
    ro.resume = true;  // a half-done point continues (from its checkpoint, if any)
    ro.progress = nullptr;
    ro.version = opt.version;
    ro.starts = &sh.starts;  // points that share their measure and seed share their start
    const bool kill = opt.stop_after_points > 0 && sh.finished >= opt.stop_after_points;
    if (kill) ro.stop_after_checkpoints = 1;
    try {
      const RunResult r = run_experiment(p.cfg, p.resolved, ro);
      std::lock_guard<std::mutex> lock(sh.mu);
      ++res.ran;
      if (kill) sh.stop = true;
      if (r.interrupted) {
        res.interrupted = true;
        if (r.signal != 0) sh.stop = true;  // a stop request: every point checkpoints and returns
      }
      if (!r.finished && !r.already_finished) continue;
      const long done = ++sh.finished;
      progress.update(static_cast<double>(done + res.skipped),
                      fmt::format("point {}/{} ({}) done", p.index + 1, total, p.label));
    } catch (...) {
      std::lock_guard<std::mutex> lock(sh.mu);
      if (!sh.error) sh.error = std::current_exception();
      sh.stop = true;
      return;
    }
  }
}

// The points whose summary.json does not say "converged": true (Sinkhorn normalizations that
// missed their tolerance), by index: the sweep is converged only when every point is.
std::vector<Index> unconverged_points(const std::vector<Point>& points) {
  std::vector<Index> out;
  for (const Point& p : points) {
    const auto j = nlohmann::json::parse(read_file(p.dir + "/summary.json"), nullptr, false);
    if (j.is_discarded() || !j.value("converged", false)) out.push_back(p.index);
  }
  return out;
}

nlohmann::json sweep_summary(const SweepGrid& g, const SweepResult& r, const Job& job,
                             const std::vector<Index>& unconverged) {
  nlohmann::json axes = nlohmann::json::object(), order = nlohmann::json::array();
  for (const auto& a : g.axes) {
    axes[a.key] = a.labels;
    order.push_back(a.key);  // a JSON object has no order: the grid's axis order, first = plotted
  }
  nlohmann::json j = job.summary("finished");
  j.update({{"finished", true}, {"converged", unconverged.empty()}, {"unconverged_points", unconverged},
            {"message", unconverged.empty() ? std::string("ok")
                                            : fmt::format("{} of {} points did not converge (their "
                                                          "summary.json says why)", unconverged.size(), r.points)},
            {"points", r.points}, {"axes", axes}, {"axis_order", order}, {"ran", r.ran},
            {"skipped", r.skipped}, {"table", "sweep.csv"}, {"grid", "grid.csv"},
            {"point_dirs", "points/point_NNNNNN"}, {"seconds", r.seconds}});
  return j;
}

}  // namespace

SweepResult run_sweep(const SweepGrid& g, const SweepOptions& opt) {
  const auto start = std::chrono::steady_clock::now();
  require(!opt.out_dir.empty(), "sweep", "out_dir", "\"\"", "a directory path");
  std::vector<Point> points = prepare_points(g, opt.out_dir);  // throws before writing anything
  // [compute] is the same at every point (sweep_grid.cpp refuses compute.* axes): set the
  // process-wide device once, before anything is written (a missing GPU fails here).
  if (!points.empty()) apply_compute(points[0].cfg.device, points[0].cfg.precision);
  // Distributed (collective.hpp): rank 0 owns the sweep directory and the tables; every rank
  // runs its share of the unfinished points in their own directories.
  const Collective* comm = opt.comm && opt.comm->size() > 1 ? opt.comm : nullptr;
  std::optional<Job> job;
  if (!comm || comm->writer()) {
    job.emplace(JobSpec{.kind = "sweep", .out_dir = opt.out_dir, .version = opt.version, .resumable = true,
                        .resume = opt.resume,
                        .outputs = {"points", "base.toml", "grid.csv", "sweep.csv", "sweep_ensemble.csv"},
                        .noun = "sweep", .marker = ""});
    job->start();
    ensure_directory(job->path("points"));
    write_file_atomic(job->path("base.toml"), g.base);
    write_grid(g, job->path("grid.csv"));
  }
  SweepResult res;
  res.points = g.size();
  // Which points are finished: rank 0 decides for every rank (a rank looking later would see
  // points that others finished meanwhile, and split the rest differently).
  std::string done;
  if (job)
    for (const Point& p : points) done += summary_finished(p.dir) ? '1' : '0';
  if (comm) done = comm->broadcast(done);  // also: the directory exists, or rank 0 failed
  std::vector<Point*> todo;
  for (Point& p : points) {
    p.done = done[static_cast<std::size_t>(p.index)] == '1';
    if (p.done) ++res.skipped;
    else todo.push_back(&p);
  }
  if (comm) {  // round robin over the unfinished points
    std::vector<Point*> mine;
    for (std::size_t i = 0; i < todo.size(); ++i)
      if (static_cast<int>(i % static_cast<std::size_t>(comm->size())) == comm->rank()) mine.push_back(todo[i]);
    todo = std::move(mine);
  }
  Progress progress = job ? job->progress(static_cast<double>(res.points), opt.progress, -1, 1.0)
                          : Progress(static_cast<double>(res.points), "sweep", nullptr);
  const int jobs = std::max(1, std::min(opt.jobs > 0 ? opt.jobs : num_threads(), static_cast<int>(todo.size())));
  {
    // Several points at once: each runs the kernel on one thread (results do not depend on it).
    ThreadScope scope(jobs > 1 ? 1 : num_threads());
    Shared sh;
    std::vector<std::thread> threads;
    for (int j = 1; j < jobs; ++j)
      threads.emplace_back([&] { worker(todo, opt, sh, progress, res.points, res); });
    worker(todo, opt, sh, progress, res.points, res);
    for (auto& t : threads) t.join();
    if (sh.error) std::rethrow_exception(sh.error);
    if (sh.stop) res.interrupted = true;  // only the test hook or a stop request stop a sweep
    if (stop_signal() != 0) res.interrupted = true;
  }
  res.signal = stop_signal();
  if (comm) {  // every rank's points ran (or one rank failed: PeerFailed here)
    res.ran = comm->sum(static_cast<long>(res.ran));
    res.interrupted = comm->max(res.interrupted ? 1 : 0) != 0;
    res.signal = static_cast<int>(comm->max(res.signal));
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (res.interrupted) {
    if (job) job->keep();
    return res;
  }
  if (!job) {
    res.finished = true;
    return res;
  }
  write_tidy(g, points, job->path("sweep.csv"));
  write_tidy_ensemble(g, points, job->path("sweep_ensemble.csv"));
  job->write_summary(sweep_summary(g, res, *job, unconverged_points(points)));
  job->commit();
  progress.finish(fmt::format("{} points ({} run, {} already done)", res.points, res.ran, res.skipped));
  res.finished = true;
  return res;
}

}  // namespace attnflow
