// Shared helpers of the run module's tests: fresh output directories, a parsed run config, a
// run without progress lines, and byte-for-byte comparison of two run directories.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/io/config.hpp"
#include "attnflow/run/runner.hpp"
#include "test_util.hpp"

namespace attnflow::test {

struct ParsedRun {
  RunConfig cfg;
  std::string resolved;
};
inline ParsedRun parse_run(const std::string& text) {
  Config c = Config::parse(text, "t.toml");
  RunConfig r = parse_run_config(c);
  return {r, c.resolved()};
}

// run_experiment without progress lines; stop_after > 0 stops after that many checkpoints;
// `more` sets further options.
inline RunResult run_quietly(const ParsedRun& p, const std::string& dir, bool resume = false, long stop_after = 0,
                             const std::function<void(RunOptions&)>& more = {}) {
  RunOptions o;
  o.out_dir = dir;
  o.resume = resume;
  o.stop_after_checkpoints = stop_after;
  o.progress = nullptr;
  if (more) more(o);
  return run_experiment(p.cfg, p.resolved, o);
}

// The names in `dir`, sorted.
inline std::vector<std::string> names(const std::string& dir) {
  std::vector<std::string> v;
  for (const auto& e : std::filesystem::directory_iterator(dir)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

inline bool same_file(const std::string& a, const std::string& b) { return read_file(a) == read_file(b); }

// Every output file of two run directories is identical, byte for byte (summary.json up to its
// wall-clock "seconds").
inline void expect_same_outputs(const std::string& a, const std::string& b) {
  namespace fs = std::filesystem;
  for (const char* f : {"config.toml", "observables.csv", "final.npy"})
    EXPECT_TRUE(same_file(a + "/" + f, b + "/" + f)) << f;
  if (fs::exists(a + "/ensemble.csv")) {
    EXPECT_TRUE(same_file(a + "/ensemble.csv", b + "/ensemble.csv"));
  }
  EXPECT_EQ(names(a + "/snapshots"), names(b + "/snapshots"));
  for (const auto& n : names(a + "/snapshots"))
    EXPECT_TRUE(same_file(a + "/snapshots/" + n, b + "/snapshots/" + n)) << n;
  auto ja = nlohmann::json::parse(read_file(a + "/summary.json"));
  auto jb = nlohmann::json::parse(read_file(b + "/summary.json"));
  ja.erase("seconds");
  jb.erase("seconds");
  EXPECT_EQ(ja, jb);
}

}  // namespace attnflow::test
