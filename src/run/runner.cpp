// The experiment runner: schedule of observations, ensemble loop, output directory, checkpoints.
#include "attnflow/runner.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>

#include "attnflow/atomic_file.hpp"
#include "attnflow/checkpoint.hpp"
#include "attnflow/error.hpp"
#include "attnflow/npy.hpp"
#include "attnflow/parallel.hpp"
#include "attnflow/progress.hpp"
#include "attnflow/sample.hpp"
#include "observables_csv.hpp"
#include "run_model.hpp"

namespace attnflow {

namespace fs = std::filesystem;

std::vector<std::string> observable_names() { return detail::observable_names(); }

std::vector<std::string> observable_columns() {
  std::vector<std::string> c{"t", "system"};
  for (auto& n : detail::observable_names()) c.push_back(n);
  return c;
}

namespace {

// Observation k is at k * every (by multiplication, never accumulated) for k < last, and the
// last one is exactly t_end. The 1e-9 slack keeps t_end = 15, every = 0.1 at 150 intervals.
std::int64_t last_observation(const RunConfig& c) {
  return static_cast<std::int64_t>(std::ceil(c.t_end / c.every - 1e-9));
}
double observation_time(const RunConfig& c, std::int64_t k) {
  return k >= last_observation(c) ? c.t_end : static_cast<double>(k) * c.every;
}

Matrix read_initial_file(const RunConfig& cfg, Index system) {
  const NpyArray a = read_npy(cfg.file);
  const auto& s = a.shape;
  const bool ok2 = s.size() == 2 && s[0] == cfg.n && s[1] == cfg.d;
  const bool ok3 = s.size() == 3 && s[0] == cfg.systems && s[1] == cfg.n && s[2] == cfg.d;
  if (!ok2 && !ok3)
    throw_invalid("run", "measure.file", cfg.file,
                  fmt::format("an .npy of shape ({}, {}) or ({}, {}, {}) (measure.systems, n, d)", cfg.n, cfg.d,
                              cfg.systems, cfg.n, cfg.d));
  Matrix x(cfg.n, cfg.d);
  const std::size_t off = ok3 ? static_cast<std::size_t>(system * cfg.n * cfg.d) : 0;
  std::copy_n(a.data.data() + off, x.size(), x.data());
  require_finite("run: measure.file", cfg.file, x);
  return x;
}

// Row-normalizes onto the sphere; a zero row cannot be placed on it.
void to_sphere(Matrix& x) {
  for (Index i = 0; i < x.rows(); ++i) {
    const double r = x.row(i).norm();
    require(r > 0.0, "run: initial measure", fmt::format("|x_{}|", i), r, "> 0 to lie on the sphere");
    x.row(i) /= r;
  }
}

struct RunState {
  std::vector<Matrix> x;
  std::vector<IntegratorState> st;
  std::vector<Rng> rng;
  std::int64_t next_obs = 0;
  std::uint64_t csv_bytes = 0;
};

RunState fresh_state(const RunConfig& cfg) {
  RunState s;
  for (Index k = 0; k < cfg.systems; ++k) {
    s.x.push_back(initial_positions(cfg, k));
    s.st.emplace_back();
    s.rng.push_back(Rng(cfg.seed, static_cast<std::uint64_t>(k)).split(1));  // noise stream of system k
  }
  return s;
}

RunState state_from_checkpoint(const Checkpoint& ck, const RunConfig& cfg) {
  RunState s;
  s.x = ck.positions;
  s.st = ck.states;
  for (Index k = 0; k < cfg.systems; ++k) {
    Rng r(cfg.seed, static_cast<std::uint64_t>(k));
    r.set_state(ck.rngs[static_cast<std::size_t>(k)]);
    s.rng.push_back(r);
  }
  s.next_obs = ck.observation;
  s.csv_bytes = ck.csv_bytes;
  return s;
}

Checkpoint make_checkpoint(const RunState& s, const std::string& config) {
  Checkpoint c;
  c.config = config;
  c.observation = s.next_obs;
  c.csv_bytes = s.csv_bytes;
  c.positions = s.x;
  c.states = s.st;
  for (const Rng& r : s.rng) c.rngs.push_back(r.state());
  return c;
}

// Positions of all systems: (n, d) for one system, (systems, n, d) for an ensemble.
void write_positions(const std::string& path, const std::vector<Matrix>& x) {
  if (x.size() == 1) return write_npy(path, x[0]);
  std::vector<double> data;
  for (const Matrix& m : x) data.insert(data.end(), m.data(), m.data() + m.size());
  write_npy(path, data.data(), {static_cast<Index>(x.size()), x[0].rows(), x[0].cols()});
}

// Runs f(k) for every system; in parallel across systems when there are several (each
// system's arithmetic is independent of the others, so the thread count changes nothing).
template <typename F>
void for_each_system(Index systems, F&& f) {
  if (systems == 1) return f(0);
  std::exception_ptr error;
  std::mutex mu;
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads())
  for (Index k = 0; k < systems; ++k) {
    try {
      f(k);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

std::string status_text(const RunConfig& cfg, double t, const std::vector<ObservationRow>& rows) {
  // Column 0 is energy, 1 is clusters (observable_names()); ensembles report system 0.
  return fmt::format("t = {:.4g}/{:.4g} clusters {} energy {:.6g}{}", t, cfg.t_end, rows[0].values[1],
                     rows[0].values[0], cfg.systems > 1 ? " (system 0)" : "");
}

}  // namespace

Matrix initial_positions(const RunConfig& cfg, Index system) {
  require(system >= 0 && system < cfg.systems, "run", "system", system, fmt::format("in [0, {})", cfg.systems));
  Rng rng(cfg.seed, static_cast<std::uint64_t>(system));
  Matrix x;
  if (cfg.init == "uniform_sphere") x = sample_sphere(cfg.n, cfg.d, rng);
  else if (cfg.init == "gaussian") x = sample_gaussian(cfg.n, cfg.d, rng);
  else if (cfg.init == "equiangular") x = equiangular(cfg.n, cfg.d, cfg.rho0);
  else x = read_initial_file(cfg, system);
  if (cfg.sphere) to_sphere(x);
  return x;
}

}  // namespace attnflow

namespace attnflow {

namespace {

struct Paths {
  std::string dir, config, csv, snapshots, final_npy, summary, checkpoint;
  explicit Paths(const std::string& d)
      : dir(d),
        config(d + "/config.toml"),
        csv(d + "/observables.csv"),
        snapshots(d + "/snapshots"),
        final_npy(d + "/final.npy"),
        summary(d + "/summary.json"),
        checkpoint(d + "/checkpoint.bin") {}
};

bool finished_run(const Paths& p) {
  if (!fs::exists(p.summary)) return false;
  const auto j = nlohmann::json::parse(read_file(p.summary), nullptr, false);
  return !j.is_discarded() && j.value("status", "") == "finished";
}

nlohmann::json summary_json(const RunConfig& cfg, const RunState& s, const std::vector<ObservationRow>& last,
                            const RunOptions& opt, double seconds) {
  long steps = 0, rejected = 0, evals = 0;
  for (const auto& st : s.st) {
    steps += st.steps;
    rejected += st.rejected;
    evals += st.evaluations;
  }
  nlohmann::json j = {{"kind", "run"}, {"attnflow_version", opt.version}, {"status", "finished"},
                      {"finished", true}, {"converged", true}, {"t_end", cfg.t_end},
                      {"observations", s.next_obs}, {"systems", cfg.systems}, {"n", cfg.n}, {"d", cfg.d},
                      {"model", cfg.kind}, {"beta", cfg.beta}, {"scheme", cfg.scheme},
                      {"method", to_string(cfg.integrator.method)}, {"steps", steps}, {"rejected_steps", rejected},
                      {"field_evaluations", evals}, {"snapshots", cfg.snapshots}, {"seconds", seconds}};
  std::vector<double> times;
  for (std::int64_t k = 0; k < s.next_obs; ++k) times.push_back(observation_time(cfg, k));
  j["observation_times"] = times;
  const auto names = observable_names();
  for (const auto& r : last) {
    nlohmann::json f = {{"system", r.system}, {"t", r.t}};
    for (std::size_t i = 0; i < names.size(); ++i) f[names[i]] = r.values[i];
    j["final"].push_back(f);
  }
  return j;
}

// Advances every system to observation k and observes it.
std::vector<ObservationRow> step_to(const RunConfig& cfg, const detail::SystemModel& model, RunState& s,
                                    std::int64_t k) {
  const double t = observation_time(cfg, k);
  std::vector<ObservationRow> rows(static_cast<std::size_t>(cfg.systems));
  for_each_system(cfg.systems, [&](Index i) {
    const auto u = static_cast<std::size_t>(i);
    detail::advance_system(model, s.x[u], s.st[u], t, cfg.integrator, s.rng[u]);
    rows[u] = {t, i, detail::observe_system(s.x[u], cfg)};
  });
  return rows;
}

RunResult run_loop(const RunConfig& cfg, const std::string& resolved, const RunOptions& opt,
                   const detail::SystemModel& model, RunState s) {
  const auto start = std::chrono::steady_clock::now();
  const Paths p(opt.out_dir);
  ensure_directory(p.dir);
  if (cfg.snapshots) ensure_directory(p.snapshots);
  write_file_atomic(p.config, resolved);
  detail::ObservablesCsv csv(p.csv, s.csv_bytes, observable_columns());
  const std::int64_t last = last_observation(cfg);
  Progress progress(static_cast<double>(last + 1), opt.label, opt.progress, opt.progress_tty);
  RunResult res;
  std::vector<ObservationRow> rows;
  for (std::int64_t k = s.next_obs; k <= last; ++k) {
    rows = step_to(cfg, model, s, k);
    csv.write(rows);
    if (cfg.snapshots) write_positions(fmt::format("{}/snap_{:06d}.npy", p.snapshots, k), s.x);
    s.next_obs = k + 1;
    s.csv_bytes = csv.bytes();
    progress.update(static_cast<double>(k + 1), status_text(cfg, rows[0].t, rows));
    if (cfg.checkpoint_every > 0 && s.next_obs % cfg.checkpoint_every == 0 && k < last) {
      write_checkpoint(p.checkpoint, make_checkpoint(s, resolved));
      if (opt.stop_after_checkpoints > 0 && ++res.checkpoints >= opt.stop_after_checkpoints) {
        res.interrupted = true;
        break;
      }
    }
  }
  res.observations = s.next_obs;
  res.states = s.st;
  res.last = rows;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (res.interrupted) return res;
  write_positions(p.final_npy, s.x);
  write_file_atomic(p.summary, summary_json(cfg, s, rows, opt, res.seconds).dump(2) + "\n");
  std::error_code ec;
  fs::remove(p.checkpoint, ec);  // the run is complete: summary.json now marks it finished
  progress.finish(status_text(cfg, rows[0].t, rows));
  res.finished = true;
  return res;
}

}  // namespace

RunResult run_experiment(const RunConfig& cfg, const std::string& resolved, const RunOptions& opt) {
  require(!opt.out_dir.empty(), "run", "out_dir", "\"\"", "a directory path");
  const Paths p(opt.out_dir);
  const detail::SystemModel model = detail::make_system_model(cfg);  // may throw: nothing created yet
  RunResult res;
  if (opt.resume && finished_run(p)) {
    res.already_finished = true;
    return res;
  }
  const bool existed = fs::exists(p.dir);
  if (!opt.resume && (fs::exists(p.summary) || fs::exists(p.checkpoint) || fs::exists(p.csv)))
    throw_message("run", fmt::format("output directory {} already holds a run (use --resume to continue it, "
                                     "or choose another --out)", p.dir));
  RunState s;
  if (opt.resume && fs::exists(p.checkpoint)) {
    const Checkpoint ck = read_checkpoint(p.checkpoint);
    if (ck.config != resolved)
      throw_message("run", fmt::format("--resume: the configuration differs from the one the checkpoint {} "
                                       "was written with (compare with {})", p.checkpoint, p.config));
    s = state_from_checkpoint(ck, cfg);
  } else {
    s = fresh_state(cfg);  // a resume without a checkpoint yet starts over
  }
  try {
    return run_loop(cfg, resolved, opt, model, std::move(s));
  } catch (...) {
    std::error_code ec;
    if (!existed) fs::remove_all(p.dir, ec);  // leave nothing behind from a failed fresh run
    throw;
  }
}

}  // namespace attnflow
