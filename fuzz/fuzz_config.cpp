// Fuzz target: TOML configs as every command reads them (Config and the run, icl,
// largeprompt, fit and sweep schemas), and --set assignments. The input is the config text; its
// first line is also applied as a --set assignment. Only std::invalid_argument is acceptable.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "attnflow/io/config.hpp"
#include "attnflow/run/fit_run.hpp"
#include "attnflow/run/icl_run.hpp"
#include "attnflow/run/run_config.hpp"
#include "attnflow/run/sweep.hpp"

namespace {

template <typename F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace attnflow;
  const std::string text(reinterpret_cast<const char*>(data), size);
  Config base;
  try {
    base = Config::parse(text, "fuzz.toml");
  } catch (const std::invalid_argument&) {
    return 0;
  }
  // icl reads data.covariance_file from disk: not part of this target (it is the .npy parser).
  bool has_file = false;
  expect_clean([&] { has_file = base.has("data.covariance_file"); });
  expect_clean([&] { Config c = base; parse_run_config(c); });
  if (!has_file) expect_clean([&] { Config c = base; parse_icl_config(c); });
  expect_clean([&] { Config c = base; parse_largeprompt_config(c); });
  expect_clean([&] { Config c = base; parse_fit_config(c); });
  expect_clean([&] { parse_sweep(text, "fuzz.toml"); });
  expect_clean([&] {
    Config c = base;
    c.set(text.substr(0, text.find('\n')));
    parse_run_config(c);
  });
  expect_clean([&] { base.resolved(); });
  return 0;
}
