// A resumable job killed while writing its first file (only "config.toml.tmp.<pid>" of a dead
// process is left, e.g. a sweep point or an MPI rank killed right at its start): --resume must
// recognize the directory as its own, clear the leftover and start over, as the whole run would.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "attnflow/run/job.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::dead_pid;

namespace fs = std::filesystem;

TEST(JobKilledAtStart, ResumeTakesADirectoryHoldingOnlyAStaleTemporaryOfItsOutput) {
  const fs::path dir = fs::temp_directory_path() / ("attnflow_killed_start_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path stale = dir / ("config.toml.tmp." + std::to_string(dead_pid()));
  std::ofstream(stale) << "[measure]\n";
  Job job({.kind = "run", .out_dir = dir.string(), .version = "test", .resumable = true, .resume = true,
           .outputs = {"config.toml", "observables.csv"}, .noun = "run", .marker = ""});
  EXPECT_TRUE(job.resuming());
  EXPECT_FALSE(job.has_checkpoint());  // nothing to continue from: the run starts over
  job.start();
  EXPECT_FALSE(fs::exists(stale));  // the leftover is cleared
  job.keep();
  fs::remove_all(dir);
}

TEST(JobKilledAtStart, AStaleTemporaryOfAnotherNameIsNotOurs) {
  const fs::path dir = fs::temp_directory_path() / ("attnflow_killed_start_other_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / ("notes.txt.tmp." + std::to_string(dead_pid()))) << "someone else's\n";
  try {
    Job job({.kind = "run", .out_dir = dir.string(), .version = "test", .resumable = true, .resume = true,
             .outputs = {"config.toml", "observables.csv"}, .noun = "run", .marker = ""});
    ADD_FAILURE() << "a directory with only another program's temporary was taken as a run";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("holds no run to resume"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace attnflow
