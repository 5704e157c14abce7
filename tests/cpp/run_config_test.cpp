// The runner's config schema: defaults, the commented default TOML (every key documented and
// no key undocumented), gamma -> beta, and bad configs rejected with a message naming the key.
#include "attnflow/run/run_config.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <sstream>

#include "test_util.hpp"

namespace attnflow {
namespace {

RunConfig parse(const std::string& text) {
  Config c = Config::parse(text, "t.toml");
  return parse_run_config(c);
}

// Leaf keys "section.key" of a TOML text as written by Config::resolved(): lines "k = v"
// under "[section]" headers.
std::set<std::string> keys_of(const std::string& toml) {
  std::set<std::string> keys;
  std::istringstream in(toml);
  std::string line, section;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '[') {
      section = line.substr(1, line.find(']') - 1);
      continue;
    }
    const auto eq = line.find(" =");
    if (eq != std::string::npos) keys.insert(section + "." + line.substr(0, eq));
  }
  return keys;
}

TEST(RunConfig, DefaultsMatchTheDocumentedDefaultToml) {
  Config empty = Config::parse("", "empty");
  const RunConfig d = parse_run_config(empty);
  Config documented = Config::parse(default_run_config_toml(), "default");
  const RunConfig r = parse_run_config(documented);  // also: no unknown key in the documented text
  EXPECT_EQ(r.n, d.n);
  EXPECT_EQ(r.d, d.d);
  EXPECT_EQ(r.init, d.init);
  EXPECT_EQ(r.kind, d.kind);
  EXPECT_EQ(r.beta, d.beta);
  EXPECT_EQ(r.scheme, d.scheme);
  EXPECT_EQ(r.integrator.method, d.integrator.method);
  EXPECT_EQ(r.integrator.dt, d.integrator.dt);
  EXPECT_EQ(r.integrator.rtol, d.integrator.rtol);
  EXPECT_EQ(r.t_end, d.t_end);
  EXPECT_EQ(r.every, d.every);
  EXPECT_EQ(r.delta, d.delta);
  EXPECT_EQ(r.checkpoint_every, d.checkpoint_every);
  EXPECT_EQ(r.sinkhorn_tol, d.sinkhorn_tol);
  EXPECT_EQ(r.sinkhorn_max_iterations, d.sinkhorn_max_iterations);
  // Every key the runner reads is in the documented default, and nothing else is.
  EXPECT_EQ(keys_of(empty.resolved()), keys_of(documented.resolved()));
  EXPECT_EQ(keys_of(empty.resolved()).size(), keys_of(default_run_config_toml()).size());
  for (const char* k : {"measure.n", "measure.d", "measure.init", "measure.rho0", "measure.file", "measure.seed",
                        "measure.systems", "model.kind", "model.beta", "model.heads", "model.qkv", "model.scheme",
                        "model.sphere", "model.kappa", "integrate.method", "integrate.dt", "integrate.t_end",
                        "integrate.rtol", "integrate.atol", "observe.every", "observe.delta", "output.snapshots",
                        "output.checkpoint_every"})
    EXPECT_TRUE(keys_of(default_run_config_toml()).count(k)) << k;
}

TEST(RunConfig, ReadsValuesAndGammaSetsBeta) {
  const RunConfig r = parse(
      "[measure]\nn = 100\nd = 5\nsystems = 3\nseed = 7\n[model]\nkind = \"usa\"\ngamma = 2.0\n"
      "scheme = \"pre-ln\"\n[integrate]\nmethod = \"dopri5\"\nrtol = 1e-8\n[observe]\ndelta = 0.5\n");
  EXPECT_EQ(r.n, 100);
  EXPECT_EQ(r.d, 5);
  EXPECT_EQ(r.systems, 3);
  EXPECT_EQ(r.seed, 7u);
  EXPECT_EQ(r.kind, "usa");
  EXPECT_EQ(r.beta, 2.0 * std::log(100.0));  // beta = gamma log n (docs/math.md section 6)
  EXPECT_EQ(r.scheme, "pre-ln");
  EXPECT_EQ(r.integrator.method, Method::dopri5);
  EXPECT_EQ(r.integrator.rtol, 1e-8);
  EXPECT_EQ(r.delta, 0.5);
  const RunConfig sk = parse("[model]\nkind = \"sinkhorn\"\nsinkhorn_tol = 1e-6\n"
                             "sinkhorn_max_iterations = 500\n");
  EXPECT_EQ(sk.sinkhorn_tol, 1e-6);
  EXPECT_EQ(sk.sinkhorn_max_iterations, 500);
}

TEST(RunConfig, BadConfigsNameTheKey) {
  using test::throws_with;
  EXPECT_TRUE(throws_with([] { parse("[model]\nbetaa = 2\n"); }, "t.toml: unknown key 'model.betaa'"));
  EXPECT_TRUE(throws_with([] { parse("[modle]\nbeta = 2\n"); }, "unknown key 'modle.beta'"));
  EXPECT_TRUE(throws_with([] { parse("[integrate]\ndt = -0.1\n"); }, "t.toml: integrate.dt = -0.1, must be > 0"));
  EXPECT_TRUE(throws_with([] { parse("[measure]\nn = 0\n"); }, "t.toml: measure.n = 0, must be >= 1"));
  EXPECT_TRUE(throws_with([] { parse("[observe]\ndelta = 2.0\n"); }, "t.toml: observe.delta = 2, must be in (0, 2)"));
  EXPECT_TRUE(throws_with([] { parse("[observe]\ndelta = 0\n"); }, "observe.delta = 0, must be in (0, 2)"));
  EXPECT_TRUE(throws_with([] { parse("[observe]\ndelta = -1e-3\n"); }, "observe.delta = -0.001"));
  EXPECT_TRUE(throws_with([] { parse("[model]\nkind = \"softmax\"\n"); }, "model.kind = \"softmax\", must be one of sa"));
  EXPECT_TRUE(throws_with([] { parse("[integrate]\nmethod = \"rk45\"\n"); }, "method = \"rk45\""));
  EXPECT_TRUE(throws_with([] { parse("[model]\nkappa = 2\n[integrate]\nmethod = \"rk4\"\n"); },
                          "integrate.method = \"rk4\", must be \"euler\" when model.kappa > 0"));
  EXPECT_TRUE(throws_with([] { parse("[measure]\nn = 10\nd = 5\ninit = \"equiangular\"\n"); },
                          "measure.d = 5, must be >= n + 1 = 11"));
  EXPECT_TRUE(throws_with([] { parse("[measure]\nd = 3\n[model]\nkind = \"kuramoto\"\n"); }, "measure.d = 3, must be 2"));
  EXPECT_TRUE(throws_with([] { parse("[measure]\ninit = \"file\"\n"); }, "measure.file"));
  EXPECT_TRUE(throws_with([] { parse("[model]\nbeta = 0\n"); }, "model.beta = 0, must be > 0"));
  EXPECT_TRUE(throws_with([] { parse("[measure]\nn = \"many\"\n"); }, "measure.n = many, must be an integer"));
  EXPECT_TRUE(throws_with([] { parse("[output]\ncheckpoint_every = -1\n"); }, "output.checkpoint_every = -1"));
  EXPECT_TRUE(throws_with([] { parse("[integrate]\nmethod = \"dopri5\"\n[observe]\non_steps = true\n"); },
                          "t.toml: observe.on_steps = true, must be a fixed-step integrate.method"));
  EXPECT_TRUE(throws_with([] { parse("[integrate]\ndt = 0.1\n[observe]\nevery = 0.05\non_steps = true\n"); },
                          "t.toml: observe.every = 0.05, must be >= integrate.dt = 0.1 with observe.on_steps"));
  EXPECT_TRUE(throws_with([] { parse("[integrate]\ndt = 0.1\nt_end = 1.05\n[observe]\non_steps = true\n"); },
                          "t.toml: integrate.t_end = 1.05, must be a whole number of steps of integrate.dt = 0.1"));
  EXPECT_TRUE(throws_with([] { parse("[model]\nsinkhorn_tol = 0\n"); }, "t.toml: model.sinkhorn_tol = 0, must be > 0"));
  EXPECT_TRUE(throws_with([] { parse("[model]\nsinkhorn_max_iterations = 0\n"); },
                          "model.sinkhorn_max_iterations = 0, must be in [1, 1e8]"));
  // The Sinkhorn keys go through SinkhornControl::validate (sinkhorn.hpp), the scheme through
  // parse_scheme (scheme.hpp): the library's rules, under the config's names.
  EXPECT_TRUE(throws_with([] { parse("[model]\nsinkhorn_iterations = -2\n"); },
                          "t.toml: model.sinkhorn_iterations = -2, must be >= 0"));
  EXPECT_TRUE(throws_with([] { parse("[model]\nsinkhorn_max_iterations = 5000000000\n"); },
                          "model.sinkhorn_max_iterations = 2147483647, must be in [1, 1e8]"));
  EXPECT_TRUE(throws_with([] { parse("[model]\nscheme = \"layer-ln\"\n"); },
                          "t.toml: model.scheme = \"layer-ln\", must be one of none, post_ln"));
  EXPECT_EQ(parse("[model]\nscheme = \"peri-ln\"\n").scheme, "peri-ln");
  EXPECT_TRUE(throws_with([] { parse("[model]\ninteraction = \"custom\"\n"); },
                          "t.toml: model.interaction = \"custom\", must be gaussian or power in a config"));
  EXPECT_TRUE(throws_with([] { parse("[model]\ninteraction = \"coulomb\"\n"); },
                          "t.toml: model.interaction = \"coulomb\", must be one of gaussian"));
}

// Observation times: k * every by multiplication and t_end last; with observe.on_steps the first
// step of the dt grid at or after k * every (never a shortened step), t_end last.
TEST(RunConfig, ObservationTimes) {
  const RunConfig plain = parse("[integrate]\ndt = 0.1\nt_end = 1.0\n[observe]\nevery = 0.15\n");
  EXPECT_EQ(last_observation(plain), 7);
  EXPECT_EQ(observation_time(plain, 1), 0.15);
  EXPECT_EQ(observation_time(plain, 6), 6 * 0.15);
  EXPECT_EQ(observation_time(plain, 7), 1.0);
  const RunConfig steps = parse("[integrate]\ndt = 0.1\nt_end = 1.0\n[observe]\nevery = 0.15\non_steps = true\n");
  EXPECT_TRUE(steps.on_steps);
  const std::vector<double> expected{0.0, 2 * 0.1, 3 * 0.1, 5 * 0.1, 6 * 0.1, 8 * 0.1, 9 * 0.1, 1.0};
  ASSERT_EQ(last_observation(steps), 7);
  for (std::int64_t k = 0; k <= 7; ++k) EXPECT_EQ(observation_time(steps, k), expected[static_cast<std::size_t>(k)]) << k;
  // 0.3 / 0.1 = 2.9999999999999996: still step 3, not 4.
  const RunConfig third = parse("[integrate]\ndt = 0.1\nt_end = 0.9\n[observe]\nevery = 0.3\non_steps = true\n");
  EXPECT_EQ(last_observation(third), 3);
  EXPECT_EQ(observation_time(third, 1), 3 * 0.1);
  EXPECT_EQ(observation_time(third, 2), 6 * 0.1);
  // The observation before t_end rounds up to t_end's step: it is the last one (no repeat).
  const RunConfig up = parse("[integrate]\ndt = 0.1\nt_end = 1.0\n[observe]\nevery = 0.16\non_steps = true\n");
  EXPECT_EQ(last_observation(up), 6);  // 0.96 -> step 10 = t_end
  EXPECT_EQ(observation_time(up, 5), 8 * 0.1);
  EXPECT_EQ(observation_time(up, 6), 1.0);
  // The published phase-diagram cadence: linspace(0, 30, 200) on steps of 0.1: 200 observations.
  const RunConfig pub = parse("[integrate]\nmethod = \"residual\"\ndt = 0.1\nt_end = 30.0\n[observe]\nevery = " +
                              fmt::format("{}", 30.0 / 199.0) + "\non_steps = true\n");
  EXPECT_EQ(last_observation(pub), 199);
  for (std::int64_t k = 1; k < 199; ++k) {
    const double t = observation_time(pub, k), nominal = static_cast<double>(k) * 30.0 / 199.0;
    EXPECT_GE(t, nominal - 1e-12) << k;
    EXPECT_LT(t, nominal + 0.1) << k;
    EXPECT_GT(t, observation_time(pub, k - 1)) << k;
  }
}

TEST(RunConfig, SetOverridesAndResolvedTextRoundTrips) {
  Config c = Config::parse("[model]\nbeta = 2\n", "t.toml");
  c.set("model.beta=5");
  c.set("measure.n=32");
  const RunConfig r = parse_run_config(c);
  EXPECT_EQ(r.beta, 5.0);
  EXPECT_EQ(r.n, 32);
  Config again = Config::parse(c.resolved(), "resolved");
  const RunConfig r2 = parse_run_config(again);
  EXPECT_EQ(r2.beta, 5.0);
  EXPECT_EQ(r2.n, 32);
  EXPECT_EQ(again.resolved(), c.resolved());  // resolving a resolved config changes nothing
}

}  // namespace
}  // namespace attnflow
