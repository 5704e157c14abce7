// The streaming kernel against the dense reference: random sizes (n, m from 1 to a few
// thousand, k from 1 to 128), offsets, values, extreme scales; thread-count independence.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "attnflow/kernel/kernel.hpp"
#include "attnflow/base/parallel.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::all_close;
using test::dense_lse_reduce;
using test::random_matrix;

// Both sides are double precision with max-shifted exponentials; they differ only by
// summation order and Eigen's exp vs std::exp (a few ulp per term), so 1e-12 relative.
constexpr double kRtol = 1e-12;
// Absolute slack for outputs near zero (cancellation in sum_j P_ij v_j, |v| ~ 1).
constexpr double kAtol = 1e-12;

struct Case {
  Index n, m, k, p;
  double scale;
  bool offsets;
};

void check_case(const Case& c, std::uint64_t seed) {
  Rng rng(seed);
  const Matrix u = random_matrix(c.n, c.k, rng, c.scale / std::sqrt(double(c.k)));
  const Matrix v = random_matrix(c.m, c.k, rng);
  const Matrix vals = random_matrix(c.m, c.p, rng);
  Vector col;
  if (c.offsets) col = random_matrix(c.m, 1, rng, 3.0).col(0);
  Vector lse;
  Matrix out;
  lse_reduce(u, v, col, vals, lse, out);
  const auto ref = dense_lse_reduce(u, v, col, vals);
  ASSERT_TRUE(lse.allFinite());
  ASSERT_TRUE(out.allFinite());
  // lse is of order scale * |u||v|: compare relative to that magnitude.
  EXPECT_TRUE(all_close(lse, ref.lse, kRtol, kAtol * (1.0 + c.scale)))
      << "n=" << c.n << " m=" << c.m << " k=" << c.k << " p=" << c.p << " scale=" << c.scale;
  EXPECT_TRUE(all_close(out, ref.out, 1e-10, 1e-10))
      << "n=" << c.n << " m=" << c.m << " k=" << c.k << " p=" << c.p << " scale=" << c.scale;
}

TEST(KernelReduce, MatchesDenseReferenceOnRandomSizes) {
  Rng pick(7);
  const Index ks[] = {1, 2, 3, 4, 5, 8, 16, 17, 64, 128};
  const Index ps[] = {0, 1, 2, 3, 4, 5, 16, 17, 64};
  const double scales[] = {0.0, 1.0, 10.0, 100.0, 1000.0};
  for (int trial = 0; trial < 60; ++trial) {
    Case c;
    c.n = 1 + static_cast<Index>(pick.uniform() * (trial % 5 == 0 ? 2000 : 300));
    c.m = 1 + static_cast<Index>(pick.uniform() * (trial % 7 == 0 ? 3000 : 600));
    c.k = ks[trial % 10];
    c.p = ps[trial % 9];
    c.scale = scales[trial % 5];
    c.offsets = trial % 2 == 0;
    check_case(c, 100 + trial);
  }
}

TEST(KernelReduce, TileBoundariesExactly) {
  for (Index m : {255, 256, 257, 511, 512, 513})
    for (Index n : {1, 31, 32, 33}) check_case({n, m, 3, 3, 5.0, true}, 11 * m + n);
}

TEST(KernelReduce, Beta1000HasNoOverflow) {
  // Unit vectors at beta = 1000: exp(1000) overflows double, the kernel must not.
  Rng rng(3);
  Matrix x = random_matrix(300, 3, rng);
  for (Index i = 0; i < x.rows(); ++i) x.row(i).normalize();
  const Matrix u = 1000.0 * x;
  Vector lse;
  Matrix out;
  lse_reduce(u, x, Vector(), x, lse, out);
  ASSERT_TRUE(lse.allFinite());
  ASSERT_TRUE(out.allFinite());
  const auto ref = dense_lse_reduce(u, x, Vector(), x);
  EXPECT_TRUE(all_close(lse, ref.lse, kRtol, 1e-9));
  EXPECT_TRUE(all_close(out, ref.out, 1e-9, 1e-9));
  // Each token's own term dominates: lse_i >= 1000 |x_i|^2 = 1000.
  EXPECT_GE(lse.minCoeff(), 1000.0 - 1e-9);
}

TEST(KernelReduce, ZeroWeightKeysAreIgnored) {
  Rng rng(5);
  const Matrix u = random_matrix(40, 3, rng), v = random_matrix(700, 3, rng);
  const Matrix vals = random_matrix(700, 2, rng);
  Vector col = Vector::Zero(700);
  for (Index j = 0; j < 700; j += 3) col[j] = -std::numeric_limits<double>::infinity();
  Vector lse;
  Matrix out;
  lse_reduce(u, v, col, vals, lse, out);
  // Reference on the kept keys only.
  std::vector<Index> keep;
  for (Index j = 0; j < 700; ++j)
    if (j % 3) keep.push_back(j);
  Matrix vk(keep.size(), 3), valsk(keep.size(), 2);
  for (size_t t = 0; t < keep.size(); ++t) {
    vk.row(t) = v.row(keep[t]);
    valsk.row(t) = vals.row(keep[t]);
  }
  const auto ref = dense_lse_reduce(u, vk, Vector(), valsk);
  EXPECT_TRUE(all_close(lse, ref.lse, kRtol, kAtol));
  EXPECT_TRUE(all_close(out, ref.out, 1e-10, 1e-10));
}

TEST(KernelReduce, BitIdenticalAcrossThreadCounts) {
  Rng rng(9);
  for (Index k : {3, 64}) {
    const Matrix u = random_matrix(1000, k, rng), v = random_matrix(1500, k, rng);
    const Matrix vals = random_matrix(1500, k, rng);
    const Vector col = random_matrix(1500, 1, rng).col(0);
    Vector l1, l2;
    Matrix o1, o2;
    set_num_threads(1);
    lse_reduce(u, v, col, vals, l1, o1);
    set_num_threads(2);
    lse_reduce(u, v, col, vals, l2, o2);
    set_num_threads(0);
    EXPECT_EQ(0, std::memcmp(l1.data(), l2.data(), sizeof(double) * l1.size()));
    EXPECT_EQ(0, std::memcmp(o1.data(), o2.data(), sizeof(double) * o1.size()));
  }
}

TEST(KernelReduce, StridedViewsAreCopied) {
  Rng rng(12);
  const Matrix big = random_matrix(50, 10, rng);
  const Matrix keys = random_matrix(60, 3, rng);
  Vector lse;
  Matrix out;
  lse_reduce(big.leftCols(3), keys, Vector(), keys, lse, out);
  const auto ref = dense_lse_reduce(big.leftCols(3), keys, Vector(), keys);
  EXPECT_TRUE(all_close(out, ref.out, 1e-10, 1e-10));
}

// Keys in blocks (LseStream, as a distributed solve streams them from their owners): equal to
// one pass over all keys bit for bit, for compile-time and runtime k and p, zero-weight keys,
// and blocks of 256, 512 and a short last one.
TEST(KernelReduce, StreamedKeyBlocksEqualOnePassBitForBit) {
  Rng rng(21);
  const std::vector<std::pair<Index, Index>> sizes = {{1, 0}, {2, 3}, {3, 4}, {4, 1}, {5, 2}, {7, 6}, {15, 16}};
  for (const auto& [k, p] : sizes) {
    const Index n = 37, m = 1100;
    const Matrix u = random_matrix(n, k, rng, 2.0), v = random_matrix(m, k, rng), vals = random_matrix(m, p, rng);
    Vector col = random_matrix(m, 1, rng, 3.0).col(0);
    col[300] = -std::numeric_limits<double>::infinity();  // a key of weight 0
    Vector lse;
    Matrix out;
    lse_reduce(u, v, col, vals, lse, out);
    for (const std::vector<Index>& blocks : std::vector<std::vector<Index>>{{256, 844}, {512, 256, 332}, {1024, 76}}) {
      LseStream stream(u.data(), n, k, p);
      Index at = 0;
      for (Index b : blocks) {
        stream.add(v.data() + at * k, col.data() + at, p ? vals.data() + at * p : nullptr, b);
        at += b;
      }
      ASSERT_EQ(stream.keys(), m);
      Vector slse(n);
      Matrix sout(n, p);
      stream.finish(ReduceOutput{slse.data(), p ? sout.data() : nullptr});
      EXPECT_EQ(std::memcmp(slse.data(), lse.data(), sizeof(double) * n), 0) << "k " << k << " p " << p;
      if (p > 0) {  // (memcmp of an empty matrix's null data is undefined: GCC then drops null checks)
        EXPECT_EQ(std::memcmp(sout.data(), out.data(), sizeof(double) * n * p), 0) << "k " << k << " p " << p;
      }
    }
  }
}

TEST(KernelReduce, StreamRefusesWhatItCannotMatch) {
  const Matrix u = Matrix::Zero(8, 2), v = Matrix::Zero(300, 2);
  EXPECT_FALSE(LseStream::supports(4, 2, 0));   // <= 4 queries: lse_reduce reads keys in place
  EXPECT_FALSE(LseStream::supports(8, 17, 0));  // k > 16: the GEMM path
  EXPECT_TRUE(test::throws_with([&] { LseStream(u.data(), 4, 2, 0); }, "must be n >= 5"));
  LseStream s(u.data(), 8, 2, 0);
  s.add(v.data(), nullptr, nullptr, 100);  // a short block must be the last one
  EXPECT_TRUE(test::throws_with([&] { s.add(v.data(), nullptr, nullptr, 100); }, "must follow a multiple of 256"));
  LseStream empty(u.data(), 8, 2, 0);
  Vector lse(8);
  EXPECT_TRUE(test::throws_with([&] { empty.finish(ReduceOutput{lse.data(), nullptr}); }, "no keys"));
}

TEST(KernelReduce, RejectsBadShapes) {
  Matrix u(3, 2), v(4, 3), vals(4, 1);
  u.setZero();
  v.setZero();
  Vector lse;
  Matrix out;
  EXPECT_TRUE(test::throws_with([&] { lse_reduce(u, v, Vector(), vals, lse, out); }, "columns"));
  EXPECT_TRUE(test::throws_with(
      [&] { lse_reduce(u, Matrix(v.leftCols(2)), Vector::Zero(3), vals, lse, out); }, "col size = 3"));
}

}  // namespace
}  // namespace attnflow
