// Config sections that hold a value instead of a table (C1): `model = 3` where
// [model] is expected used to segfault in every reader; now the one accessor names the key.
// Echoed values are capped and escaped (M5).
#include <gtest/gtest.h>

#include "attnflow/io/config.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::throws_with;

TEST(ConfigSections, ScalarOrArraySectionIsAnErrorNamingTheKey) {
  for (const char* text : {"model = 3\n", "model = []\n", "model = \"x\"\n"}) {
    Config c = Config::parse(text, "c.toml");
    EXPECT_TRUE(throws_with([&] { c.get_double("model.beta", 1.0); },
                            "c.toml: model = ")) << text;
    EXPECT_TRUE(throws_with([&] { c.get_string("model.kind", "sa"); },
                            "must be a table (the section [model], which holds 'kind')")) << text;
    EXPECT_TRUE(throws_with([&] { c.get_int("model.heads", 1); }, "must be a table")) << text;
    EXPECT_TRUE(throws_with([&] { c.get_bool("model.sphere", true); }, "must be a table")) << text;
    EXPECT_TRUE(throws_with([&] { c.get_text("model.x", "1"); }, "must be a table")) << text;
    EXPECT_TRUE(throws_with([&] { c.get_doubles("model.l", {1.0}); }, "must be a table")) << text;
    EXPECT_TRUE(throws_with([&] { c.has("model.beta"); }, "must be a table")) << text;
  }
  Config c = Config::parse("measure = 3\n", "c.toml");
  EXPECT_TRUE(throws_with([&] { c.get_int("measure.n", 64); },
                          "c.toml: measure = 3, must be a table (the section [measure], which "
                          "holds 'n')"));
  // Deeper paths: a.b = 1 where a.b.c is read.
  Config d = Config::parse("[a]\nb = 1\n", "d.toml");
  EXPECT_TRUE(throws_with([&] { d.get_double("a.b.c", 0.0); }, "d.toml: a.b = 1, must be a table"));
}

TEST(ConfigSections, SetNeverReplacesASectionByAValue) {
  Config c = Config::parse("[model]\nbeta = 2\n", "demo");
  EXPECT_TRUE(throws_with([&] { c.set("model=3"); },
                          "--set: model = 3, must be section.key=value (model is a section)"));
  Config d = Config::parse("model = 3\n", "demo");
  EXPECT_TRUE(throws_with([&] { d.set("model.beta=2"); }, "model = 3, must be a table"));
  // A value set where nothing was is read back as that section's key, as before.
  Config e;
  e.set("x.y.z=4");
  EXPECT_EQ(e.get_int("x.y.z", 0), 4);
}

TEST(ConfigSections, HugeAndBinaryValuesAreEchoedCapped) {
  const std::string big(10'000'000, 'a');
  Config c = Config::parse("[model]\nbeta = \"" + big + "\"\nkind = \"\\u0001\\u0002\"\n", "c.toml");
  try {
    c.get_double("model.beta", 1.0);
    FAIL() << "did not throw";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_LT(msg.size(), 200u) << msg.substr(0, 300);
    EXPECT_NE(msg.find("... (10000000 bytes in all)"), std::string::npos) << msg;
  }
  EXPECT_TRUE(throws_with([&] { c.get_int("model.kind", 1); }, "model.kind = \\x01\\x02, must be an integer"));
}

TEST(ConfigSections, HugeFloatsAreNotIntegersAndNeverUndefined) {
  Config c = Config::parse("[m]\nn = 1e300\nk = 1e13\n", "c.toml");
  EXPECT_TRUE(throws_with([&] { c.get_int("m.n", 1); }, "e+300, must be an integer"));
  EXPECT_EQ(c.get_int("m.k", 1), 10'000'000'000'000);
}

}  // namespace
}  // namespace attnflow
