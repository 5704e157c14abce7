// Config: typed getters with defaults, --set overrides, unknown keys named, resolved output.
#include "attnflow/io/config.hpp"

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace attnflow {
namespace {

TEST(Config, GettersDefaultsAndOverrides) {
  Config c = Config::parse("[model]\nbeta = 2.5\nkind = \"sa\"\n[measure]\nn = 64\n", "t.toml");
  c.set("model.beta=4");
  c.set("measure.init=equiangular");
  c.set("integrate.rtol=1e-8");
  c.set("observe.times=[0.0, 1.5]");
  EXPECT_EQ(c.get_double("model.beta", 1.0), 4.0);
  EXPECT_EQ(c.get_string("model.kind", "usa"), "sa");
  EXPECT_EQ(c.get_int("measure.n", 1), 64);
  EXPECT_EQ(c.get_string("measure.init", "uniform_sphere"), "equiangular");
  EXPECT_EQ(c.get_double("integrate.rtol", 1e-6), 1e-8);
  EXPECT_EQ(c.get_doubles("observe.times", {}), (std::vector<double>{0.0, 1.5}));
  EXPECT_EQ(c.get_bool("output.snapshots", true), true);  // default recorded
  EXPECT_NE(c.resolved().find("snapshots = true"), std::string::npos);
  EXPECT_NO_THROW(c.reject_unknown());
  // The resolved text parses back to the same values.
  Config r = Config::parse(c.resolved());
  EXPECT_EQ(r.get_double("model.beta", 0), 4.0);
}

TEST(Config, ErrorsNameTheKey) {
  Config c = Config::parse("[model]\nbetaa = 2\nbeta = \"x\"\n", "t.toml");
  EXPECT_TRUE(test::throws_with([&] { c.get_double("model.beta", 1); },
                                "t.toml: model.beta = x, must be a number"));
  EXPECT_TRUE(test::throws_with([&] { c.reject_unknown(); }, "unknown key 'model.betaa'"));
  EXPECT_TRUE(test::throws_with([] { Config::parse("[model\n", "bad.toml"); }, "bad.toml: line 1"));
  Config d;
  EXPECT_TRUE(test::throws_with([&] { d.set("novalue"); }, "must have the form section.key=value"));
}

}  // namespace
}  // namespace attnflow
