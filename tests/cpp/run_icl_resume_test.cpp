// Checkpoints and resume of in-context regression training (icl.hpp, checkpoint.hpp,
// icl_run.hpp): training stopped at a checkpoint hook and continued from the saved state equals
// the uninterrupted run bit for bit (SGD softmax and linear, the ODE with rk4 and dopri5); the
// icl checkpoint file round-trips bit-exactly and is told apart from a run checkpoint;
// run_icl_job stopped after K checkpoints and resumed writes the same risk.csv and final.json,
// and refuses a changed config or an existing output directory without resume.
#include <gtest/gtest.h>

#include <csignal>
#include <cstring>
#include <filesystem>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/run/checkpoint.hpp"
#include "attnflow/icl/icl.hpp"
#include "attnflow/run/icl_run.hpp"
#include "attnflow/run/job.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::same_bits;

namespace fs = std::filesystem;

std::string temp_dir(const std::string& name) {
  const auto dir =
      fs::temp_directory_path() / ("attnflow_icl_resume_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir.parent_path());
  return dir.string();
}

::testing::AssertionResult same_records(const std::vector<IclStepRecord>& a,
                                        const std::vector<IclStepRecord>& b) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << a.size() << " vs " << b.size() << " rows";
  for (std::size_t k = 0; k < a.size(); ++k) {
    const IclStepRecord &x = a[k], &y = b[k];
    if (x.step != y.step || !same_bits(x.time, y.time) || !same_bits(x.risk, y.risk) ||
        !same_bits(x.risk_infinite, y.risk_infinite) || !same_bits(x.b, y.b) ||
        !same_bits(x.a_norm, y.a_norm) || !same_bits(x.balance, y.balance))
      return ::testing::AssertionFailure() << "row " << k << " (step " << x.step << ") differs";
  }
  return ::testing::AssertionSuccess();
}

bool same_params(const IclParams& a, const IclParams& b) {
  return a.a.rows() == b.a.rows() && a.a.cols() == b.a.cols() &&
         std::memcmp(a.a.data(), b.a.data(),
                     sizeof(double) * static_cast<std::size_t>(a.a.size())) == 0 &&
         same_bits(a.b, b.b);
}

IclData small_data() {
  IclData data;
  data.cov = toeplitz_covariance(3, 0.5);
  data.noise = 0.1;
  return data;
}

IclTrainOptions options(IclModel model, Index prompt, Method method = Method::rk4) {
  IclTrainOptions o;
  o.model = model;
  o.prompt_length = prompt;
  o.batch = 8;
  o.lr = 0.05;
  o.steps = 47;
  o.seed = 3;
  o.log_every = 4;
  o.method = method;
  if (method == Method::dopri5) o.ode_dt = 0.2;
  return o;
}

// Stops at the k-th checkpoint (every 10 steps), keeps the state, continues from it.
void expect_resume_equals_whole(const IclTrainOptions& o, int stop_at) {
  const IclData data = small_data();
  Rng rng(11);
  const IclParams init = icl_balanced_init(3, 0.3, rng);
  const IclTrainResult whole = icl_train(data, init, o);
  IclTrainState saved;
  int seen = 0;
  IclCheckpointHook hook{10, [&](const IclTrainState& s) {
                           saved = s;
                           return ++seen < stop_at;
                         }};
  const IclTrainResult cut = icl_train(data, icl_initial_state(init), o, {}, hook);
  ASSERT_TRUE(cut.stopped);
  ASSERT_EQ(seen, stop_at);
  std::vector<long> rest;
  const IclTrainResult resumed =
      icl_train(data, saved, o, [&](const IclStepRecord& r) { rest.push_back(r.step); }, {});
  EXPECT_FALSE(resumed.stopped);
  EXPECT_EQ(resumed.steps, whole.steps);
  EXPECT_TRUE(same_params(resumed.params, whole.params));
  EXPECT_TRUE(same_records(resumed.history, whole.history));
  ASSERT_FALSE(rest.empty());  // progress is reported only for the steps run after the resume
  EXPECT_GT(rest.front(), whole.history.front().step);
}

TEST(IclResume, SgdSoftmaxContinuesBitForBit) {
  expect_resume_equals_whole(options(IclModel::softmax, 20), 2);
}
TEST(IclResume, SgdLinearContinuesBitForBit) {
  expect_resume_equals_whole(options(IclModel::linear, 20), 3);
}
TEST(IclResume, OdeRk4ContinuesBitForBit) {
  expect_resume_equals_whole(options(IclModel::softmax, 0), 2);
}
TEST(IclResume, OdeDopri5ContinuesBitForBit) {
  expect_resume_equals_whole(options(IclModel::softmax, 0, Method::dopri5), 4);
}

TEST(IclResume, HookIsNeverCalledAfterTheLastStep) {
  IclTrainOptions o = options(IclModel::linear, 10);
  o.steps = 30;
  const IclData data = small_data();
  Rng rng(1);
  std::vector<long> at;
  IclCheckpointHook hook{10, [&](const IclTrainState& s) {
                           at.push_back(s.step);
                           return true;
                         }};
  icl_train(data, icl_initial_state(icl_balanced_init(3, 0.3, rng)), o, {}, hook);
  EXPECT_EQ(at, (std::vector<long>{10, 20}));
}

TEST(IclResume, StartStepOutOfRangeIsRejected) {
  const IclData data = small_data();
  Rng rng(1);
  IclTrainState s = icl_initial_state(icl_balanced_init(3, 0.3, rng));
  s.step = 48;
  EXPECT_TRUE(test::throws_with([&] { icl_train(data, s, options(IclModel::softmax, 5), {}, {}); },
                                "icl: start step = 48, must be in [0, 47]"));
}

TEST(IclCheckpointFile, RoundTripIsBitExactAndKindsAreToldApart) {
  const std::string dir = temp_dir("file");
  fs::create_directories(dir);
  IclCheckpoint c;
  c.config = "[train]\nlr = 0.1\n";
  Rng rng(4);
  c.state.step = 12;
  c.state.params.a = test::random_matrix(4, 4, rng, 1.0 / 3.0);
  c.state.params.b = 0.1 * 3;
  c.state.integrator.t = 0.1 * 3;
  c.state.integrator.dt_next = 1.0 / 7.0;
  c.state.integrator.steps = 11;
  c.state.integrator.grid_steps = 5;
  c.state.history = {{0, 0.0, 1.0 / 3.0, 2.0 / 3.0, 0.1, 0.2, -1e-300},
                     {4, 0.4, 0.3, 0.25, 0.5, 0.6, 0.7}};
  const std::string path = dir + "/checkpoint.bin";
  write_icl_checkpoint(path, c);
  const IclCheckpoint r = read_icl_checkpoint(path);
  EXPECT_EQ(r.config, c.config);
  EXPECT_EQ(r.state.step, 12);
  EXPECT_TRUE(same_params(r.state.params, c.state.params));
  EXPECT_TRUE(same_bits(r.state.integrator.t, c.state.integrator.t));
  EXPECT_TRUE(same_bits(r.state.integrator.dt_next, c.state.integrator.dt_next));
  EXPECT_EQ(r.state.integrator.steps, 11);
  EXPECT_EQ(r.state.integrator.grid_steps, 5);
  EXPECT_TRUE(same_records(r.state.history, c.state.history));
  EXPECT_TRUE(
      test::throws_with([&] { read_checkpoint(path); }, "is a checkpoint of `attnflow icl`"));
  Checkpoint run;
  run.states.push_back(Matrix::Zero(2, 2));
  run.flow.emplace_back();
  write_checkpoint(path, run);
  EXPECT_TRUE(
      test::throws_with([&] { read_icl_checkpoint(path); }, "is a checkpoint of `attnflow run`"));
}

IclRunConfig run_config(Index prompt) {
  IclRunConfig c;
  c.data = small_data();
  c.train = options(IclModel::softmax, prompt);
  c.eval_prompts = 16;
  c.checkpoint_every = 10;
  return c;
}

void expect_job_resume_equals_whole(Index prompt) {
  const IclRunConfig c = run_config(prompt);
  const std::string whole = temp_dir("whole" + std::to_string(prompt));
  const std::string cut = temp_dir("cut" + std::to_string(prompt));
  ASSERT_TRUE(run_icl(c, "cfg", whole, "test", true).finished);
  IclRunOptions opt;
  opt.out_dir = cut;
  opt.quiet = true;
  opt.stop_after_checkpoints = 2;
  const IclRunSummary stopped = run_icl_job(c, "cfg", opt);
  EXPECT_TRUE(stopped.interrupted);
  EXPECT_EQ(stopped.checkpoints, 2);
  EXPECT_TRUE(fs::exists(cut + "/checkpoint.bin"));
  EXPECT_FALSE(fs::exists(cut + "/final.json"));
  EXPECT_TRUE(
      test::throws_with([&] { run_icl(c, "cfg", cut, "test", true); }, "already holds a run"));
  opt.resume = true;
  EXPECT_TRUE(test::throws_with([&] { run_icl_job(c, "other cfg", opt); },
                                "icl: --resume: the configuration differs"));
  opt.stop_after_checkpoints = 0;
  const IclRunSummary done = run_icl_job(c, "cfg", opt);
  EXPECT_TRUE(done.finished);
  EXPECT_EQ(done.checkpoints, 2);  // 30 and 40 (47 steps, every 10; stopped after 20)
  for (const char* f : {"/risk.csv", "/final.json", "/config.toml"})
    EXPECT_EQ(read_file(whole + f), read_file(cut + f)) << f;
  EXPECT_FALSE(fs::exists(cut + "/checkpoint.bin"));
  EXPECT_TRUE(run_icl_job(c, "cfg", opt).already_finished);
}

TEST(IclRunResume, SgdJobStoppedAndResumedWritesTheSameFiles) {
  expect_job_resume_equals_whole(20);
}
TEST(IclRunResume, OdeJobStoppedAndResumedWritesTheSameFiles) { expect_job_resume_equals_whole(0); }

// A stop request (SIGINT / SIGTERM, job.hpp) checkpoints after the current step, between the
// configured checkpoints, and the resumed job writes the uninterrupted job's files.
void expect_stop_request_resumes(Index prompt) {
  const IclRunConfig c = run_config(prompt);
  const std::string whole = temp_dir("sig_whole" + std::to_string(prompt));
  const std::string cut = temp_dir("sig_cut" + std::to_string(prompt));
  ASSERT_TRUE(run_icl(c, "cfg", whole, "test", true).finished);
  IclRunOptions opt;
  opt.out_dir = cut;
  opt.quiet = true;
  request_stop(SIGTERM);
  const IclRunSummary stopped = run_icl_job(c, "cfg", opt);
  clear_stop_request();
  EXPECT_TRUE(stopped.interrupted);
  EXPECT_EQ(stopped.signal, SIGTERM);
  EXPECT_EQ(stopped.checkpoints, 1);
  EXPECT_EQ(read_icl_checkpoint(cut + "/checkpoint.bin").state.step, prompt > 0 ? 1 : 2);
  opt.resume = true;
  EXPECT_TRUE(run_icl_job(c, "cfg", opt).finished);
  for (const char* f : {"/risk.csv", "/final.json", "/config.toml"})
    EXPECT_EQ(read_file(whole + f), read_file(cut + f)) << f;
}

TEST(IclRunResume, SgdStopRequestCheckpointsAfterTheCurrentStep) { expect_stop_request_resumes(20); }
TEST(IclRunResume, OdeStopRequestCheckpointsAfterTheCurrentStep) { expect_stop_request_resumes(0); }

}  // namespace
}  // namespace attnflow
