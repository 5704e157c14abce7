// The experiment runner end to end (library level): the output directory, the trajectory
// against an independent dense Euler + retraction implementation of SA, observables.csv
// against dense observables, resume == uninterrupted and 1 thread == 2 threads bit for bit,
// and no output left behind on failure.
#include "attnflow/run/runner.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/io/csv.hpp"
#include "attnflow/io/npy.hpp"
#include "attnflow/base/parallel.hpp"
#include "run_test_util.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::fresh_dir;
using test::ParsedRun;
using test::parse_run;
using test::run_quietly;
using test::expect_same_outputs;
using test::names;
using test::same_file;

namespace fs = std::filesystem;

// The runner and the dense reference do the same float64 arithmetic in a different order
// (tiled online softmax vs materialized scores); 30 Euler steps amplify that only mildly.
constexpr double kTrajectoryTol = 1e-11;

// Independent dense SA step with Q = K = V = I (the published NumPy code): scores beta X X^T,
// row softmax, A = P X, tangent projection, Euler step, renormalize rows.
Matrix dense_sa_euler(Matrix x, double beta, double dt, int steps) {
  const Index n = x.rows();
  for (int s = 0; s < steps; ++s) {
    const Matrix scores = beta * x * x.transpose();
    Matrix v(n, x.cols());
    for (Index i = 0; i < n; ++i) {
      const double m = scores.row(i).maxCoeff();
      Eigen::RowVectorXd a = Eigen::RowVectorXd::Zero(x.cols());
      double z = 0.0;
      for (Index j = 0; j < n; ++j) {
        const double e = std::exp(scores(i, j) - m);
        z += e;
        a += e * x.row(j);
      }
      a /= z;
      v.row(i) = a - a.dot(x.row(i)) * x.row(i);
    }
    x += dt * v;
    for (Index i = 0; i < n; ++i) x.row(i).normalize();
  }
  return x;
}

// Dense observables of docs/math.md section 5 with uniform weights.
double dense_energy(const Matrix& x, double beta) {
  const double n = static_cast<double>(x.rows());
  double e = 0.0;
  for (Index i = 0; i < x.rows(); ++i)
    for (Index j = 0; j < x.rows(); ++j) e += std::exp(beta * x.row(i).dot(x.row(j)));
  return e / (2.0 * beta * n * n);
}
int dense_clusters(const Matrix& x, double delta) {
  const Index n = x.rows();
  std::vector<Index> parent(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) parent[i] = i;
  auto find = [&](Index i) {
    while (parent[i] != i) i = parent[i];
    return i;
  };
  for (Index i = 0; i < n; ++i)
    for (Index j = i + 1; j < n; ++j)
      if (x.row(i).dot(x.row(j)) > 1.0 - delta) parent[find(i)] = find(j);
  int c = 0;
  for (Index i = 0; i < n; ++i) c += find(i) == i;
  return c;
}

const char* kSmall =
    "[measure]\nn = 24\nd = 3\nseed = 11\n[model]\nbeta = 4.0\n[integrate]\nmethod = \"euler\"\ndt = 0.1\n"
    "t_end = 3.0\n[observe]\nevery = 0.5\ndelta = 0.05\n[output]\ncheckpoint_every = 2\n";

TEST(Runner, WritesTheOutputDirectoryAndMatchesADenseEulerReference) {
  const ParsedRun p = parse_run(kSmall);
  const std::string dir = fresh_dir("dense");
  const RunResult r = run_quietly(p, dir);
  ASSERT_TRUE(r.finished);
  EXPECT_EQ(r.observations, 7);  // t = 0, 0.5, ..., 3
  for (const char* f : {"config.toml", "observables.csv", "final.npy", "summary.json", "snapshots/snap_000000.npy",
                        "snapshots/snap_000006.npy"})
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
  EXPECT_FALSE(fs::exists(dir + "/checkpoint.bin"));  // removed once finished
  EXPECT_EQ(read_file(dir + "/config.toml"), p.resolved);

  const Matrix x0 = initial_positions(p.cfg, 0);
  EXPECT_TRUE(test::all_close(read_npy_matrix(dir + "/snapshots/snap_000000.npy"), x0, 0.0, 0.0));
  const Matrix ref = dense_sa_euler(x0, 4.0, 0.1, 30);
  const Matrix fin = read_npy_matrix(dir + "/final.npy");
  EXPECT_TRUE(test::all_close(fin, ref, kTrajectoryTol, kTrajectoryTol));
  EXPECT_TRUE(test::all_close(read_npy_matrix(dir + "/snapshots/snap_000002.npy"), dense_sa_euler(x0, 4.0, 0.1, 10),
                              kTrajectoryTol, kTrajectoryTol));

  const CsvTable csv = read_csv(dir + "/observables.csv");
  ASSERT_EQ(csv.header, observable_columns());
  ASSERT_EQ(csv.values.rows(), 7);
  const auto col = [&](const std::string& name) {
    return static_cast<Index>(std::find(csv.header.begin(), csv.header.end(), name) - csv.header.begin());
  };
  for (Index k = 0; k < 7; ++k) {
    EXPECT_EQ(csv.values(k, col("t")), 0.5 * static_cast<double>(k));
    EXPECT_EQ(csv.values(k, col("system")), 0.0);
    if (k > 0) {  // docs/math.md section 5: E_beta is non-decreasing along SA
      EXPECT_GE(csv.values(k, col("energy")), csv.values(k - 1, col("energy")));
    }
  }
  // Energy is a sum of n^2 positive terms: relative agreement to a few ulps times n.
  EXPECT_NEAR(csv.values(6, col("energy")), dense_energy(fin, 4.0), 1e-12 * dense_energy(fin, 4.0));
  EXPECT_EQ(csv.values(6, col("clusters")), dense_clusters(fin, 0.05));
  EXPECT_EQ(csv.values(0, col("clusters")), dense_clusters(x0, 0.05));

  const auto summary = nlohmann::json::parse(read_file(dir + "/summary.json"));
  EXPECT_EQ(summary["kind"], "run");
  EXPECT_EQ(summary["status"], "finished");
  EXPECT_EQ(summary["steps"], 30);
  EXPECT_EQ(summary["final"][0]["clusters"].get<double>(), dense_clusters(fin, 0.05));
  EXPECT_TRUE(summary.contains("attnflow_version"));
}

void check_resume(const std::string& text, const std::string& name) {
  const ParsedRun p = parse_run(text);
  const std::string whole = fresh_dir(name + "_whole"), cut = fresh_dir(name + "_cut");
  ASSERT_TRUE(run_quietly(p, whole).finished);
  const RunResult first = run_quietly(p, cut, false, 2);  // "killed" right after its 2nd checkpoint
  ASSERT_TRUE(first.interrupted);
  EXPECT_FALSE(fs::exists(cut + "/final.npy"));
  EXPECT_TRUE(fs::exists(cut + "/checkpoint.bin"));
  // Rows written after the checkpoint would be duplicated without truncation: append junk.
  {
    std::FILE* f = std::fopen((cut + "/observables.csv").c_str(), "ab");
    std::fputs("99,0,junk from after the checkpoint\n", f);
    std::fclose(f);
  }
  const RunResult second = run_quietly(p, cut, true);
  ASSERT_TRUE(second.finished);
  expect_same_outputs(whole, cut);
  EXPECT_TRUE(run_quietly(p, cut, true).already_finished);
}

TEST(Runner, ResumeEqualsUninterruptedBitForBit) {
  check_resume(kSmall, "euler");
}

TEST(Runner, ResumeEqualsUninterruptedForDopri5NoiseAndEnsembles) {
  check_resume(
      "[measure]\nn = 16\nd = 3\nsystems = 3\n[model]\nkind = \"usa\"\nbeta = 2.0\n[integrate]\n"
      "method = \"dopri5\"\nt_end = 2.0\nrtol = 1e-8\natol = 1e-10\n[observe]\nevery = 0.25\n"
      "[output]\ncheckpoint_every = 2\n",
      "dopri5_ensemble");
  check_resume(
      "[measure]\nn = 16\nd = 3\nsystems = 2\n[model]\nbeta = 3.0\nkappa = 20.0\n[integrate]\ndt = 0.05\n"
      "t_end = 2.0\n[observe]\nevery = 0.25\n[output]\ncheckpoint_every = 3\n",
      "noisy");
  check_resume(
      "[measure]\nn = 12\nd = 4\n[model]\nbeta = 1.0\nscheme = \"pre-ln\"\n[integrate]\nmethod = \"rk4\"\n"
      "dt = 0.1\nt_end = 2.0\n[observe]\nevery = 0.3\n[output]\ncheckpoint_every = 1\n",
      "preln_offgrid");
}

// Under pre-LN the radii grow like t; the observables are the directions'
// (dense clusters and energy of the normalized final.npy), the radii are columns of their own,
// and no observable is infinite (on r theta the energy overflowed from t = 12 at beta = 9).
TEST(Runner, PreLnObservablesAreThoseOfTheDirectionsWithTheRadiusApart) {
  const ParsedRun p = parse_run(
      "[measure]\nn = 32\nd = 3\nseed = 5\n[model]\nbeta = 9.0\nscheme = \"pre-ln\"\n[integrate]\n"
      "dt = 0.1\nt_end = 20.0\n[observe]\nevery = 4.0\ndelta = 0.01\n[output]\nsnapshots = false\n");
  const std::string dir = fresh_dir("preln");
  ASSERT_TRUE(run_quietly(p, dir).finished);
  const Matrix x = read_npy_matrix(dir + "/final.npy");
  Matrix theta = x;
  Vector r(x.rows());
  for (Index i = 0; i < x.rows(); ++i) {
    r[i] = x.row(i).norm();
    theta.row(i) /= r[i];
  }
  ASSERT_GT(r.maxCoeff(), 10.0);  // the radius did grow: r theta would give e^{9 r^2} = inf
  const CsvTable t = read_csv(dir + "/observables.csv");
  const auto col = [&](const std::string& name) {
    const auto it = std::find(t.header.begin(), t.header.end(), name);
    EXPECT_NE(it, t.header.end()) << name;
    return static_cast<Index>(it - t.header.begin());
  };
  const Index last = t.values.rows() - 1;
  EXPECT_TRUE(t.values.allFinite());
  EXPECT_EQ(t.values(last, col("clusters")), dense_clusters(theta, 0.01));
  EXPECT_NEAR(t.values(last, col("energy")), dense_energy(theta, 9.0), 1e-12 * dense_energy(theta, 9.0));
  EXPECT_NEAR(t.values(last, col("radius_mean")), r.mean(), 1e-12 * r.mean());
  EXPECT_EQ(t.values(last, col("radius_min")), r.minCoeff());
  EXPECT_EQ(t.values(last, col("radius_max")), r.maxCoeff());
  EXPECT_NEAR(t.values(0, col("radius_max")), 1.0, 1e-15);
  const auto s = nlohmann::json::parse(read_file(dir + "/summary.json"));
  EXPECT_EQ(s["final"][0]["radius_max"].get<double>(), r.maxCoeff());
  EXPECT_TRUE(s["warnings"].empty());
}

// The one observable allowed to be infinite, energy beyond 1e308 (beta = 1000: the i = j terms
// alone give e^1000), is named in summary.json's warnings with its time; log_energy is finite.
TEST(Runner, EnergyOverflowIsAWarningNamingIt) {
  const ParsedRun p = parse_run(
      "[measure]\nn = 8\nd = 3\n[model]\nbeta = 1000.0\n[integrate]\ndt = 0.01\nt_end = 0.02\n[observe]\n"
      "every = 0.01\n[output]\nsnapshots = false\n");
  const std::string dir = fresh_dir("overflow");
  ASSERT_TRUE(run_quietly(p, dir).finished);
  const auto s = nlohmann::json::parse(read_file(dir + "/summary.json"));
  ASSERT_EQ(s["warnings"].size(), 1u);
  const std::string w = s["warnings"][0].get<std::string>();
  EXPECT_EQ(w.rfind("energy = inf from t = 0 (system 0)", 0), 0u) << w;
  EXPECT_TRUE(std::isfinite(s["final"][0]["log_energy"].get<double>()));
}

// Ensembles on the batched path: resume, and ensemble.csv (with per-system rows off).
TEST(Runner, ResumeEqualsUninterruptedForBatchedEnsembleSummaries) {
  check_resume(
      "[measure]\nn = 12\nd = 4\nsystems = 11\n[model]\nbeta = 3.0\n[integrate]\nmethod = \"residual\"\n"
      "dt = 0.1\nt_end = 2.0\n[observe]\nevery = 0.25\nper_system = false\n[output]\ncheckpoint_every = 2\n",
      "batched_summaries");
  // d > n: the checkpoint holds coordinates and bases (Ensemble::saved_state).
  check_resume(
      "[measure]\nn = 6\nd = 20\nsystems = 11\n[model]\nbeta = 3.0\n[integrate]\nmethod = \"residual\"\n"
      "dt = 0.1\nt_end = 2.0\n[observe]\nevery = 0.25\nper_system = false\n[output]\ncheckpoint_every = 2\n",
      "batched_reduced");
}

// p (9 systems, 21 observations, checkpoint_every = 7) run with 1, 3 and the automatic number
// of observation times per call, and stopped after its 2nd checkpoint then resumed: the same
// files byte for byte; the calls end at each checkpoint's observation (7 is not a divisor of 21).
void expect_same_files_for_any_calls_per_run(const ParsedRun& p, const std::string& tag, bool gpu_emulation) {
  const auto run = [&](const std::string& dir, std::int64_t per_call, bool resume = false, long stop_after = 0) {
    std::int64_t seen = 0;  // observations handed to on_observation
    const RunResult r = run_quietly(p, dir, resume, stop_after, [&](RunOptions& o) {
      o.gpu_emulation = gpu_emulation;
      o.observations_per_call = per_call;
      o.on_observation = [&](const std::vector<ObservationRow>& rows) {
        EXPECT_EQ(rows.size(), 9u);
        ++seen;
      };
    });
    return std::make_pair(r, seen);
  };
  const std::string one = fresh_dir("calls_one_" + tag);
  const auto [r1, n1] = run(one, 1);
  ASSERT_TRUE(r1.finished);
  EXPECT_EQ(n1, 21);
  for (const std::int64_t per_call : {std::int64_t{0}, std::int64_t{3}}) {
    const std::string many = fresh_dir("calls_" + std::to_string(per_call) + "_" + tag);
    const auto [r, n] = run(many, per_call);
    ASSERT_TRUE(r.finished);
    EXPECT_EQ(n, 21);
    expect_same_outputs(one, many);
  }
  const std::string cut = fresh_dir("calls_cut_" + tag);
  const auto [first, n_first] = run(cut, 0, false, 2);  // stopped after its 2nd checkpoint
  ASSERT_TRUE(first.interrupted);
  EXPECT_EQ(n_first, 14);  // observations 0 .. 13: each call ended at a checkpoint
  EXPECT_EQ(first.observations, 14);
  const auto [second, n_second] = run(cut, 0, true);
  ASSERT_TRUE(second.finished);
  EXPECT_EQ(n_second, 7);
  expect_same_outputs(one, cut);
}

ParsedRun many_calls_run(const char* d, const char* precision) {
  return parse_run(std::string("[measure]\nn = 6\nd = ") + d +
                   "\nsystems = 9\n[model]\nbeta = 2.5\n[integrate]\nmethod = \"residual\"\n"
                   "dt = 0.1\nt_end = 2.0\n[observe]\nevery = 0.1\nclusters = false\n"
                   "[output]\ncheckpoint_every = 7\n[compute]\nprecision = \"" +
                   precision + "\"\n");
}

// The ensemble's GPU path (emulated on the host: RunOptions::gpu_emulation) takes many
// observation times per call (Ensemble::advance_observe_each, several per launch): the same
// files for any number per call and across a stop and resume.
TEST(Runner, GpuPathObservesManyTimesPerCallWithTheSameOutputs) {
  for (const char* d : {"3", "20"}) {  // 20 > n: the span form
    SCOPED_TRACE(d);
    expect_same_files_for_any_calls_per_run(many_calls_run(d, "float64"), std::string("gpu_") + d, true);
  }
}

// The CPU's batched path takes a pass of observation times per call (Ensemble::
// observations_per_pass: each block runs through them while its state is in cache): the same
// files for any number per call and across a stop and resume, in float64 and float32.
TEST(Runner, CpuBatchedPathObservesManyTimesPerCallWithTheSameOutputs) {
  for (const char* d : {"3", "20"}) {  // 20 > n: the span form
    for (const char* precision : {"float64", "float32"}) {
      SCOPED_TRACE(std::string(d) + " " + precision);
      expect_same_files_for_any_calls_per_run(many_calls_run(d, precision), std::string("cpu_") + d + "_" + precision,
                                              false);
    }
  }
}

// measure.reduce_span = false keeps the d coordinates on the batched path: the same points to
// rounding (the reduction is exact in exact arithmetic).
TEST(Runner, ReduceSpanOffGivesThePointsToRounding) {
  const std::string head = "[measure]\nn = 6\nd = 20\nsystems = 9\n";
  const std::string rest =
      "[model]\nbeta = 3.0\n[integrate]\nmethod = \"rk4\"\ndt = 0.1\nt_end = 1.0\n[observe]\nevery = 0.5\n";
  const ParsedRun on = parse_run(head + rest), off = parse_run(head + "reduce_span = false\n" + rest);
  EXPECT_TRUE(on.cfg.reduce_span);
  EXPECT_FALSE(off.cfg.reduce_span);
  const std::string a = fresh_dir("span_on"), b = fresh_dir("span_off");
  ASSERT_TRUE(run_quietly(on, a).finished);
  ASSERT_TRUE(run_quietly(off, b).finished);
  const NpyArray xa = read_npy(a + "/final.npy"), xb = read_npy(b + "/final.npy");
  ASSERT_EQ(xa.shape, (std::vector<Index>{9, 6, 20}));
  ASSERT_EQ(xb.shape, xa.shape);
  double diff = 0.0, norm = 0.0;
  for (std::size_t k = 0; k < xa.data.size(); ++k) {
    diff = std::max(diff, std::abs(xa.data[k] - xb.data[k]));
    norm = std::max(norm, std::abs(xb.data[k]));
  }
  EXPECT_LT(diff, 1e-12 * norm);
  EXPECT_GT(diff, 0.0);  // another summation order: the two paths did run
}

// ensemble.csv: per time, count / mean / stderr / quantiles of every column of the
// per-system rows, computed here from observables.csv; per_system = false writes the same
// ensemble.csv and only the header of observables.csv.
TEST(Runner, EnsembleCsvSummarizesThePerSystemRows) {
  const std::string base =
      "[measure]\nn = 10\nd = 3\nsystems = 5\nseed = 2\n[model]\nbeta = 2.0\n[integrate]\nmethod = \"residual\"\n"
      "t_end = 3.0\n[observe]\nevery = 1.5\ndelta = 0.05\nquantiles = [0.5, 1.0]\n";
  const ParsedRun p = parse_run(base), q = parse_run(base + "per_system = false\n");
  const std::string a = fresh_dir("ens_rows"), b = fresh_dir("ens_summary");
  ASSERT_TRUE(run_quietly(p, a).finished);
  ASSERT_TRUE(run_quietly(q, b).finished);
  EXPECT_TRUE(same_file(a + "/ensemble.csv", b + "/ensemble.csv"));
  const std::string header = read_file(b + "/observables.csv");
  EXPECT_EQ(std::count(header.begin(), header.end(), '\n'), 1);
  // summary.json: with per-system rows "final" has every system's last observation; without,
  // none, and "final_ensemble" the last observation's statistics (checked below).
  const auto sa = nlohmann::json::parse(read_file(a + "/summary.json"));
  const auto sb = nlohmann::json::parse(read_file(b + "/summary.json"));
  EXPECT_EQ(sa["final"].size(), 5u);
  EXPECT_FALSE(sa.contains("final_ensemble"));
  EXPECT_TRUE(sb["final"].empty());
  ASSERT_TRUE(sb.contains("final_ensemble"));
  EXPECT_EQ(sb["final_ensemble"]["t"].get<double>(), 3.0);
  const CsvTable rows = read_csv(a + "/observables.csv");
  ASSERT_EQ(rows.values.rows(), 15);  // 3 times x 5 systems
  // ensemble.csv: t, statistic, then the observables; 5 rows per time.
  const std::string text = read_file(a + "/ensemble.csv");
  std::vector<std::vector<std::string>> lines;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t end = text.find('\n', pos);
    std::vector<std::string> f;
    std::size_t c = pos;
    while (c <= end) {
      const std::size_t comma = std::min(text.find(',', c), end);
      f.push_back(text.substr(c, comma - c));
      c = comma + 1;
    }
    lines.push_back(f);
    pos = end + 1;
  }
  ASSERT_EQ(lines.size(), 1u + 3 * 5);
  const std::vector<std::string> names = observable_names();
  ASSERT_EQ(lines[0][1], "statistic");
  for (int k = 0; k < 3; ++k) {
    const auto& cnt = lines[1 + 5 * k];
    EXPECT_EQ(cnt[1], "count");
    EXPECT_EQ(lines[2 + 5 * k][1], "mean");
    EXPECT_EQ(lines[3 + 5 * k][1], "stderr");
    EXPECT_EQ(lines[4 + 5 * k][1], "q0.5");
    EXPECT_EQ(lines[5 + 5 * k][1], "q1");
    for (std::size_t o = 0; o < names.size(); ++o) {
      std::vector<double> v;
      for (Index s = 0; s < 5; ++s) v.push_back(rows.values(5 * k + s, static_cast<Index>(2 + o)));
      double m = 0, ss = 0;
      for (double x : v) m += x;
      m /= 5.0;
      for (double x : v) ss += (x - m) * (x - m);
      std::sort(v.begin(), v.end());
      EXPECT_EQ(std::stod(cnt[2 + o]), 5.0) << names[o];
      EXPECT_DOUBLE_EQ(std::stod(lines[2 + 5 * k][2 + o]), m) << names[o];
      EXPECT_NEAR(std::stod(lines[3 + 5 * k][2 + o]), std::sqrt(ss / 4.0 / 5.0), 1e-15 + 1e-12 * std::abs(m)) << names[o];
      EXPECT_EQ(std::stod(lines[4 + 5 * k][2 + o]), v[2]) << names[o];
      EXPECT_EQ(std::stod(lines[5 + 5 * k][2 + o]), v[4]) << names[o];
    }
  }
  // "final_ensemble" is ensemble.csv's last time, statistic by statistic.
  const auto& stats = sb["final_ensemble"]["statistics"];
  for (int r = 0; r < 5; ++r) {
    const auto& line = lines[1 + 5 * 2 + r];
    for (std::size_t o = 0; o < names.size(); ++o)
      EXPECT_EQ(stats[line[1]][names[o]].get<double>(), std::stod(line[2 + o])) << line[1] << " " << names[o];
  }
}

// observe.on_steps: every 0.15 with steps of 0.1 observes on the first step at or after each
// k * 0.15 (0, 0.2, 0.3, 0.5, ...; the published phase-diagram code's cadence), never
// shortening a step: the rows and final points are those of a run observing every step, at
// those steps, byte for byte; without on_steps the run shortens steps to land on k * 0.15.
TEST(Runner, OnStepsObservesOnTheFirstStepAtOrAfterEachTime) {
  const std::string base =
      "[measure]\nn = 7\nd = 3\nsystems = 3\nseed = 4\n[model]\nbeta = 3.0\n[integrate]\nmethod = \"residual\"\n"
      "dt = 0.1\nt_end = 2.0\n[observe]\ndelta = 0.05\n";
  const ParsedRun every_step = parse_run(base + "every = 0.1\n");
  const ParsedRun on_steps = parse_run(base + "every = 0.15\non_steps = true\n");
  const ParsedRun shortened = parse_run(base + "every = 0.15\n");
  const std::string a = fresh_dir("on_steps_all"), b = fresh_dir("on_steps"), c = fresh_dir("on_steps_off");
  ASSERT_TRUE(run_quietly(every_step, a).finished);
  ASSERT_TRUE(run_quietly(on_steps, b).finished);
  ASSERT_TRUE(run_quietly(shortened, c).finished);
  const auto sb = nlohmann::json::parse(read_file(b + "/summary.json"));
  const std::vector<int> steps{0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20};
  const auto times = sb["observation_times"].get<std::vector<double>>();
  ASSERT_EQ(times.size(), steps.size());
  for (std::size_t k = 0; k < steps.size(); ++k) EXPECT_EQ(times[k], steps[k] * 0.1) << k;
  EXPECT_EQ(sb["steps"].get<long>(), 3 * 20);  // no shortened step
  EXPECT_TRUE(sb["on_steps"].get<bool>());
  // Its rows are the every-step run's rows at those steps (3 systems a time), byte for byte.
  std::vector<std::string> all, picked;
  std::istringstream ia(read_file(a + "/observables.csv")), ib(read_file(b + "/observables.csv"));
  for (std::string line; std::getline(ia, line);) all.push_back(line);
  for (std::string line; std::getline(ib, line);) picked.push_back(line);
  ASSERT_EQ(all.size(), 1u + 21 * 3);
  ASSERT_EQ(picked.size(), 1u + steps.size() * 3);
  EXPECT_EQ(picked[0], all[0]);
  for (std::size_t k = 0; k < steps.size(); ++k)
    for (std::size_t s = 0; s < 3; ++s)
      EXPECT_EQ(picked[1 + 3 * k + s], all[1 + 3 * static_cast<std::size_t>(steps[k]) + s]) << k << " " << s;
  EXPECT_TRUE(same_file(a + "/final.npy", b + "/final.npy"));
  // Without on_steps, the steps shorten to land on 0.15, 0.45, ...: other points, more steps.
  const auto sc = nlohmann::json::parse(read_file(c + "/summary.json"));
  EXPECT_EQ(sc["observation_times"][1].get<double>(), 0.15);
  EXPECT_GT(sc["steps"].get<long>(), 3 * 20);
  EXPECT_FALSE(same_file(a + "/final.npy", c + "/final.npy"));
}

// The same on the GPU path (its block algorithm emulated on the host: the launches' step
// plans take the grid's times as they come): the every-step run's rows at those steps.
TEST(Runner, OnStepsOnTheGpuPathObservesTheSameSteps) {
  const std::string base =
      "[measure]\nn = 7\nd = 3\nsystems = 3\nseed = 4\n[model]\nbeta = 3.0\n[integrate]\nmethod = \"residual\"\n"
      "dt = 0.1\nt_end = 2.0\n[observe]\ndelta = 0.05\nclusters = false\n";
  const auto emulated = [](RunOptions& o) { o.gpu_emulation = true; };
  const std::string a = fresh_dir("on_steps_gpu_all"), b = fresh_dir("on_steps_gpu");
  ASSERT_TRUE(run_quietly(parse_run(base + "every = 0.1\n"), a, false, 0, emulated).finished);
  ASSERT_TRUE(run_quietly(parse_run(base + "every = 0.15\non_steps = true\n"), b, false, 0, emulated).finished);
  std::vector<std::string> all, picked;
  std::istringstream ia(read_file(a + "/observables.csv")), ib(read_file(b + "/observables.csv"));
  for (std::string line; std::getline(ia, line);) all.push_back(line);
  for (std::string line; std::getline(ib, line);) picked.push_back(line);
  const std::vector<std::size_t> steps{0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20};
  ASSERT_EQ(all.size(), 1u + 21 * 3);
  ASSERT_EQ(picked.size(), 1u + steps.size() * 3);
  for (std::size_t k = 0; k < steps.size(); ++k)
    for (std::size_t s = 0; s < 3; ++s) EXPECT_EQ(picked[1 + 3 * k + s], all[1 + 3 * steps[k] + s]) << k << " " << s;
  EXPECT_TRUE(same_file(a + "/final.npy", b + "/final.npy"));
  EXPECT_EQ(nlohmann::json::parse(read_file(b + "/summary.json"))["steps"].get<long>(), 3 * 20);
}

TEST(Runner, OneThreadEqualsTwoThreadsBitForBit) {
  const ParsedRun p = parse_run(
      "[measure]\nn = 300\nd = 3\nsystems = 2\n[model]\nbeta = 5.0\n[integrate]\nmethod = \"rk4\"\ndt = 0.1\n"
      "t_end = 1.0\n[observe]\nevery = 0.5\n");
  const std::string one = fresh_dir("threads1"), two = fresh_dir("threads2");
  set_num_threads(1);
  run_quietly(p, one);
  set_num_threads(2);
  run_quietly(p, two);
  set_num_threads(0);
  expect_same_outputs(one, two);
}

// The config -> flow mapping: Kuramoto (angles) equals SA / USA on the circle (docs/math.md
// section 5), each in its own run directory with points (cos t, sin t) in final.npy.
TEST(Runner, KuramotoRunEqualsSaAndUsaRunsOnTheCircle) {
  // Both forms are solved by dopri5 at rtol = atol = 1e-12, so each is within about 100 tol
  // of the exact solution of the same ODE (angle vs point parametrization): 1e-8 apart.
  constexpr double kFormTol = 1e-8;
  const std::string base =
      "[measure]\nn = 10\nd = 2\nseed = 3\n[integrate]\nmethod = \"dopri5\"\nrtol = 1e-12\natol = 1e-12\n"
      "t_end = 2.0\n[observe]\nevery = 1.0\n";
  for (const char* form : {"sa", "usa"}) {
    const ParsedRun k = parse_run(base + "[model]\nkind = \"kuramoto\"\nbeta = 2.0\nkuramoto_form = \"" + form + "\"\n");
    const ParsedRun s = parse_run(base + "[model]\nkind = \"" + form + "\"\nbeta = 2.0\n");
    const std::string dk = fresh_dir(std::string("kuramoto_") + form), ds = fresh_dir(std::string("circle_") + form);
    run_quietly(k, dk);
    run_quietly(s, ds);
    const Matrix xk = read_npy_matrix(dk + "/final.npy"), xs = read_npy_matrix(ds + "/final.npy");
    ASSERT_EQ(xk.cols(), 2);
    EXPECT_TRUE(test::all_close(xk, xs, 0.0, kFormTol)) << form;
    EXPECT_GT((xk - initial_positions(k.cfg, 0)).norm(), 1e-2);  // the tokens did move
  }
}

// Every model kind, scheme and option path of the schema runs to a finished directory with
// finite outputs of the documented shapes.
TEST(Runner, EveryModelKindAndSchemeRuns) {
  const std::vector<std::string> models = {
      "kind = \"sa\"\nheads = 2\nqkv = \"gaussian\"\nqkv_seed = 4",
      "kind = \"usa\"\nqkv = \"goe\"",
      "kind = \"sinkhorn\"\nsinkhorn_iterations = 3",
      "kind = \"sinkhorn\"",
      "kind = \"meanshift\"",
      "kind = \"hardmax\"",
      "kind = \"vlasov\"\ninteraction = \"gaussian\"\nsigma = 0.5\nsphere = false",
      "kind = \"vlasov\"\ninteraction = \"power\"\nsphere = false",
      "kind = \"sa\"\nkappa = 50.0",
      "kind = \"sa\"\nscheme = \"peri-ln\"",
      "kind = \"sa\"\nscheme = \"mix-ln\"\ntau = 0.3",
      "kind = \"sa\"\nscheme = \"ngpt\"\nalpha = 2.0",
      "kind = \"usa\"\nscheme = \"sqrt\"",
      "kind = \"sa\"\ngamma = 1.5",
  };
  int i = 0;
  for (const auto& m : models) {
    const ParsedRun p = parse_run("[measure]\nn = 9\nd = 3\nsystems = 2\ninit = \"gaussian\"\n[model]\nbeta = 2.0\n" + m +
                           "\n[integrate]\ndt = 0.05\nt_end = 0.5\n[observe]\nevery = 0.25\n");
    const std::string dir = fresh_dir("kind" + std::to_string(i++));
    ASSERT_TRUE(run_quietly(p, dir).finished) << m;
    const NpyArray fin = read_npy(dir + "/final.npy");
    EXPECT_EQ(fin.shape, (std::vector<Index>{2, 9, 3})) << m;
    for (double v : fin.data) ASSERT_TRUE(std::isfinite(v)) << m;
    const CsvTable csv = read_csv(dir + "/observables.csv");
    EXPECT_EQ(csv.values.rows(), 6) << m;  // 3 times x 2 systems
    EXPECT_TRUE(csv.values.allFinite()) << m;
  }
}

// [model] sinkhorn_tol and sinkhorn_max_iterations reach the normalization: a cap of one
// iteration misses a tight tolerance at every field evaluation (reported in summary.json,
// the run still finishes), a loose tolerance converges everywhere and ends elsewhere than a
// tight one.
TEST(Runner, SinkhornToleranceAndIterationCapReachTheFlow) {
  const std::string base =
      "[measure]\nn = 12\nd = 3\n[model]\nkind = \"sinkhorn\"\nbeta = 4.0\n";
  const std::string tail = "\n[integrate]\ndt = 0.1\nt_end = 0.5\n[observe]\nevery = 0.5\n";
  const auto summary_of = [&](const std::string& model, const std::string& name) {
    const std::string dir = fresh_dir(name);
    EXPECT_TRUE(run_quietly(parse_run(base + model + tail), dir).finished) << model;
    return std::make_pair(nlohmann::json::parse(read_file(dir + "/summary.json")),
                          read_npy(dir + "/final.npy").data);
  };
  const auto [capped, x_capped] = summary_of("sinkhorn_tol = 1e-13\nsinkhorn_max_iterations = 1", "sk_cap");
  EXPECT_FALSE(capped["converged"].get<bool>());
  EXPECT_EQ(capped["sinkhorn_not_converged"].get<long>(), capped["field_evaluations"].get<long>());
  const auto [loose, x_loose] = summary_of("sinkhorn_tol = 1e-2", "sk_loose");
  EXPECT_TRUE(loose["converged"].get<bool>());
  EXPECT_EQ(loose["sinkhorn_not_converged"].get<long>(), 0);
  const auto [tight, x_tight] = summary_of("sinkhorn_tol = 1e-12", "sk_tight");
  EXPECT_TRUE(tight["converged"].get<bool>());
  EXPECT_NE(x_loose, x_tight);
}

TEST(Runner, RefusesToOverwriteAndLeavesNothingBehindOnFailure) {
  const ParsedRun p = parse_run(kSmall);
  const std::string dir = fresh_dir("twice");
  run_quietly(p, dir);
  EXPECT_TRUE(test::throws_with([&] { run_quietly(p, dir); }, "already holds a run (use --resume"));
  // A resume with another config is refused.
  const std::string cut2 = fresh_dir("other_config2");
  run_quietly(p, cut2, false, 1);
  ParsedRun r = parse_run(kSmall);
  r.resolved += "# changed\n";
  EXPECT_TRUE(test::throws_with([&] { run_quietly(r, cut2, true); }, "--resume: the configuration differs"));
  // A run that blows up (non-finite state at a huge step) removes the directory it created.
  const ParsedRun bad = parse_run(
      "[measure]\nn = 8\nd = 3\n[model]\nkind = \"usa\"\nbeta = 700.0\nsphere = false\n[integrate]\ndt = 1e6\n"
      "t_end = 1e7\n[observe]\nevery = 1e6\n");  // 11 observations: within the size limits
  const std::string gone = fresh_dir("diverges");
  EXPECT_THROW(run_quietly(bad, gone), std::runtime_error);
  EXPECT_FALSE(fs::exists(gone));
  // A bad initial file is reported before anything is created.
  const ParsedRun f = parse_run("[measure]\ninit = \"file\"\nfile = \"/nonexistent/x.npy\"\n");
  const std::string none = fresh_dir("badfile");
  EXPECT_ANY_THROW(run_quietly(f, none));
  EXPECT_FALSE(fs::exists(none));
}

}  // namespace
}  // namespace attnflow
