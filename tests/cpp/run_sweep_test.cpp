// Sweeps: grid parsing and enumeration, each point equal to the same run done alone, the tidy
// table, and a killed sweep resumed equal to an uninterrupted one, on 1 or 2 jobs.
#include "attnflow/run/sweep.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/io/csv.hpp"
#include "attnflow/run/runner.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::fresh_dir;

namespace fs = std::filesystem;

const char* kSweep =
    "[measure]\nn = 12\nd = 3\n[model]\nbeta = 1.0\n[integrate]\ndt = 0.1\nt_end = 1.0\n[observe]\nevery = 0.5\n"
    "[output]\ncheckpoint_every = 1\nsnapshots = false\n"
    "[sweep]\nmodel.gamma = [0.5, 1.5]\nmeasure.seed = [3, 4, 5]\nmodel.scheme = [\"none\", \"pre-ln\"]\n";

SweepResult sweep(const std::string& dir, bool resume = false, int jobs = 1, long stop_after = 0) {
  SweepOptions o;
  o.out_dir = dir;
  o.resume = resume;
  o.jobs = jobs;
  o.stop_after_points = stop_after;
  o.progress = nullptr;
  return run_sweep(parse_sweep(kSweep, "s.toml"), o);
}

TEST(Sweep, ParsesAxesInFileOrderLastFastest) {
  const SweepGrid g = parse_sweep(kSweep, "s.toml");
  ASSERT_EQ(g.axes.size(), 3u);
  EXPECT_EQ(g.axes[0].key, "model.gamma");  // the file's order, not the alphabet's
  EXPECT_EQ(g.axes[1].key, "measure.seed");
  EXPECT_EQ(g.axes[2].key, "model.scheme");
  EXPECT_EQ(g.axes[2].values[1], "\"pre-ln\"");
  EXPECT_EQ(g.axes[2].labels[1], "pre-ln");
  EXPECT_EQ(g.size(), 12);
  EXPECT_EQ(g.coordinates(0), (std::vector<Index>{0, 0, 0}));
  EXPECT_EQ(g.coordinates(1), (std::vector<Index>{0, 0, 1}));
  EXPECT_EQ(g.coordinates(11), (std::vector<Index>{1, 2, 1}));
  EXPECT_EQ(g.base.find("sweep"), std::string::npos);
  EXPECT_TRUE(test::throws_with([] { parse_sweep("[model]\nbeta = 1\n", "x.toml"); }, "x.toml: a sweep needs a [sweep] table"));
  EXPECT_TRUE(test::throws_with([] { parse_sweep("[sweep]\nmodel.beta = []\n", "x.toml"); },
                                "x.toml: sweep.model.beta = [], must be a non-empty list"));
  // A bad value in any point is reported (naming the point and the key) before anything runs.
  SweepOptions o;
  o.out_dir = fresh_dir("bad");
  o.progress = nullptr;
  EXPECT_TRUE(test::throws_with([&] { run_sweep(parse_sweep("[sweep]\nobserve.delta = [0.1, 3.0]\n", "x.toml"), o); },
                                "x.toml [sweep point 1: observe.delta=3.0]: observe.delta = 3, must be in (0, 2)"));
  EXPECT_TRUE(test::throws_with([&] { run_sweep(parse_sweep("[sweep]\nmodel.betaa = [1]\n", "x.toml"), o); },
                                "unknown key 'model.betaa'"));
  EXPECT_FALSE(fs::exists(o.out_dir));
}

// Axes keep the user's order, from the file and from --set: a file listing
// model.beta then measure.seed runs beta first (slowest), whatever the alphabet says.
TEST(Sweep, AxesKeepTheOrderOfTheFileAndOfTheOverrides) {
  const std::string text = "[model]\nkind = \"sa\"\n[sweep]\nmodel.beta = [1, 2, 3, 4, 5]\nmeasure.seed = [0, 1, 2, 3]\n";
  auto keys = [](const SweepGrid& g) {
    std::vector<std::string> k;
    for (const auto& a : g.axes) k.push_back(a.key);
    return k;
  };
  using Keys = std::vector<std::string>;
  EXPECT_EQ(keys(parse_sweep(text, "s.toml")), (Keys{"model.beta", "measure.seed"}));
  // Sections in the file, in any layout, keep their place: a [sweep.x] table after the keys.
  EXPECT_EQ(keys(parse_sweep("[sweep]\nz.b = [1]\n[sweep.a]\nc = [2]\n", "s.toml")), (Keys{"z.b", "a.c"}));
  // Overriding an axis keeps its place; a new axis from --set comes last, in --set order.
  const SweepGrid g = parse_sweep(text, "s.toml", {"sweep.observe.delta=[0.1, 0.2]", "sweep.measure.seed=[7, 8]",
                                                     "sweep.integrate.dt=[0.1]", "model.kind=usa"});
  EXPECT_EQ(keys(g), (Keys{"model.beta", "measure.seed", "observe.delta", "integrate.dt"}));
  EXPECT_EQ(g.axes[1].labels, (std::vector<std::string>{"7", "8"}));
  EXPECT_NE(g.base.find("usa"), std::string::npos);
  EXPECT_EQ(keys(parse_sweep("[model]\nbeta = 1\n", "s.toml", {"sweep.model.beta=[1, 2]", "sweep.measure.n=[4]"})),
            (Keys{"model.beta", "measure.n"}));
}

// The sweep's "converged" is every point's, never a constant.
TEST(Sweep, ConvergedOnlyWhenEveryPointConverged) {
  SweepOptions o;
  o.out_dir = fresh_dir("unconverged");
  o.progress = nullptr;
  const SweepResult r = run_sweep(
      parse_sweep("[measure]\nn = 6\nd = 3\n[model]\nkind = \"sinkhorn\"\nsinkhorn_max_iterations = 1\n"
                  "sinkhorn_tol = 1e-12\n[integrate]\nt_end = 0.2\n[observe]\nevery = 0.1\n"
                  "[output]\nsnapshots = false\n[sweep]\nmodel.kind = [\"sa\", \"sinkhorn\"]\n", "s.toml"),
      o);
  ASSERT_TRUE(r.finished);
  const auto s = nlohmann::json::parse(read_file(o.out_dir + "/summary.json"));
  EXPECT_EQ(s["converged"], false);
  EXPECT_EQ(s["unconverged_points"], (nlohmann::json{1}));
  EXPECT_NE(s["message"].get<std::string>().find("1 of 2 points did not converge"), std::string::npos);
}

TEST(Sweep, PointsEqualStandaloneRunsAndTheTidyTableHasEveryRow) {
  const std::string dir = fresh_dir("whole");
  const SweepResult r = sweep(dir, false, 2);
  ASSERT_TRUE(r.finished);
  EXPECT_EQ(r.ran, 12);
  // Point 8 = (gamma 1.5, seed 4, scheme none): the same config run alone gives the same files.
  Config c = Config::parse(std::string(kSweep).substr(0, std::string(kSweep).find("[sweep]")), "alone");
  c.set("measure.seed=4");
  c.set("model.gamma=1.5");
  c.set("model.scheme=\"none\"");
  const RunConfig rc = parse_run_config(c);
  EXPECT_EQ(rc.beta, 1.5 * std::log(12.0));
  RunOptions o;
  o.out_dir = fresh_dir("alone");
  o.progress = nullptr;
  run_experiment(rc, c.resolved(), o);
  EXPECT_EQ(read_file(o.out_dir + "/final.npy"), read_file(dir + "/points/point_000008/final.npy"));
  EXPECT_EQ(read_file(o.out_dir + "/observables.csv"), read_file(dir + "/points/point_000008/observables.csv"));

  const std::string tidy = read_file(dir + "/sweep.csv");
  const std::string header = tidy.substr(0, tidy.find('\n'));
  EXPECT_EQ(header.rfind("point,model.gamma,measure.seed,model.scheme,t,system,log_energy,energy", 0), 0u) << header;
  EXPECT_EQ(std::count(tidy.begin(), tidy.end(), '\n'), 1 + 12 * 3);  // 3 observation times per point
  EXPECT_NE(tidy.find("\n8,1.5,4,none,1,0,"), std::string::npos);
  EXPECT_NE(tidy.find("\n11,1.5,5,pre-ln,0.5,0,"), std::string::npos);
  const auto summary = nlohmann::json::parse(read_file(dir + "/summary.json"));
  EXPECT_EQ(summary["axis_order"], (nlohmann::json{"model.gamma", "measure.seed", "model.scheme"}));
  EXPECT_EQ(summary["converged"], true);
}

TEST(Sweep, KilledSweepResumedEqualsUninterrupted) {
  const std::string whole = fresh_dir("u"), cut = fresh_dir("k");
  ASSERT_TRUE(sweep(whole, false, 1).finished);
  const SweepResult first = sweep(cut, false, 1, 4);  // 4 points done, the 5th stopped mid-run
  ASSERT_TRUE(first.interrupted);
  EXPECT_FALSE(fs::exists(cut + "/sweep.csv"));
  EXPECT_TRUE(fs::exists(cut + "/points/point_000004/checkpoint.bin"));
  EXPECT_TRUE(test::throws_with([&] { sweep(cut, false, 1); }, "already holds a sweep"));
  const SweepResult second = sweep(cut, true, 2);
  ASSERT_TRUE(second.finished);
  EXPECT_EQ(second.skipped, 4);
  EXPECT_EQ(second.ran, 8);
  EXPECT_EQ(read_file(whole + "/sweep.csv"), read_file(cut + "/sweep.csv"));
  for (int p = 0; p < 12; ++p) {
    const std::string f = fmt::format("/points/point_{:06d}/final.npy", p);
    EXPECT_EQ(read_file(whole + f), read_file(cut + f)) << f;
  }
}

}  // namespace
}  // namespace attnflow
