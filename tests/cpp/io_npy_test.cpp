// .npy and CSV readers/writers: round trips, float32, and the rejections (Fortran order,
// other dtypes, truncated files) with their messages.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/io/csv.hpp"
#include "attnflow/io/npy.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::make_npy;

std::string tmp_path(const std::string& name) {
  // Per process: ctest -j and other builds' tests run beside this one (the check below that no
  // temporary is left must not see another process's write in progress).
  const auto dir = std::filesystem::temp_directory_path() / ("attnflow_io_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

TEST(Npy, RoundTripIsBitExact) {
  Rng rng(1);
  const Matrix a = test::random_matrix(7, 3, rng);
  const std::string p = tmp_path("a.npy");
  write_npy(p, a);
  const Matrix b = read_npy_matrix(p);
  ASSERT_EQ(b.rows(), 7);
  ASSERT_EQ(b.cols(), 3);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(double) * 21));
  const Vector v = a.col(1);
  write_npy(p, v);
  EXPECT_EQ(read_npy_vector(p), v);
}

TEST(Npy, ReadsFloat32) {
  const float vals[4] = {1.5f, -2.0f, 0.25f, 3.0f};
  const std::string p = tmp_path("f4.npy");
  write_file_atomic(p, make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
                                std::string(reinterpret_cast<const char*>(vals), 16)));
  const Matrix m = read_npy_matrix(p);
  EXPECT_EQ(m(0, 0), 1.5);
  EXPECT_EQ(m(0, 1), -2.0);
  EXPECT_EQ(m(1, 0), 0.25);
}

TEST(Npy, RejectsFortranOrderOtherDtypesAndTruncation) {
  const std::string payload(32, '\0');
  const std::string p = tmp_path("bad.npy");
  write_file_atomic(p, make_npy("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }", payload));
  EXPECT_TRUE(test::throws_with([&] { read_npy_matrix(p); }, "fortran_order = True, must be C order"));
  write_file_atomic(p, make_npy("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }", payload));
  EXPECT_TRUE(test::throws_with([&] { read_npy_matrix(p); }, "dtype = '<i8', must be float64"));
  write_file_atomic(p, make_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }", payload));
  EXPECT_TRUE(test::throws_with([&] { read_npy_matrix(p); }, "truncated: data has 32 bytes"));
  write_file_atomic(p, "not an npy file at all");
  EXPECT_TRUE(test::throws_with([&] { read_npy_matrix(p); }, "not a .npy file"));
  EXPECT_TRUE(test::throws_with([&] { read_npy_matrix(tmp_path("missing.npy")); }, "cannot open"));
}

// Rows of a file without the rest (each process of a distributed solve reads its part).
TEST(Npy, ReadsRowsAndShapeAlone) {
  Rng rng(2);
  const Matrix a = test::random_matrix(600, 3, rng);
  const std::string p = tmp_path("rows.npy");
  write_npy(p, a);
  EXPECT_EQ(read_npy_shape(p), (std::vector<Index>{600, 3}));
  for (const auto& [first, count] : std::vector<std::pair<Index, Index>>{{0, 256}, {256, 344}, {599, 1}, {10, 0}}) {
    const Matrix r = read_npy_rows(p, first, count);
    ASSERT_EQ(r.rows(), count);
    ASSERT_EQ(r.cols(), 3);
    EXPECT_EQ(std::memcmp(r.data(), a.data() + first * 3, sizeof(double) * count * 3), 0);
  }
  EXPECT_TRUE(test::throws_with([&] { read_npy_rows(p, 500, 101); },
                                "rows [500, 601) requested, must lie in [0, 600)"));
  const float vals[6] = {1.5f, -2.0f, 0.25f, 3.0f, 4.0f, 5.0f};
  write_file_atomic(p, make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }",
                                std::string(reinterpret_cast<const char*>(vals), 24)));
  const Matrix f = read_npy_rows(p, 1, 2);
  EXPECT_EQ(f(0, 0), 0.25);
  EXPECT_EQ(f(1, 1), 5.0);
  // The header and the file's size are checked as read_npy checks them.
  write_file_atomic(p, make_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }", std::string(32, '\0')));
  EXPECT_TRUE(test::throws_with([&] { read_npy_rows(p, 0, 1); }, "truncated: data has 32 bytes"));
  EXPECT_TRUE(test::throws_with([&] { read_npy_shape(p); }, "truncated: data has 32 bytes"));
  write_file_atomic(p, "\x93NUMPY\x01");
  EXPECT_TRUE(test::throws_with([&] { read_npy_shape(p); }, "not a .npy file"));
}

TEST(Csv, RoundTripWithHeader) {
  Rng rng(2);
  const Matrix a = test::random_matrix(5, 4, rng);
  const std::string p = tmp_path("a.csv");
  write_csv(p, a, {"a", "b", "c", "d"});
  const CsvTable t = read_csv(p);
  EXPECT_EQ(t.header, (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(t.values, a);  // %.17g round-trips exactly
}

TEST(AtomicFile, LeavesNoTemporaryBehind) {
  const std::string p = tmp_path("atomic.txt");
  write_file_atomic(p, "hello");
  EXPECT_EQ(read_file(p), "hello");
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(p).parent_path()))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
}

}  // namespace
}  // namespace attnflow
