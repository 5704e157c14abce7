// The experiment runner: schedule of observations, the ensemble loop, the output directory
// and checkpoints. The flow itself (fields, schemes, noise, observables) is src/flow's.
#include "attnflow/runner.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "attnflow/atomic_file.hpp"
#include "attnflow/checkpoint.hpp"
#include "attnflow/csv.hpp"
#include "attnflow/ensemble.hpp"
#include "attnflow/error.hpp"
#include "attnflow/npy.hpp"
#include "attnflow/progress.hpp"
#include "attnflow/sample.hpp"
#include "observables_csv.hpp"
#include "run_model.hpp"

namespace attnflow {

namespace fs = std::filesystem;

std::vector<std::string> observable_columns() {
  std::vector<std::string> c{"t", "system"};
  for (auto& n : observable_names()) c.push_back(n);
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
  const auto off = ok3 ? static_cast<std::size_t>(system * cfg.n * cfg.d) : std::size_t{0};
  std::copy_n(a.data.data() + off, x.size(), x.data());
  require_finite("run: measure.file", cfg.file, x);
  return x;
}

// Row-normalizes onto the sphere, so that t = 0 observables see the points the flow moves.
void to_sphere(Matrix& x) {
  for (Index i = 0; i < x.rows(); ++i) {
    const double r = x.row(i).norm();
    require(r > 0.0, "run: initial measure", fmt::format("|x_{}|", i), r, "> 0 to lie on the sphere");
    x.row(i) /= r;
  }
}

// Positions of all systems: (n, d) for one system, (systems, n, d) for an ensemble.
void write_positions(const std::string& path, const Ensemble& e) {
  if (e.size() == 1) return write_npy(path, e.positions(0));
  std::vector<double> data;
  Index n = 0, d = 0;
  for (Index k = 0; k < e.size(); ++k) {
    const Matrix x = e.positions(k);
    n = x.rows();
    d = x.cols();
    data.insert(data.end(), x.data(), x.data() + x.size());
  }
  write_npy(path, data.data(), {e.size(), n, d});
}

struct Paths {
  std::string dir, config, csv, snapshots, final_npy, summary, checkpoint;
  explicit Paths(const std::string& d)
      : dir(d), config(d + "/config.toml"), csv(d + "/observables.csv"), snapshots(d + "/snapshots"),
        final_npy(d + "/final.npy"), summary(d + "/summary.json"), checkpoint(d + "/checkpoint.bin") {}
};

bool finished_run(const Paths& p) {
  if (!fs::exists(p.summary)) return false;
  const auto j = nlohmann::json::parse(read_file(p.summary), nullptr, false);
  return !j.is_discarded() && j.value("status", "") == "finished";
}

// Where the loop stands: observations made so far and the CSV length that goes with them.
struct Cursor {
  std::int64_t next_obs = 0;
  std::uint64_t csv_bytes = 0;
};

Ensemble make_ensemble(const RunConfig& cfg) {
  std::vector<FlowOptions> flows;
  std::vector<Matrix> x0;
  for (Index k = 0; k < cfg.systems; ++k) {
    flows.push_back(detail::flow_options(cfg, k));
    x0.push_back(initial_positions(cfg, k));
  }
  Ensemble e(std::move(flows), x0, cfg.integrator);
  e.batched = cfg.batched;
  return e;
}

Checkpoint make_checkpoint(const Ensemble& e, const Cursor& c, const std::string& config) {
  Checkpoint ck;
  ck.config = config;
  ck.observation = c.next_obs;
  ck.csv_bytes = c.csv_bytes;
  for (Index k = 0; k < e.size(); ++k) {
    ck.states.push_back(e.state(k));
    ck.flow.push_back(e.flow_state(k));
  }
  return ck;
}

Cursor restore(Ensemble& e, const Checkpoint& ck) {
  require(static_cast<Index>(ck.states.size()) == e.size(), "run: checkpoint", "systems", ck.states.size(),
          fmt::format("{} (measure.systems)", e.size()));
  for (Index k = 0; k < e.size(); ++k)
    e.set_state(k, ck.states[static_cast<std::size_t>(k)], ck.flow[static_cast<std::size_t>(k)]);
  return {ck.observation, ck.csv_bytes};
}

// ensemble.csv (ensembles): per observation time the rows count, mean, stderr and the
// quantiles of every observable across systems (columns t, statistic, observable_names()).
// Streamed and flushed per observation like observables.csv; a resume keeps the header and
// the rows of the observations already made (a fixed number per observation).
class EnsembleCsv {
 public:
  EnsembleCsv(const std::string& path, std::int64_t keep_obs, const std::vector<double>& probs)
      : path_(path), probs_(probs) {
    std::string text;
    if (keep_obs > 0) {
      if (!fs::exists(path)) throw std::runtime_error(fmt::format("resume: {} is missing", path));
      const std::string old = read_file(path);
      const std::size_t keep_lines = 1 + static_cast<std::size_t>(keep_obs) * (3 + probs.size());
      std::size_t pos = 0;
      for (std::size_t l = 0; l < keep_lines && pos < old.size(); ++l) pos = old.find('\n', pos) + 1;
      text = old.substr(0, pos);
    } else {
      text = "t,statistic";
      for (const auto& n : observable_names()) text += "," + n;
      text += '\n';
    }
    write_file_atomic(path, text);
    f_ = std::fopen(path.c_str(), "ab");
    if (!f_) throw std::runtime_error(fmt::format("cannot write {}", path));
  }
  ~EnsembleCsv() {
    if (f_) std::fclose(f_);
  }
  EnsembleCsv(const EnsembleCsv&) = delete;
  EnsembleCsv& operator=(const EnsembleCsv&) = delete;
  void write(double t, const std::vector<Observables>& obs) {
    const EnsembleStats st = summarize(obs, probs_);
    const auto row = [&](const std::string& label, auto value) {
      std::string line = format_double(t) + "," + label;
      for (const ObservableStats& o : st.stats) line += "," + (o.count > 0 ? format_double(value(o)) : std::string("nan"));
      return line + "\n";
    };
    std::string text = row("count", [](const ObservableStats& o) { return static_cast<double>(o.count); });
    text += row("mean", [](const ObservableStats& o) { return o.mean; });
    text += row("stderr", [](const ObservableStats& o) { return o.standard_error; });
    for (std::size_t q = 0; q < probs_.size(); ++q)
      text += row(fmt::format("q{:g}", probs_[q]), [q](const ObservableStats& o) { return o.quantiles[q]; });
    if (std::fwrite(text.data(), 1, text.size(), f_) != text.size() || std::fflush(f_) != 0)
      throw std::runtime_error(fmt::format("cannot write {}", path_));
  }

 private:
  std::string path_;
  std::vector<double> probs_;
  std::FILE* f_ = nullptr;
};

std::vector<ObservationRow> observe_rows(const RunConfig& cfg, const Ensemble& e, double t,
                                         std::vector<Observables>* all = nullptr) {
  std::vector<Observables> obs = e.observe(detail::observe_options(cfg), cfg.clusters);
  std::vector<ObservationRow> rows;
  for (Index k = 0; k < e.size(); ++k) rows.push_back({t, k, observable_values(obs[static_cast<std::size_t>(k)])});
  if (all) *all = std::move(obs);
  return rows;
}

std::string status_text(const RunConfig& cfg, const std::vector<ObservationRow>& rows) {
  // Columns: 1 = energy, 4 = clusters (observable_names()); ensembles report system 0.
  return fmt::format("t = {:.4g}/{:.4g} clusters {} energy {:.6g}{}", rows[0].t, cfg.t_end, rows[0].values[4],
                     rows[0].values[1], cfg.systems > 1 ? " (system 0)" : "");
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

nlohmann::json summary_json(const RunConfig& cfg, const Ensemble& e, const Cursor& c,
                            const std::vector<ObservationRow>& last, const RunOptions& opt, double seconds) {
  long steps = 0, rejected = 0, evals = 0, sinkhorn_missed = 0;
  std::string message;
  for (Index k = 0; k < e.size(); ++k) {
    const IntegratorState& st = e.flow_state(k).integrator;
    steps += st.steps;
    rejected += st.rejected;
    evals += st.evaluations;
    sinkhorn_missed += e.flow(k).diagnostics().sinkhorn_not_converged;
    if (message.empty()) message = e.flow(k).diagnostics().message;
  }
  nlohmann::json j = {{"kind", "run"}, {"attnflow_version", opt.version}, {"status", "finished"},
                      {"finished", true}, {"converged", sinkhorn_missed == 0}, {"message", message},
                      {"sinkhorn_not_converged", sinkhorn_missed}, {"t_end", cfg.t_end},
                      {"observations", c.next_obs}, {"systems", cfg.systems}, {"n", cfg.n}, {"d", cfg.d},
                      {"model", cfg.kind}, {"beta", cfg.beta}, {"scheme", cfg.scheme}, {"delta", cfg.delta},
                      {"every", cfg.every}, {"batched", e.batched && e.batchable()},
                      {"per_system_rows", cfg.per_system || cfg.systems == 1},
                      {"method", to_string(cfg.integrator.method)}, {"steps", steps},
                      {"rejected_steps", rejected}, {"field_evaluations", evals}, {"snapshots", cfg.snapshots},
                      {"seconds", seconds}};
  std::vector<double> times;
  for (std::int64_t k = 0; k < c.next_obs; ++k) times.push_back(observation_time(cfg, k));
  j["observation_times"] = times;
  const auto names = observable_names();
  for (const auto& r : last) {
    nlohmann::json f = {{"system", r.system}, {"t", r.t}};
    for (std::size_t i = 0; i < names.size(); ++i) f[names[i]] = r.values[i];
    j["final"].push_back(f);
  }
  return j;
}

RunResult run_loop(const RunConfig& cfg, const std::string& resolved, const RunOptions& opt, Ensemble& e,
                   Cursor c) {
  const auto start = std::chrono::steady_clock::now();
  const Paths p(opt.out_dir);
  ensure_directory(p.dir);
  if (cfg.snapshots) ensure_directory(p.snapshots);
  write_file_atomic(p.config, resolved);
  detail::ObservablesCsv csv(p.csv, c.csv_bytes, observable_columns());
  std::unique_ptr<EnsembleCsv> ens;
  if (cfg.systems > 1) ens = std::make_unique<EnsembleCsv>(p.dir + "/ensemble.csv", c.next_obs, cfg.quantiles);
  std::vector<Observables> all;
  const std::int64_t last = last_observation(cfg);
  Progress progress(static_cast<double>(last + 1), opt.label, opt.progress, opt.progress_tty);
  RunResult res;
  std::vector<ObservationRow> rows;
  for (std::int64_t k = c.next_obs; k <= last; ++k) {
    const double t = observation_time(cfg, k);
    e.advance(t);
    rows = observe_rows(cfg, e, t, ens ? &all : nullptr);
    if (cfg.per_system || cfg.systems == 1) csv.write(rows);
    if (ens) ens->write(t, all);
    if (cfg.snapshots) write_positions(fmt::format("{}/snap_{:06d}.npy", p.snapshots, k), e);
    c = {k + 1, csv.bytes()};
    progress.update(static_cast<double>(k + 1), status_text(cfg, rows));
    if (opt.on_observation) opt.on_observation(rows);
    if (cfg.checkpoint_every > 0 && c.next_obs % cfg.checkpoint_every == 0 && k < last) {
      write_checkpoint(p.checkpoint, make_checkpoint(e, c, resolved));
      if (opt.stop_after_checkpoints > 0 && ++res.checkpoints >= opt.stop_after_checkpoints) {
        res.interrupted = true;
        break;
      }
    }
  }
  res.observations = c.next_obs;
  for (Index k = 0; k < e.size(); ++k) res.states.push_back(e.flow_state(k).integrator);
  res.last = rows;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (res.interrupted) return res;
  write_positions(p.final_npy, e);
  write_file_atomic(p.summary, summary_json(cfg, e, c, rows, opt, res.seconds).dump(2) + "\n");
  std::error_code ec;
  fs::remove(p.checkpoint, ec);  // complete: summary.json now marks the run finished
  if (!rows.empty()) progress.finish(status_text(cfg, rows));
  res.finished = true;
  return res;
}

}  // namespace

RunResult run_experiment(const RunConfig& cfg, const std::string& resolved, const RunOptions& opt) {
  require(!opt.out_dir.empty(), "run", "out_dir", "\"\"", "a directory path");
  const Paths p(opt.out_dir);
  RunResult res;
  if (opt.resume && finished_run(p)) {
    res.already_finished = true;
    return res;
  }
  if (!opt.resume && (fs::exists(p.summary) || fs::exists(p.checkpoint) || fs::exists(p.csv)))
    throw_message("run", fmt::format("output directory {} already holds a run (use --resume to continue it, "
                                     "or choose another --out)", p.dir));
  Ensemble e = make_ensemble(cfg);  // validates the flow options: may throw, nothing created yet
  Cursor c;
  if (opt.resume && fs::exists(p.checkpoint)) {
    const Checkpoint ck = read_checkpoint(p.checkpoint);
    if (ck.config != resolved)
      throw_message("run", fmt::format("--resume: the configuration differs from the one the checkpoint {} "
                                       "was written with (compare with {})", p.checkpoint, p.config));
    c = restore(e, ck);
  }  // a resume without a checkpoint yet starts over
  const bool existed = fs::exists(p.dir);
  try {
    return run_loop(cfg, resolved, opt, e, c);
  } catch (...) {
    std::error_code ec;
    if (!existed) fs::remove_all(p.dir, ec);  // leave nothing behind from a failed fresh run
    throw;
  }
}

}  // namespace attnflow
