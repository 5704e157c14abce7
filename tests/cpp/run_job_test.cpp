// The job lifecycle (job.hpp) and the file-safety rules under it (atomic_file.hpp): atomic
// writes refuse targets that are not regular files; a staged job that fails leaves nothing;
// a directory holding anything but the command's own earlier output is refused untouched;
// an earlier output is replaced name by name, foreign files kept; a fresh run that fails late
// in an existing empty directory leaves it empty; a resume removes the temporaries a killed
// process left (and nothing else); a stop request (SIGINT / SIGTERM) checkpoints at the next
// observation and the resumed run equals the uninterrupted one byte for byte.
#include "attnflow/run/job.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/io/config.hpp"
#include "attnflow/run/runner.hpp"
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
using test::dead_pid;

namespace fs = std::filesystem;

void touch(const std::string& path, const std::string& text = "user data\n") {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

TEST(AtomicFile, RefusesTargetsThatAreNotRegularFiles) {
  const std::string dir = fresh_dir("targets");
  fs::create_directories(dir);
  const std::string fifo = dir + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_TRUE(test::throws_with([&] { write_file_atomic(fifo, "x"); }, "it exists and is a FIFO"));
  EXPECT_TRUE(fs::is_fifo(fifo));  // never turned into a regular file
  const std::string sub = dir + "/sub";
  fs::create_directories(sub);
  touch(sub + "/keep.txt");
  EXPECT_TRUE(test::throws_with([&] { write_file_atomic(sub, "x"); }, "it exists and is a directory"));
  EXPECT_TRUE(fs::exists(sub + "/keep.txt"));
  EXPECT_EQ(names(dir), (std::vector<std::string>{"fifo", "sub"}));  // no temporary left
  write_file_atomic(dir + "/plain", "a");
  write_file_atomic(dir + "/plain", "b");  // a regular file is replaced, as always
  EXPECT_EQ(read_file(dir + "/plain"), "b");
}

TEST(AtomicFile, StaleTemporariesAreOnlyThoseOfDeadProcesses) {
  EXPECT_EQ(temp_name_pid("checkpoint.bin.tmp.123"), 123);
  EXPECT_EQ(temp_name_pid("snap_000001.npy.tmp.77"), 77);
  EXPECT_EQ(temp_name_pid("notes.tmp.txt"), 0);
  EXPECT_EQ(temp_name_pid(".tmp.12"), 0);
  EXPECT_EQ(temp_name_pid("a.tmp."), 0);
  const std::string dir = fresh_dir("stale");
  const long dead = dead_pid();
  const std::string mine = std::to_string(::getpid());
  touch(dir + "/checkpoint.bin.tmp." + std::to_string(dead));
  touch(dir + "/snapshots/snap_000003.npy.tmp." + std::to_string(dead));
  touch(dir + "/live.tmp." + mine);  // this process is alive
  touch(dir + "/notes.tmp.txt");
  touch(dir + "/thesis.tex");
  EXPECT_EQ(remove_stale_temporaries(dir), 2);
  EXPECT_EQ(names(dir), (std::vector<std::string>{"live.tmp." + mine, "notes.tmp.txt", "snapshots", "thesis.tex"}));
  EXPECT_TRUE(names(dir + "/snapshots").empty());
}

// A killed process nobody reaps stays a zombie (a container whose init reaps nothing, a killed
// mpirun's orphaned ranks): kill(pid, 0) still succeeds, but its temporaries are stale.
TEST(AtomicFile, TemporariesOfAnUnreapedZombieAreStale) {
  const pid_t zombie = ::fork();
  if (zombie == 0) ::_exit(0);
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(zombie), &info, WEXITED | WNOWAIT), 0);  // exited, not reaped
  ASSERT_EQ(::kill(zombie, 0), 0) << "the child should still exist as a zombie";
  const std::string dir = fresh_dir("zombie");
  touch(dir + "/config.toml.tmp." + std::to_string(zombie));
  EXPECT_TRUE(is_stale_temporary("config.toml.tmp." + std::to_string(zombie)));
  EXPECT_EQ(remove_stale_temporaries(dir), 1);
  EXPECT_TRUE(names(dir).empty());
  int status = 0;
  ::waitpid(zombie, &status, 0);
}

JobSpec staged(const std::string& out) {
  return {.kind = "ot", .out_dir = out, .version = "test", .resumable = false, .resume = false,
          .outputs = {"f.npy", "g.npy", "summary.json"}, .noun = "run", .marker = ""};
}

TEST(Job, StagedJobThatFailsLeavesNothing) {
  const std::string out = fresh_dir("staged_fail");
  try {
    Job job(staged(out));
    job.start();
    write_file_atomic(job.path("f.npy"), "f");
    EXPECT_NE(job.dir(), out);  // files go to a staging directory first
    throw std::runtime_error("disk full");
  } catch (const std::runtime_error&) {
  }
  EXPECT_FALSE(fs::exists(out));
  for (const auto& n : names(fs::path(out).parent_path().string()))
    EXPECT_EQ(n.find("staged_fail"), std::string::npos) << n;  // no staging directory left
  // Missing parents it created go too.
  try {
    Job job(staged(out + "/a/b/out"));
    job.start();
    EXPECT_TRUE(fs::exists(out + "/a/b"));
    throw std::runtime_error("disk full");
  } catch (const std::runtime_error&) {
  }
  EXPECT_FALSE(fs::exists(out));
  // An existing empty directory stays empty.
  fs::create_directories(out);
  try {
    Job job(staged(out));
    job.start();
    write_file_atomic(job.path("f.npy"), "f");
    throw std::runtime_error("disk full");
  } catch (const std::runtime_error&) {
  }
  EXPECT_TRUE(fs::is_empty(out));
}

// What an interrupted command removes (the stop handler's abandon mode calls
// remove_pending_outputs, then exits): a staged job's directory until it is committed, and
// nothing once committed. Run in a child process (a death test): the registry stays locked.
TEST(Job, AnInterruptionRemovesTheStagedDirectoryAndNothingCommitted) {
  const std::string out = fresh_dir("interrupted"), done = fresh_dir("committed");
  EXPECT_EXIT(
      {
        Job committed(staged(done));
        committed.start();
        write_file_atomic(committed.path("f.npy"), "f");
        committed.commit();
        Job job(staged(out));
        job.start();
        write_file_atomic(job.path("f.npy"), "f");
        const std::string staging = job.dir();
        const std::vector<std::string> notes = remove_pending_outputs();
        const bool ok = notes == std::vector<std::string>{out} && !fs::exists(staging) && !fs::exists(out) &&
                        fs::exists(done + "/f.npy");
        std::_Exit(ok ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(Job, RemovesTheStagingDirectoryOfAKilledJobOnTheSameOut) {
  const std::string out = fresh_dir("killed_staged");
  const std::string stale = out + ".tmp." + std::to_string(dead_pid());
  const std::string live = out + ".tmp.1";  // pid 1 is alive: not stale
  const std::string other = out + "x.tmp." + std::to_string(dead_pid());  // another out's: not ours
  touch(stale + "/f.npy");
  touch(live + "/f.npy");
  touch(other + "/f.npy");
  Job job(staged(out));
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live + "/f.npy"));
  EXPECT_TRUE(fs::exists(other + "/f.npy"));
  fs::remove_all(live);
  fs::remove_all(other);
}

TEST(Job, CommitMovesTheFilesAndRefusesForeignDirectories) {
  const std::string out = fresh_dir("staged_ok");
  {
    Job job(staged(out));
    job.start();
    write_file_atomic(job.path("f.npy"), "f1");
    write_file_atomic(job.path("g.npy"), "g1");
    job.write_summary(job.summary());
    job.commit();
  }
  EXPECT_EQ(names(out), (std::vector<std::string>{"f.npy", "g.npy", "summary.json"}));
  const auto s = nlohmann::json::parse(read_file(out + "/summary.json"));
  EXPECT_EQ(s["kind"], "ot");
  EXPECT_EQ(s["attnflow_version"], "test");
  EXPECT_EQ(s["status"], "finished");
  // Its own earlier output is replaced name by name; a file someone added stays; an output
  // the new job does not write (g.npy) goes.
  touch(out + "/mydata/thesis.tex");
  {
    Job job(staged(out));
    job.start();
    write_file_atomic(job.path("f.npy"), "f2");
    job.write_summary(job.summary());
    job.commit();
  }
  EXPECT_EQ(names(out), (std::vector<std::string>{"f.npy", "mydata", "summary.json"}));
  EXPECT_EQ(read_file(out + "/f.npy"), "f2");
  EXPECT_TRUE(fs::exists(out + "/mydata/thesis.tex"));
  // A directory with anything else is refused before anything is written, and kept as is.
  const std::string foreign = fresh_dir("foreign");
  touch(foreign + "/thesis.tex");
  EXPECT_TRUE(test::throws_with([&] { Job job(staged(foreign)); },
                                "--out " + foreign + " is not empty and not a previous ot's output"));
  EXPECT_EQ(names(foreign), (std::vector<std::string>{"thesis.tex"}));
  // Another command's output is foreign too.
  JobSpec other = staged(out);
  other.kind = "apply";
  EXPECT_TRUE(test::throws_with([&] { Job job(other); }, "not a previous apply's output"));
  touch(foreign + "/file");
  EXPECT_TRUE(test::throws_with([&] { Job job(staged(foreign + "/file")); }, "exists and is not a directory"));
}

constexpr const char* kRun =
    "[measure]\nn = 12\nd = 3\nseed = 5\n[model]\nbeta = 2.0\n[integrate]\nmethod = \"rk4\"\ndt = 0.05\n"
    "t_end = 3.0\n[observe]\nevery = 0.25\n[output]\nsnapshots = true\ncheckpoint_every = 3\n";

TEST(Runner, StopRequestCheckpointsAtTheNextObservationAndResumesByteIdentical) {
  const ParsedRun p = parse_run(kRun);
  const std::string whole = fresh_dir("whole"), cut = fresh_dir("cut");
  run_quietly(p, whole);
  // A SIGINT that arrived during the first interval: the run stops at observation 1, between
  // the configured checkpoints (every 3), with a checkpoint written there.
  RunOptions o;
  o.out_dir = cut;
  o.progress = nullptr;
  o.on_observation = [](const std::vector<ObservationRow>&) { request_stop(SIGINT); };
  const RunResult stopped = run_experiment(p.cfg, p.resolved, o);
  clear_stop_request();
  EXPECT_TRUE(stopped.interrupted);
  EXPECT_EQ(stopped.signal, SIGINT);
  EXPECT_EQ(stopped.observations, 1);
  EXPECT_TRUE(fs::exists(cut + "/checkpoint.bin"));
  EXPECT_FALSE(fs::exists(cut + "/summary.json"));
  const RunResult resumed = run_quietly(p, cut, true);
  EXPECT_TRUE(resumed.finished);
  expect_same_outputs(whole, cut);
  EXPECT_FALSE(fs::exists(cut + "/checkpoint.bin"));
}

TEST(Runner, ResumeRemovesTheTemporariesOfAKilledRunAndNothingElse) {
  const ParsedRun p = parse_run(kRun);
  const std::string whole = fresh_dir("whole2"), cut = fresh_dir("cut2");
  run_quietly(p, whole);
  EXPECT_TRUE(run_quietly(p, cut, false, 1).interrupted);
  const std::string dead = std::to_string(dead_pid());
  touch(cut + "/checkpoint.bin.tmp." + dead, "half a checkpoint");
  touch(cut + "/snapshots/snap_000004.npy.tmp." + dead, "half a snapshot");
  touch(cut + "/snapshots/notes.tmp.txt");  // not the pattern: kept
  EXPECT_TRUE(run_quietly(p, cut, true).finished);
  EXPECT_FALSE(fs::exists(cut + "/checkpoint.bin.tmp." + dead));
  EXPECT_FALSE(fs::exists(cut + "/snapshots/snap_000004.npy.tmp." + dead));
  EXPECT_TRUE(fs::exists(cut + "/snapshots/notes.tmp.txt"));
  fs::remove(cut + "/snapshots/notes.tmp.txt");
  expect_same_outputs(whole, cut);
}

TEST(Runner, LateFailureInAnExistingEmptyDirectoryLeavesItEmpty) {
  // Non-finite state at a huge step: the run fails after writing config.toml,
  // observables.csv and snapshots/.
  const ParsedRun bad = parse_run(
      "[measure]\nn = 8\nd = 3\n[model]\nkind = \"usa\"\nbeta = 700.0\nsphere = false\n[integrate]\ndt = 1e6\n"
      "t_end = 1e7\n[observe]\nevery = 1e6\n[output]\nsnapshots = true\n");
  const std::string out = fresh_dir("late");
  fs::create_directories(out);
  EXPECT_THROW(run_quietly(bad, out), std::runtime_error);
  ASSERT_TRUE(fs::exists(out));
  EXPECT_TRUE(fs::is_empty(out));
  // Into a new directory below a new one: both go.
  EXPECT_THROW(run_quietly(bad, out + "/new/run"), std::runtime_error);
  EXPECT_TRUE(fs::is_empty(out));
}

TEST(Runner, RefusesANonEmptyDirectoryThatHoldsNoRun) {
  const ParsedRun p = parse_run(kRun);
  const std::string out = fresh_dir("foreign_run");
  touch(out + "/thesis.tex");
  EXPECT_TRUE(test::throws_with([&] { run_quietly(p, out); }, "is not empty and not a previous run's output"));
  EXPECT_TRUE(test::throws_with([&] { run_quietly(p, out, true); }, "holds no run to resume"));
  EXPECT_EQ(names(out), (std::vector<std::string>{"thesis.tex"}));
  // Another command's output is not a run to resume, even though it has a summary.json.
  const std::string ot = fresh_dir("ot_out");
  touch(ot + "/summary.json", R"({"kind": "ot", "status": "finished"})");
  touch(ot + "/f.npy");
  EXPECT_TRUE(test::throws_with([&] { run_quietly(p, ot, true); }, "holds no run to resume"));
  EXPECT_TRUE(test::throws_with([&] { run_quietly(p, ot); }, "not a previous run's output"));
  EXPECT_EQ(names(ot), (std::vector<std::string>{"f.npy", "summary.json"}));
}

}  // namespace
}  // namespace attnflow
