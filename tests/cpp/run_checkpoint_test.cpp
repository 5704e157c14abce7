// Checkpoint files: a bit-exact round trip of states, integrator and noise states; bad files
// (wrong magic, truncated, other version) rejected naming the file; progress time format.
#include "attnflow/run/checkpoint.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/run/progress.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::same_bits;

std::string temp_path(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("attnflow_run_ckpt_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

Checkpoint sample_checkpoint() {
  Rng rng(5, 1);
  Checkpoint c;
  c.config = "[model]\nbeta = 4.0\n# a comment with \"quotes\" and unicode \xc3\xa9\n";
  c.observation = 17;
  c.csv_bytes = 123456789012ull;
  for (int k = 0; k < 3; ++k) {
    c.states.push_back(test::random_matrix(5, 4, rng, 1.0 / 3.0));
    FlowState f;
    f.integrator.t = 0.1 * 3 + k;  // not representable in short decimal
    f.integrator.dt_next = 1.0 / 7.0;
    f.integrator.steps = 1000 + k;
    f.integrator.rejected = k;
    f.integrator.evaluations = 7001;
    f.integrator.grid_origin = 2.0 / 3.0;
    f.integrator.grid_steps = 42;
    Rng noise(9, static_cast<std::uint64_t>(k));
    noise.normal();  // leaves a cached second normal
    f.noise = noise.state();
    c.flow.push_back(f);
  }
  return c;
}

TEST(Checkpoint, RoundTripIsBitExact) {
  const Checkpoint c = sample_checkpoint();
  const std::string path = temp_path("a.bin");
  write_checkpoint(path, c);
  const Checkpoint r = read_checkpoint(path);
  EXPECT_EQ(r.version, kCheckpointVersion);
  EXPECT_EQ(r.config, c.config);
  EXPECT_EQ(r.observation, c.observation);
  EXPECT_EQ(r.csv_bytes, c.csv_bytes);
  ASSERT_EQ(r.states.size(), c.states.size());
  for (std::size_t k = 0; k < c.states.size(); ++k) {
    ASSERT_EQ(r.states[k].rows(), 5);
    ASSERT_EQ(r.states[k].cols(), 4);
    EXPECT_EQ(std::memcmp(r.states[k].data(), c.states[k].data(), sizeof(double) * 20), 0);
    const IntegratorState &a = r.flow[k].integrator, &b = c.flow[k].integrator;
    EXPECT_TRUE(same_bits(a.t, b.t));
    EXPECT_TRUE(same_bits(a.dt_next, b.dt_next));
    EXPECT_TRUE(same_bits(a.grid_origin, b.grid_origin));
    EXPECT_EQ(a.steps, b.steps);
    EXPECT_EQ(a.rejected, b.rejected);
    EXPECT_EQ(a.evaluations, b.evaluations);
    EXPECT_EQ(a.grid_steps, b.grid_steps);
    EXPECT_EQ(r.flow[k].noise.s, c.flow[k].noise.s);
    EXPECT_TRUE(same_bits(r.flow[k].noise.cached_normal, c.flow[k].noise.cached_normal));
    EXPECT_EQ(r.flow[k].noise.has_cached, c.flow[k].noise.has_cached);
  }
  // A restored noise stream continues exactly.
  Rng a(9, 0), b(1, 1);
  a.normal();
  b.set_state(r.flow[0].noise);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(same_bits(a.normal(), b.normal()));
}

TEST(Checkpoint, BadFilesAreRejectedNamingTheFile) {
  const std::string path = temp_path("b.bin");
  write_file_atomic(path, "not a checkpoint at all, just text");
  EXPECT_TRUE(test::throws_with([&] { read_checkpoint(path); }, path + " is not an attnflow checkpoint"));
  write_checkpoint(path, sample_checkpoint());
  std::string bytes = read_file(path);
  write_file_atomic(path, bytes.substr(0, 40));
  EXPECT_TRUE(test::throws_with([&] { read_checkpoint(path); }, path + " is truncated"));
  const auto pos = bytes.find("\"version\":2");
  ASSERT_NE(pos, std::string::npos);
  bytes[pos + 10] = '9';
  write_file_atomic(path, bytes);
  EXPECT_TRUE(test::throws_with([&] { read_checkpoint(path); }, "checkpoint: version = 9, must be 2"));
  Checkpoint empty;
  EXPECT_TRUE(test::throws_with([&] { write_checkpoint(path, empty); }, "checkpoint: systems = 0"));
}

// One flipped bit anywhere (here in the last value of the data block, then in the metadata)
// is refused by the checksum instead of resumed into different results.
TEST(Checkpoint, AFlippedBitIsRefusedByTheChecksum) {
  const std::string path = temp_path("flip.bin");
  write_checkpoint(path, sample_checkpoint());
  const std::string good = read_file(path);
  EXPECT_NO_THROW(read_checkpoint(path));
  std::string bytes = good;
  bytes[bytes.size() - 9] ^= 0x01;  // before the 8-byte checksum: the last state value
  write_file_atomic(path, bytes);
  EXPECT_TRUE(test::throws_with([&] { read_checkpoint(path); }, path + " is corrupt: its checksum"));
  bytes = good;
  const auto pos = bytes.find("\"observation\":");
  ASSERT_NE(pos, std::string::npos);
  bytes[pos + 15] ^= 0x01;  // a digit of the observation counter
  write_file_atomic(path, bytes);
  EXPECT_TRUE(test::throws_with([&] { read_checkpoint(path); }, "is corrupt"));
  bytes = good;
  bytes.resize(bytes.size() - 3);  // a torn trailer
  write_file_atomic(path, bytes);
  EXPECT_ANY_THROW(read_checkpoint(path));
}

// An OT solve's checkpoint: the potentials bit for bit, and refused as another kind's and
// with sizes that do not fit its data.
TEST(Checkpoint, OtRoundTripIsBitExactAndKindsAreKeptApart) {
  Rng rng(3);
  OtCheckpoint c;
  c.config = "ot entropic, eps 0x1.47ae147ae147bp-7\n--x 96 bytes, fnv1a64 0123456789abcdef\n";
  c.iteration = 123;
  c.seconds = 1.0 / 3.0;
  c.f = test::random_matrix(7, 1, rng).col(0);
  c.g = test::random_matrix(4, 1, rng).col(0);
  const std::string path = temp_path("ot.bin");
  write_ot_checkpoint(path, c);
  const OtCheckpoint r = read_ot_checkpoint(path);
  EXPECT_EQ(r.config, c.config);
  EXPECT_EQ(r.iteration, 123);
  EXPECT_EQ(std::memcmp(&r.seconds, &c.seconds, sizeof(double)), 0);
  EXPECT_TRUE(test::bit_equal(Matrix(r.f), Matrix(c.f)));
  EXPECT_TRUE(test::bit_equal(Matrix(r.g), Matrix(c.g)));
  EXPECT_TRUE(test::throws_with([&] { read_checkpoint(path); }, "ot"));
  write_checkpoint(path, sample_checkpoint());
  EXPECT_TRUE(test::throws_with([&] { read_ot_checkpoint(path); }, "run"));
  // Sizes from the metadata that do not fit the data are refused before they size anything.
  write_checkpoint_file(path, R"({"version":2,"kind":"ot","config":"","iteration":1,"n":9,"m":4,"seconds":0})",
                        c.f.data(), {7});
  EXPECT_TRUE(test::throws_with([&] { read_ot_checkpoint(path); }, "n = 9, m = 4, must be >= 1 with n + m"));
}

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(Progress::format_seconds(3.21), "3.2s");
  EXPECT_EQ(Progress::format_seconds(65.0), "1m05s");
  EXPECT_EQ(Progress::format_seconds(7260.0), "2h01m");
  EXPECT_EQ(Progress::format_seconds(-1.0), "?");
}

// What a Progress in plain mode (min_interval seconds between lines) prints while `use` runs.
template <typename F>
std::string progress_output(double total, const char* label, double min_interval, F&& use) {
  char* buf = nullptr;
  std::size_t len = 0;
  std::FILE* f = open_memstream(&buf, &len);
  {
    Progress p(total, label, f, 0, min_interval);
    use(p);
  }
  std::fclose(f);
  std::string out(buf, len);
  std::free(buf);
  return out;
}

TEST(Progress, PlainLinesAreThrottledAndFinishAlwaysPrints) {
  const std::string out = progress_output(10.0, "job", 3600.0, [](Progress& p) {  // one line per hour
    p.update(1.0, "first");
    p.update(2.0, "second");  // throttled
    p.finish("done");
  });
  EXPECT_NE(out.find("job:  10.0% first"), std::string::npos) << out;
  EXPECT_EQ(out.find("second"), std::string::npos) << out;
  EXPECT_NE(out.find("job: 100.0% done"), std::string::npos) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos);  // no bar redraws in plain mode
}

TEST(Progress, OpenEndedLinesHaveNoPercentageOrEta) {
  const std::string out = progress_output(Progress::kOpenEnded, "ot", 0.0, [](Progress& p) {
    p.update(7.0, "iteration 7, eps 0.1");
    p.finish("converged");
  });
  EXPECT_NE(out.find("ot: iteration 7, eps 0.1 (elapsed "), std::string::npos) << out;
  EXPECT_NE(out.find("ot: converged (elapsed "), std::string::npos) << out;
  EXPECT_EQ(out.find('%'), std::string::npos) << out;
  EXPECT_EQ(out.find("eta"), std::string::npos) << out;
}

}  // namespace
}  // namespace attnflow
