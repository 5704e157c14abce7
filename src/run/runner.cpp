// The experiment runner: schedule of observations, the ensemble loop, the output directory
// and checkpoints. The flow itself (fields, schemes, noise, observables) is src/flow's.
#include "attnflow/run/runner.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <type_traits>
#include <cmath>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/run/checkpoint.hpp"
#include "attnflow/io/csv.hpp"
#include "attnflow/flow/ensemble.hpp"
#include "attnflow/base/collective.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/run/job.hpp"
#include "attnflow/io/npy.hpp"
#include "attnflow/run/progress.hpp"
#include "attnflow/run/start_cache.hpp"
#include "attnflow/measure/sample.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "observables_csv.hpp"
#include "run_model.hpp"

namespace attnflow {

std::vector<std::string> observable_columns() {
  std::vector<std::string> c{"t", "system"};
  for (auto& n : observable_names()) c.push_back(n);
  return c;
}

namespace {

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
    // |x| overflows for entries above about 1e154 (1e308 used to end as "row 0 is zero").
    require(r > 0.0 && std::isfinite(r), "run: initial measure", fmt::format("|x_{}|", i), r,
            "> 0 and finite to lie on the sphere (entries above 1e154 overflow: rescale the points)");
    x.row(i) /= r;
  }
}

// Positions of all systems: (n, d) for one system, (systems, n, d) for an ensemble.
void write_positions(const std::string& path, const Ensemble& e) {
  if (e.size() == 1) return write_npy(path, e.positions(0));
  // The file's bytes built in place, one system at a time (one copy of the positions).
  Matrix x = e.positions(0);
  const Index n = x.rows(), d = x.cols();
  std::string bytes = npy_header({e.size(), n, d});
  bytes.reserve(bytes.size() + static_cast<std::size_t>(e.size() * n * d) * sizeof(double));
  for (Index k = 0; k < e.size(); ++k) {
    if (k > 0) x = e.positions(k);
    if (x.rows() != n || x.cols() != d)
      throw std::logic_error(fmt::format("run: positions of system {} are ({}, {}), not ({}, {})", k, x.rows(),
                                         x.cols(), n, d));
    bytes.append(reinterpret_cast<const char*>(x.data()), static_cast<std::size_t>(x.size()) * sizeof(double));
  }
  write_file_atomic(path, bytes);
}

// The files of a run directory (runner.hpp), the names the job writes.
const std::vector<std::string> kRunOutputs = {"config.toml", "observables.csv", "ensemble.csv", "snapshots",
                                               "final.npy"};

// At the safe point after observation next_obs - 1: a checkpoint is due when a stop was
// requested (sig != 0) or every cfg.checkpoint_every observations; `write` writes it. Returns
// true when the loop stops there (a stop request, or the test hook's checkpoint count reached),
// recording it in res.
template <typename Write>
bool checkpoint_and_stop(const RunConfig& cfg, const RunOptions& opt, std::int64_t next_obs, int sig,
                         RunResult& res, Write&& write) {
  if (sig == 0 && !(cfg.checkpoint_every > 0 && next_obs % cfg.checkpoint_every == 0)) return false;
  write();
  ++res.checkpoints;
  const bool hook = opt.stop_after_checkpoints > 0 && res.checkpoints >= opt.stop_after_checkpoints;
  if (sig == 0 && !hook) return false;
  res.interrupted = true;
  res.signal = sig;
  return true;
}

// Where the loop stands: observations made so far and the CSV length that goes with them.
struct Cursor {
  std::int64_t next_obs = 0;
  std::uint64_t csv_bytes = 0;
};

void configure(Ensemble& e, const RunConfig& cfg) {
  e.batched = cfg.batched;
  e.reduce_span = cfg.reduce_span;
  e.precision = run_precision(cfg);
  const std::string refusal = e.precision_refusal();
  if (!refusal.empty())
    throw_invalid("run", "compute.precision", "\"float32\"",
                  fmt::format("float64 for this run on the CPU: float32 there needs {}", refusal));
}

// What determines the initial points of systems [first, end) (initial_positions): the key of
// their shared start (start_cache.hpp); "" for points read from a file (not shared: the file
// may change between runs).
std::string start_key(const RunConfig& cfg, Index first, Index end) {
  if (cfg.init == "file") return "";
  return fmt::format("{} n={} d={} rho0={:a} seed={} sphere={} systems=[{}, {})", cfg.init, cfg.n, cfg.d, cfg.rho0,
                     cfg.seed, cfg.sphere, first, end);
}

bool plain_sphere(const std::vector<FlowOptions>& flows) {
  return std::all_of(flows.begin(), flows.end(), [](const FlowOptions& o) { return attnflow::plain_sphere(o); });
}

// Systems [first, first + count) (count < 0: all): a distributed run's part. `comm`: the processes that advance these
// systems together, splitting each field's kernel pass (FlowOptions::comm). On the reduced
// batched path the systems are held in their span form from the start (Ensemble::span_start).
// With `starts`, the points (or the span form) another run left there for the same measure,
// seed and systems are taken instead of sampled, and a run that samples leaves its own: the
// same state either way.
Ensemble make_ensemble(const RunConfig& cfg, Index first = 0, Index count = -1, const Collective* comm = nullptr,
                       StartCache* starts = nullptr) {
  const Index end = count < 0 ? cfg.systems : first + count;
  std::vector<FlowOptions> flows;
  for (Index k = first; k < end; ++k) {
    flows.push_back(detail::flow_options(cfg, k));
    flows.back().comm = comm;
  }
  std::optional<Ensemble> made;
  const auto build = [&](std::vector<Matrix> x0) {  // the span form, when on the reduced path
    made.emplace(flows, std::move(x0), cfg.integrator);
    configure(*made, cfg);
    return made->reduces_span() ? made->span_start() : nullptr;
  };
  const auto sample = [&] {
    std::vector<Matrix> x0;
    for (Index k = first; k < end; ++k) x0.push_back(initial_positions(cfg, k));
    return x0;
  };
  const std::string key = starts ? start_key(cfg, first, end) : "";
  if (key.empty()) {
    build(sample());
    return std::move(*made);
  }
  const StartCache::Start st = starts->find_or_make(key, [&] {
    std::vector<Matrix> x0 = sample();
    StartCache::Start s;
    // d <= n: a copy of the points (small; the span form is never taken). d > n: the span form.
    if (cfg.d <= cfg.n) s.points = std::make_shared<const std::vector<Matrix>>(x0);
    s.span = build(std::move(x0));
    return s;
  });
  if (made) return std::move(*made);  // this call sampled
  if (st.span && plain_sphere(flows)) {
    Ensemble e = Ensemble::from_span_start(flows, st.span, cfg.integrator);
    configure(e, cfg);
    if (e.reduces_span()) return e;  // else another batching or method than the sampling run's
  }
  build(st.points ? *st.points : sample());
  return std::move(*made);
}

Checkpoint make_checkpoint(const Ensemble& e, const Cursor& c, const std::string& config) {
  Checkpoint ck;
  ck.config = config;
  ck.observation = c.next_obs;
  ck.csv_bytes = c.csv_bytes;
  for (Index k = 0; k < e.size(); ++k) {
    ck.states.push_back(e.saved_state(k));
    ck.flow.push_back(e.flow_state(k));
  }
  return ck;
}

Cursor restore(Ensemble& e, const Checkpoint& ck) {
  require(static_cast<Index>(ck.states.size()) == e.size(), "run: checkpoint", "systems", ck.states.size(),
          fmt::format("{} (measure.systems)", e.size()));
  for (Index k = 0; k < e.size(); ++k)
    e.restore_state(k, ck.states[static_cast<std::size_t>(k)], ck.flow[static_cast<std::size_t>(k)]);
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
      if (!std::filesystem::exists(path)) throw std::runtime_error(fmt::format("resume: {} is missing", path));
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
    last_t_ = t;
    last_ = summarize(obs, probs_);
    std::string text;
    for_each_statistic([&](const std::string& label, auto value) {
      text += format_double(t) + "," + label;
      for (const ObservableStats& o : last_.stats) text += "," + (o.count > 0 ? format_double(value(o)) : std::string("nan"));
      text += '\n';
    });
    if (std::fwrite(text.data(), 1, text.size(), f_) != text.size() || std::fflush(f_) != 0)
      throw std::runtime_error(fmt::format("cannot write {}", path_));
  }
  // The last observation's statistics as JSON (summary.json's "final_ensemble"): its time and,
  // per statistic (count, mean, stderr, q<p>), each observable's value (null where none).
  nlohmann::json last_json() const {
    nlohmann::json stats = nlohmann::json::object();
    for_each_statistic([&](const std::string& label, auto value) {
      nlohmann::json row = nlohmann::json::object();
      for (const ObservableStats& o : last_.stats) {
        if (o.count > 0)
          row[o.name] = value(o);
        else
          row[o.name] = nullptr;
      }
      stats[label] = row;
    });
    return {{"t", last_t_}, {"statistics", stats}};
  }
  bool wrote() const { return !last_.stats.empty(); }

 private:
  // f(label, value) for the statistics in their order (count, mean, stderr, q<p> per
  // probability), value(o) giving the statistic of one observable's ObservableStats o.
  template <class F>
  void for_each_statistic(F&& f) const {
    f("count", [](const ObservableStats& o) { return static_cast<double>(o.count); });
    f("mean", [](const ObservableStats& o) { return o.mean; });
    f("stderr", [](const ObservableStats& o) { return o.standard_error; });
    for (std::size_t q = 0; q < probs_.size(); ++q)
      f(fmt::format("q{:g}", probs_[q]), [q](const ObservableStats& o) { return o.quantiles[q]; });
  }

  std::string path_;
  std::vector<double> probs_;
  double last_t_ = 0.0;
  EnsembleStats last_;
  std::FILE* f_ = nullptr;
};

// Whether the run writes per-system rows (observables.csv, summary.json's "final"): asked for,
// or a single system.
bool per_system_rows(const RunConfig& cfg) { return cfg.per_system || cfg.systems == 1; }

// One observation's rows (one per system).
// Into rows, whose capacity serves again (an ensemble's rows are rebuilt at every observation).
void observation_rows(double t, const std::vector<Observables>& obs, std::vector<ObservationRow>& rows) {
  rows.clear();
  rows.reserve(obs.size());
  for (std::size_t k = 0; k < obs.size(); ++k) rows.push_back({t, static_cast<Index>(k), observable_array(obs[k])});
}

// Observation times the loop hands to the ensemble in one call (advance_observe_each): on the
// GPU path up to 256 (many per launch there); on the CPU's batched path one pass over the
// blocks (Ensemble::observations_per_pass: 32 for 2048 systems, each block's state stays in
// cache for them), elsewhere one (the CPU gains nothing); a stop request is answered at the
// end of a call. One with snapshots, which need the state at each observation.
// RunOptions::observations_per_call overrides the others.
std::int64_t observations_per_call(const RunConfig& cfg, const RunOptions& opt, const Ensemble& e,
                                   const ObserveOptions& observe) {
  if (cfg.snapshots) return 1;
  if (opt.observations_per_call > 0) return opt.observations_per_call;
  if (!e.runs_on_gpu()) return e.observations_per_pass(observe);
  return cfg.clusters ? 1 : 256;
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

// A warning for energy = +inf (E_beta beyond the double range; log_energy stays finite), the
// only observable observe() lets through non-finite: named here with the first time and system.
std::string energy_overflow_warning(const std::vector<ObservationRow>& rows) {
  for (const auto& r : rows)
    if (!std::isfinite(r.values[1]))
      return fmt::format("energy = inf from t = {} (system {}): E_beta exceeds the double range "
                         "(log_energy = {:.6g} is finite; read log_energy)", r.t, r.system, r.values[0]);
  return "";
}

// Every system's flow counters (from the ensemble, or gathered from the ranks that ran them).
std::vector<FlowDiagnostics> diagnostics_of(const Ensemble& e) {
  std::vector<FlowDiagnostics> d;
  for (Index k = 0; k < e.size(); ++k) d.push_back(e.flow(k).diagnostics());
  return d;
}

// The run's summary.json. "final": the last observation of each system where the run writes
// per-system rows (observe.per_system, or one system); otherwise empty, and "final_ensemble"
// holds that observation's statistics over the systems (as ensemble.csv's last rows), so a
// point of a large ensemble sweep stays a few KB (2048 systems' rows made 830 KB per point).
nlohmann::json summary_json(const RunConfig& cfg, const Ensemble& e, const std::vector<FlowDiagnostics>& diags,
                            const Cursor& c, const std::vector<ObservationRow>& last, const RunOptions& opt,
                            double seconds, const std::vector<std::string>& warnings, const EnsembleCsv* ens) {
  long steps = 0, rejected = 0, evals = 0, sinkhorn_missed = 0;
  std::string message;
  for (Index k = 0; k < e.size(); ++k) {
    const IntegratorState& st = e.flow_state(k).integrator;
    steps += st.steps;
    rejected += st.rejected;
    evals += st.evaluations;
    sinkhorn_missed += diags[static_cast<std::size_t>(k)].sinkhorn_not_converged;
    if (message.empty()) message = diags[static_cast<std::size_t>(k)].message;
  }
  nlohmann::json j = summary_header("run", opt.version, "finished");
  j.update({{"finished", true}, {"converged", sinkhorn_missed == 0}, {"message", message},
            {"sinkhorn_not_converged", sinkhorn_missed}, {"t_end", cfg.t_end},
            {"observations", c.next_obs}, {"systems", cfg.systems}, {"n", cfg.n}, {"d", cfg.d},
            {"model", cfg.kind}, {"beta", cfg.beta}, {"scheme", cfg.scheme}, {"delta", cfg.delta},
            {"every", cfg.every}, {"on_steps", cfg.on_steps}, {"batched", e.batched && e.batchable()},
            {"ensemble_precision", precision_name(e.precision)},
            {"device_fallback", device_fallback(e.batched && e.batchable() && !e.runs_on_gpu())},
            {"per_system_rows", per_system_rows(cfg)},
            {"method", to_string(cfg.integrator.method)}, {"steps", steps},
            {"rejected_steps", rejected}, {"field_evaluations", evals}, {"snapshots", cfg.snapshots},
            {"final_states", cfg.final_states},
            {"seconds", seconds}});
  std::vector<double> times;
  for (std::int64_t k = 0; k < c.next_obs; ++k) times.push_back(observation_time(cfg, k));
  j["observation_times"] = times;
  j["warnings"] = warnings;
  const auto names = observable_names();
  j["final"] = nlohmann::json::array();
  if (per_system_rows(cfg)) {
    for (const auto& r : last) {
      nlohmann::json f = {{"system", r.system}, {"t", r.t}};
      for (std::size_t i = 0; i < names.size(); ++i) f[names[i]] = r.values[i];
      j["final"].push_back(f);
    }
  } else if (ens && ens->wrote()) {
    j["final_ensemble"] = ens->last_json();
  }
  return j;
}

RunResult run_loop(const RunConfig& cfg, const std::string& resolved, const RunOptions& opt, Ensemble& e,
                   Cursor c, Job& job) {
  const auto start = std::chrono::steady_clock::now();
  job.start();
  const std::string snapshots = job.path("snapshots"), checkpoint = job.checkpoint();
  if (cfg.snapshots) ensure_directory(snapshots);
  write_file_atomic(job.path("config.toml"), resolved);
  detail::ObservablesCsv csv(job.path("observables.csv"), c.csv_bytes, observable_columns());
  std::unique_ptr<EnsembleCsv> ens;
  if (cfg.systems > 1) ens = std::make_unique<EnsembleCsv>(job.path("ensemble.csv"), c.next_obs, cfg.quantiles);
  const std::int64_t last = last_observation(cfg);
  Progress progress = job.progress(static_cast<double>(last + 1), opt.progress, opt.progress_tty, 2.0, opt.label);
  RunResult res;
  std::vector<ObservationRow> rows;
  std::vector<std::string> warnings;
  e.gpu_emulation = opt.gpu_emulation;
  const ObserveOptions observe = detail::observe_options(cfg);
  const std::int64_t per_call = observations_per_call(cfg, opt, e, observe);
  const bool all_rows = per_system_rows(cfg) || static_cast<bool>(opt.on_observation);
  std::vector<double> times;
  // Observations k0 .. k1 in one call, k1 at the latest the next checkpoint's observation: the
  // safe points (checkpoints, stop requests) fall between calls.
  for (std::int64_t k0 = c.next_obs; k0 <= last;) {
    std::int64_t k1 = std::min(last, k0 + per_call - 1);
    if (cfg.checkpoint_every > 0) k1 = std::min(k1, (k0 / cfg.checkpoint_every + 1) * cfg.checkpoint_every - 1);
    times.clear();
    for (std::int64_t k = k0; k <= k1; ++k) times.push_back(observation_time(cfg, k));
    e.advance_observe_each(times, observe, cfg.clusters, [&](std::size_t j, const std::vector<Observables>& obs) {
      const std::int64_t k = k0 + static_cast<std::int64_t>(j);
      const double t = times[j];
      // Every system's row where something reads them: observables.csv, on_observation, the
      // call's last observation (RunResult::last, the summary's "final"), a non-finite
      // energy's warning; otherwise system 0's (the progress line) only.
      const bool overflow = warnings.empty() && std::any_of(obs.begin(), obs.end(), [](const Observables& o) {
                              return !std::isfinite(o.energy);
                            });
      if (all_rows || k == k1 || overflow)
        observation_rows(t, obs, rows);
      else
        rows.assign(1, {t, 0, observable_array(obs[0])});
      if (overflow) {
        if (std::string w = energy_overflow_warning(rows); !w.empty()) {
          warnings.push_back(w);
          if (opt.progress) fmt::print(opt.progress, "{}: warning: {}\n", opt.label, w);
        }
      }
      if (per_system_rows(cfg)) csv.write(rows);
      if (ens) ens->write(t, obs);
      if (cfg.snapshots) write_positions(fmt::format("{}/snap_{:06d}.npy", snapshots, k), e);  // one per call
      c = {k + 1, csv.bytes()};
      progress.update(static_cast<double>(k + 1), status_text(cfg, rows));
      if (opt.on_observation) opt.on_observation(rows);
    });
    if (k1 == last) break;
    // The end of a call is a safe point (the ensemble is at its last observation): a stop
    // request (SIGINT, SIGTERM) checkpoints here.
    if (checkpoint_and_stop(cfg, opt, c.next_obs, stop_signal(), res,
                            [&] { write_checkpoint(checkpoint, make_checkpoint(e, c, resolved)); }))
      break;
    k0 = k1 + 1;
  }
  res.observations = c.next_obs;
  for (Index k = 0; k < e.size(); ++k) res.states.push_back(e.flow_state(k).integrator);
  res.last = rows;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  res.device = device_name(current_device().device);
  if (res.interrupted) {
    job.keep();
    return res;
  }
  if (cfg.final_states) write_positions(job.path("final.npy"), e);
  nlohmann::json summary = summary_json(cfg, e, diagnostics_of(e), c, rows, opt, res.seconds, warnings, ens.get());
  summary["points_split"] = false;
  job.write_summary(summary);
  job.commit();  // summary.json now marks the run finished; checkpoint.bin goes
  if (!rows.empty()) progress.finish(status_text(cfg, rows));
  res.finished = true;
  return res;
}


// ---- Distributed ensembles (RunOptions::comm, collective.hpp) ------------------------------
// Each rank advances and observes a contiguous block of systems; after every observation the
// blocks' records (observables, flow state, counters, positions) are gathered on rank 0 in
// system order, where a mirror ensemble holding every system's state writes exactly the files
// one process writes (the same code: csv, ensemble statistics, snapshots, checkpoints).

// Bytes of trivially copyable values, appended and read back in order.
template <typename T>
void put(std::string& b, const T* p, std::size_t n) {
  static_assert(std::is_trivially_copyable_v<T>);
  b.append(reinterpret_cast<const char*>(p), n * sizeof(T));
}
struct RecordReader {
  const std::string& b;
  std::size_t pos = 0;
  template <typename T>
  void get(T* p, std::size_t n) {
    if (pos + n * sizeof(T) > b.size()) throw std::runtime_error("run: truncated record from another rank");
    std::memcpy(static_cast<void*>(p), b.data() + pos, n * sizeof(T));
    pos += n * sizeof(T);
  }
  template <typename T>
  T get() {
    T v{};
    get(&v, 1);
    return v;
  }
};

void encode_system(std::string& b, const Ensemble& e, Index k, const Observables& o) {
  const std::array<double, kObservableCount> v = observable_array(o);
  put(b, v.data(), v.size());
  const char pairs = o.pairs_computed ? 1 : 0;
  put(b, &pairs, 1);
  put(b, &e.flow_state(k), 1);
  const FlowDiagnostics& d = e.flow(k).diagnostics();
  put(b, &d.evaluations, 1);
  put(b, &d.sinkhorn_not_converged, 1);
  put(b, &d.sinkhorn_marginal_error, 1);
  const std::uint64_t len = d.message.size();
  put(b, &len, 1);
  put(b, d.message.data(), len);
  const Matrix x = e.saved_state(k);  // continues bit for bit on rank 0 (checkpoints)
  const Index shape[2] = {x.rows(), x.cols()};
  put(b, shape, 2);
  put(b, x.data(), static_cast<std::size_t>(x.size()));
}

// The observables as summarize() and observable_values() read them (largest_cluster as the
// only cluster size, which is all they use).
Observables observables_from(const std::array<double, kObservableCount>& v, bool pairs, double t) {
  Observables o;
  o.t = t;
  o.log_energy = v[0];
  o.energy = v[1];
  o.mean_cosine = v[2];
  o.min_cosine = v[3];
  o.clusters = static_cast<Index>(v[4]);
  if (v[5] >= 0.0) o.cluster_sizes = {static_cast<Index>(v[5])};
  o.clustered_pairs = v[6];
  o.order = v[7];
  o.radius_mean = v[8];
  o.radius_min = v[9];
  o.radius_max = v[10];
  o.pairs_computed = pairs;
  return o;
}

// One system with its tokens split across the ranks (RunOptions::split_points): this rank's
// Flow over its rows of the state. Not movable: the Flow refers to `rows`.
struct SplitSystem {
  SplitRows rows;
  std::optional<Flow> flow;
  Matrix state;  // this rank's rows
  FlowState fs;

  SplitSystem(const RunConfig& cfg, const Collective& comm) {
    FlowOptions o = detail::flow_options(cfg, 0);
    if (cfg.integrator.method == Method::dopri5)  // its step control needs the whole error
      throw_invalid("run", "integrate.method", "\"dopri5\"", "euler, residual or rk4 with --split-points");
    if (current_device().device != Device::cpu)  // after apply_compute: [compute] or --device
      throw_message("run", "--split-points runs on the CPU: compute.device (or --device) must be cpu");
    if (const std::string why = flow_split_refusal(o, cfg.n, cfg.d, comm.size()); !why.empty())
      throw_message("run", fmt::format("--split-points: the tokens cannot be split across {} processes: {}",
                                       comm.size(), why));
    const std::vector<Range> parts = symmetric_row_parts(cfg.n, comm.size());
    rows = SplitRows{&comm, parts, parts};
    o.split = &rows;
    flow.emplace(std::move(o), cfg.n, cfg.d);
    // Every rank forms the initial points and keeps its rows (the sampler draws them in order).
    state = flow->initial_state(initial_positions(cfg, 0).middleRows(rows.queries().first, rows.queries().count));
    fs = flow->initial_flow_state(0.0);
  }
  SplitSystem(const SplitSystem&) = delete;
  SplitSystem& operator=(const SplitSystem&) = delete;
};

RunResult run_distributed(const RunConfig& cfg, const std::string& resolved, const RunOptions& opt,
                          const Collective& comm) {
  const auto start = std::chrono::steady_clock::now();
  const bool writer = comm.writer();
  std::optional<Job> job;
  int decision = 0;  // 0: start over, 1: finished before, 2: continue from the checkpoint
  if (writer) {
    job.emplace(JobSpec{.kind = "run", .out_dir = opt.out_dir, .version = opt.version, .resumable = true,
                        .resume = opt.resume, .outputs = kRunOutputs, .noun = "run", .marker = ""});
    decision = job->finished_before() ? 1 : job->has_checkpoint() ? 2 : 0;
  }
  decision = std::stoi(comm.broadcast(std::to_string(decision)));  // a refusal on rank 0 stops all
  RunResult res;
  if (decision == 1) {
    res.already_finished = true;
    return res;
  }
  apply_compute(cfg.device, cfg.precision);  // [compute] on every rank (may throw: agreed below)
  // Several systems: contiguous blocks of them per rank. One system: every rank advances it,
  // its field's kernel pass split by rows across the ranks (FlowOptions::comm, identical state
  // on every rank after each evaluation); rank 0 alone observes it.
  const bool split_field = cfg.systems == 1;
  if (opt.split_points && !split_field)
    throw_invalid("run", "measure.systems", cfg.systems, "1 with --split-points (ensembles split their systems)");
  const Range mine = split_field ? Range{0, 1} : block_range(cfg.systems, comm.size(), comm.rank());
  std::optional<Ensemble> local, all;
  std::unique_ptr<SplitSystem> split;
  if (opt.split_points) split = std::make_unique<SplitSystem>(cfg, comm);
  else if (mine.count > 0) local.emplace(make_ensemble(cfg, mine.first, mine.count, split_field ? &comm : nullptr));
  if (writer) all.emplace(make_ensemble(cfg));
  res.points_split = split != nullptr;
  if (split && writer && opt.progress)
    fmt::print(opt.progress, "{}: tokens split across {} processes\n", opt.label, comm.size());
  Cursor c;
  if (decision == 2) {
    const Checkpoint ck = read_checkpoint(opt.out_dir + "/checkpoint.bin");
    if (writer) {
      job->require_same_config(ck.config, resolved);
      c = restore(*all, ck);
    } else {
      c = {ck.observation, ck.csv_bytes};
    }
    require(static_cast<Index>(ck.states.size()) == cfg.systems, "run: checkpoint", "systems", ck.states.size(),
            fmt::format("{} (measure.systems)", cfg.systems));
    if (split) {
      const Range q = split->rows.queries();
      const Matrix& whole = ck.states[0];
      require(whole.rows() == cfg.n && whole.cols() == split->state.cols(), "run: checkpoint", "state rows",
              whole.rows(), fmt::format("{} (measure.n)", cfg.n));
      split->state = whole.middleRows(q.first, q.count);
      split->fs = ck.flow[0];
    } else {
      for (Index i = 0; i < mine.count; ++i)
        local->restore_state(i, ck.states[static_cast<std::size_t>(mine.first + i)],
                             ck.flow[static_cast<std::size_t>(mine.first + i)]);
    }
  }
  comm.check();  // every rank has its systems (or one failed, and every rank stops)

  std::unique_ptr<detail::ObservablesCsv> csv;
  std::unique_ptr<EnsembleCsv> ens;
  std::optional<Progress> progress;
  std::string snapshots;
  const std::int64_t last = last_observation(cfg);
  if (writer) {
    job->start();
    snapshots = job->path("snapshots");
    if (cfg.snapshots) ensure_directory(snapshots);
    write_file_atomic(job->path("config.toml"), resolved);
    csv = std::make_unique<detail::ObservablesCsv>(job->path("observables.csv"), c.csv_bytes, observable_columns());
    if (cfg.systems > 1) ens = std::make_unique<EnsembleCsv>(job->path("ensemble.csv"), c.next_obs, cfg.quantiles);
    progress.emplace(job->progress(static_cast<double>(last + 1), opt.progress, opt.progress_tty, 2.0, opt.label));
  }
  std::vector<FlowDiagnostics> diags(static_cast<std::size_t>(cfg.systems));
  std::vector<ObservationRow> rows;
  std::vector<std::string> warnings;
  for (std::int64_t k = c.next_obs; k <= last; ++k) {
    const double t = observation_time(cfg, k);
    std::string record;
    if (split) {  // this rank's rows of the state, gathered on rank 0 in rank (= row) order
      split->flow->advance(split->state, split->fs, t, cfg.integrator);
      put(record, split->state.data(), static_cast<std::size_t>(split->state.size()));
    } else if (local && split_field && !writer) {
      local->advance(t);
    } else if (local) {
      const std::vector<Observables> obs = local->advance_observe(t, detail::observe_options(cfg), cfg.clusters);
      for (Index i = 0; i < local->size(); ++i) encode_system(record, *local, i, obs[static_cast<std::size_t>(i)]);
    }
    const std::vector<std::string> records = comm.gather(record);
    const int sig = static_cast<int>(comm.max(stop_signal()));  // every rank stops at the same observation
    if (writer) {
      rows.clear();
      std::vector<Observables> obs;
      Index s = 0;
      if (split) {
        Matrix whole(cfg.n, split->state.cols());
        Index row = 0;
        for (const std::string& part : records) {
          RecordReader r{part};
          const Index count = static_cast<Index>(part.size() / (sizeof(double) * static_cast<std::size_t>(whole.cols())));
          if (row + count > whole.rows()) throw std::runtime_error("run: gathered more rows than measure.n");
          r.get(whole.data() + row * whole.cols(), static_cast<std::size_t>(count * whole.cols()));
          row += count;
        }
        if (row != cfg.n) throw std::runtime_error(fmt::format("run: gathered {} rows, expected {}", row, cfg.n));
        all->restore_state(0, whole, split->fs);
        obs = all->observe(detail::observe_options(cfg), cfg.clusters);
        rows.push_back({t, 0, observable_array(obs[0])});
        diags[0] = split->flow->diagnostics();
        s = 1;
      }
      const std::vector<std::string> none;
      for (const std::string& part : split ? none : records) {
        RecordReader r{part};
        while (r.pos < part.size()) {
          std::array<double, kObservableCount> v;
          r.get(v.data(), v.size());
          const bool pairs = r.get<char>() != 0;
          const FlowState fs = r.get<FlowState>();
          FlowDiagnostics& d = diags[static_cast<std::size_t>(s)];
          d.evaluations = r.get<long>();
          d.sinkhorn_not_converged = r.get<long>();
          d.sinkhorn_marginal_error = r.get<double>();
          d.message.resize(r.get<std::uint64_t>());
          r.get(d.message.data(), d.message.size());
          Index shape[2];
          r.get(shape, 2);
          Matrix x(shape[0], shape[1]);
          r.get(x.data(), static_cast<std::size_t>(x.size()));
          all->restore_state(s, x, fs);
          rows.push_back({t, s, v});
          obs.push_back(observables_from(v, pairs, t));
          ++s;
        }
      }
      if (s != cfg.systems)
        throw std::runtime_error(fmt::format("run: gathered {} systems, expected {}", s, cfg.systems));
      if (warnings.empty()) {
        if (std::string w = energy_overflow_warning(rows); !w.empty()) {
          warnings.push_back(w);
          if (opt.progress) fmt::print(opt.progress, "{}: warning: {}\n", opt.label, w);
        }
      }
      if (per_system_rows(cfg)) csv->write(rows);
      if (ens) ens->write(t, obs);
      if (cfg.snapshots) write_positions(fmt::format("{}/snap_{:06d}.npy", snapshots, k), *all);
      c = {k + 1, csv->bytes()};
      progress->update(static_cast<double>(k + 1), status_text(cfg, rows));
      if (opt.on_observation) opt.on_observation(rows);
    } else {
      c = {k + 1, 0};
    }
    if (k == last) break;
    if (checkpoint_and_stop(cfg, opt, c.next_obs, sig, res, [&] {
          if (writer) write_checkpoint(job->checkpoint(), make_checkpoint(*all, c, resolved));
        }))
      break;
  }
  comm.check();  // rank 0 wrote this observation's files (or failed: every rank stops)
  res.observations = c.next_obs;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!writer) {
    res.finished = !res.interrupted;
    return res;
  }
  for (Index k = 0; k < all->size(); ++k) res.states.push_back(all->flow_state(k).integrator);
  res.last = rows;
  if (res.interrupted) {
    job->keep();
    return res;
  }
  if (cfg.final_states) write_positions(job->path("final.npy"), *all);
  nlohmann::json summary = summary_json(cfg, *all, diags, c, rows, opt, res.seconds, warnings, ens.get());
  summary["points_split"] = res.points_split;
  job->write_summary(summary);
  job->commit();
  if (!rows.empty()) progress->finish(status_text(cfg, rows));
  res.finished = true;
  return res;
}

}  // namespace

RunResult run_experiment(const RunConfig& cfg, const std::string& resolved, const RunOptions& opt) {
  if (opt.comm && opt.comm->size() > 1) return run_distributed(cfg, resolved, opt, *opt.comm);
  Job job({.kind = "run", .out_dir = opt.out_dir, .version = opt.version, .resumable = true,
           .resume = opt.resume, .outputs = kRunOutputs, .noun = "run", .marker = ""});
  RunResult res;
  if (job.finished_before()) {
    res.already_finished = true;
    return res;
  }
  apply_compute(cfg.device, cfg.precision);  // [compute]: the process-wide device (may throw)
  Ensemble e = make_ensemble(cfg, 0, -1, nullptr, opt.starts);  // validates the flow options: may throw, nothing created yet
  Cursor c;
  if (job.has_checkpoint()) {
    const Checkpoint ck = read_checkpoint(job.checkpoint());
    job.require_same_config(ck.config, resolved);
    c = restore(e, ck);
  }  // a resume without a checkpoint yet starts over
  return run_loop(cfg, resolved, opt, e, c, job);
}

}  // namespace attnflow
