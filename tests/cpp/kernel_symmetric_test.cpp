// The symmetric reduction (queries = beta * keys) against the dense double-precision
// reference: sizes around the tiles (256, and 512 from n = 4096) and odd/even tile counts
// (the cyclic pairing of tiles), k and p on both the templated and the runtime paths, points on the sphere and in
// R^d, offsets, beta up to 1000; the fallbacks; thread-count independence.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "attnflow/kernel/kernel.hpp"
#include "attnflow/base/parallel.hpp"
#include "test_util.hpp"
#include "thread_collective.hpp"

namespace attnflow {
namespace {

using test::all_close;
using test::dense_lse_reduce;
using test::random_matrix;

struct Result {
  Vector lse;
  Matrix out;
};

Result symmetric(const Matrix& y, const Vector& col, const Matrix& vals, double beta) {
  Result r;
  r.lse.resize(y.rows());
  r.out.resize(y.rows(), vals.cols());
  lse_reduce_symmetric({y.data(), col.size() ? col.data() : nullptr,
                        vals.cols() ? vals.data() : nullptr, y.rows(), y.cols(), vals.cols(), beta},
                       ReduceOutput{r.lse.data(), r.out.data()});
  return r;
}

Matrix sphere_points(Index n, Index k, Rng& rng) {
  Matrix y = random_matrix(n, k, rng);
  for (Index i = 0; i < n; ++i) y.row(i).normalize();
  return y;
}

void check(const Matrix& y, const Vector& col, const Matrix& vals, double beta,
           const std::string& what) {
  const Result r = symmetric(y, col, vals, beta);
  const auto ref = dense_lse_reduce(beta * y, y, col, vals);
  ASSERT_TRUE(r.lse.allFinite()) << what;
  ASSERT_TRUE(r.out.allFinite()) << what;
  // lse is of order beta |y|^2: relative 1e-12 of that magnitude, as in kernel_reduce_test.
  const double mag = 1.0 + std::abs(beta) * y.rowwise().squaredNorm().maxCoeff();
  EXPECT_TRUE(all_close(r.lse, ref.lse, 1e-12, 1e-12 * mag)) << what;
  EXPECT_TRUE(all_close(r.out, ref.out, 1e-10, 1e-10)) << what;
}

TEST(KernelSymmetric, TakesTheFastPathOnTheSphere) {
  Rng rng(1);
  const Matrix y = sphere_points(500, 3, rng);
  for (double beta : {0.0, 1.0, 1000.0})
    EXPECT_TRUE(symmetric_fast_path({y.data(), nullptr, nullptr, 500, 3, 0, beta}));
}

TEST(KernelSymmetric, MatchesDenseOnTheSphereAcrossTileCounts) {
  Rng rng(2);
  // n = 1 .. 1000: one tile, 2 tiles (even, delta = T / 2 shared), 3 (odd), 8 (even).
  for (Index n : {1, 7, 127, 128, 129, 256, 300, 383, 1000})
    for (double beta : {0.5, 4.0, 100.0}) {
      const Matrix y = sphere_points(n, 3, rng);
      check(y, Vector(), y, beta, "sphere n=" + std::to_string(n) + " beta=" + std::to_string(beta));
    }
  // From n = 4096 on the tiles are 512 points: 9 tiles (odd, a bye each round).
  const Matrix y = sphere_points(4100, 3, rng);
  check(y, Vector(), y, 3.0, "sphere n=4100");
}

TEST(KernelSymmetric, MatchesDenseForEveryTemplatedAndRuntimeShape) {
  Rng rng(3);
  for (Index k : {1, 2, 3, 4, 5, 16})
    for (Index p : {0, 1, 2, 3, 4, 5, 16}) {
      const Matrix y = random_matrix(260, k, rng, 0.7);
      const Matrix vals = random_matrix(260, p, rng);
      const Vector col = random_matrix(260, 1, rng, 2.0).col(0);
      check(y, col, vals, 1.3, "k=" + std::to_string(k) + " p=" + std::to_string(p));
    }
}

TEST(KernelSymmetric, WeightsSpreadUpToTheLimitStayOnTheFastPathAndExact) {
  // Log-weights a_j = c_j + beta |y_j|^2 / 2 spread over 290 (the limit is 300): rows of the
  // lightest tokens are dominated by heavy far-away tokens, the case the bound is about.
  Rng rng(7);
  const Matrix y = sphere_points(400, 3, rng);
  Vector col(400);
  for (Index j = 0; j < 400; ++j) col[j] = -290.0 * static_cast<double>(j % 7) / 6.0;
  EXPECT_TRUE(symmetric_fast_path({y.data(), col.data(), nullptr, 400, 3, 0, 20.0}));
  check(y, col, random_matrix(400, 3, rng), 20.0, "weights spread 290");
}

TEST(KernelSymmetric, Beta1000OnTheSphereHasNoOverflow) {
  Rng rng(4);
  const Matrix y = sphere_points(700, 3, rng);
  const Result r = symmetric(y, Vector(), y, 1000.0);
  EXPECT_GE(r.lse.minCoeff(), 1000.0 - 1e-9);  // each token's own term: beta |y_i|^2
  check(y, Vector(), y, 1000.0, "beta 1000");
}

TEST(KernelSymmetric, FallsBackWhereTheSymmetricFormIsUnsafe) {
  Rng rng(5);
  const Matrix y = random_matrix(300, 3, rng);
  const Matrix vals = random_matrix(300, 2, rng);
  // beta < 0: e_ij is not bounded above.
  EXPECT_FALSE(symmetric_fast_path({y.data(), nullptr, nullptr, 300, 3, 0, -1.0}));
  check(y, Vector(), vals, -1.0, "beta < 0");
  // Zero weights (offset -inf): rows of zero-weight tokens have no own term.
  Vector col = Vector::Zero(300);
  for (Index j = 0; j < 300; j += 4) col[j] = -std::numeric_limits<double>::infinity();
  EXPECT_FALSE(symmetric_fast_path({y.data(), col.data(), nullptr, 300, 3, 0, 1.0}));
  const Result r = symmetric(y, col, vals, 1.0);
  Vector lse;
  Matrix out;
  lse_reduce(Matrix(1.0 * y), y, col, vals, lse, out);
  EXPECT_TRUE(all_close(r.out, out, 1e-12, 1e-12));
  // Log-weights spread over more than 300 (beta |y|^2 / 2 from 0 to 1250).
  Matrix far = y;
  far.row(0) *= 50.0 / far.row(0).norm();
  EXPECT_FALSE(symmetric_fast_path({far.data(), nullptr, nullptr, 300, 3, 0, 1.0}));
  check(far, Vector(), vals, 1.0, "spread norms");
  // k > 16 goes to lse_reduce.
  const Matrix wide = random_matrix(200, 17, rng, 0.2);
  EXPECT_FALSE(symmetric_fast_path({wide.data(), nullptr, nullptr, 200, 17, 0, 1.0}));
  check(wide, Vector(), random_matrix(200, 3, rng), 1.0, "k = 17");
}

TEST(KernelSymmetric, BitIdenticalAcrossThreadCounts) {
  Rng rng(6);
  const Matrix y = sphere_points(4500, 3, rng);  // 512-point tiles
  set_num_threads(1);
  const Result a = symmetric(y, Vector(), y, 2.0);
  set_num_threads(2);
  const Result b = symmetric(y, Vector(), y, 2.0);
  set_num_threads(0);
  EXPECT_EQ(0, std::memcmp(a.lse.data(), b.lse.data(), sizeof(double) * a.lse.size()));
  EXPECT_EQ(0, std::memcmp(a.out.data(), b.out.data(), sizeof(double) * a.out.size()));
}

TEST(KernelSymmetric, RejectsMissingValues) {
  Matrix y = Matrix::Zero(4, 2);
  Vector lse(4);
  EXPECT_TRUE(test::throws_with(
      [&] {
        lse_reduce_symmetric({y.data(), nullptr, nullptr, 4, 2, 3, 1.0}, ReduceOutput{lse.data()});
      },
      "p = 3 (vals null)"));
}

// Split across P in-process ranks (SymmetricReduceInput::comm): every rank gets the whole lse
// and out of one process, bit for bit. n = 100 (one tile: every rank but one owns none), 300
// (two tiles, the second short), 700 (three), 1100 (five: an odd count, a bye per round); a
// zero weight (-inf offset) takes the fallback, which computes everything on every rank.
TEST(KernelSymmetric, SplitAcrossRanksEqualsOneProcessBitForBit) {
  Rng rng(21);
  set_num_threads(1);  // the ranks are threads here
  for (const Index n : {Index{100}, Index{300}, Index{700}, Index{1100}}) {
    for (const bool zero_weight : {false, true}) {
      const Matrix y = sphere_points(n, 3, rng), vals = random_matrix(n, 3, rng);
      Vector col = random_matrix(n, 1, rng).col(0) * 0.5;
      if (zero_weight) col[n / 2] = -std::numeric_limits<double>::infinity();
      const Result one = symmetric(y, col, vals, 3.0);
      for (const int p : {2, 3, 4}) {
        test::Shared shared(p);
        std::vector<Result> got(static_cast<std::size_t>(p));
        std::vector<std::thread> ranks;
        for (int r = 0; r < p; ++r)
          ranks.emplace_back([&, r] {
            test::ThreadCollective comm(shared, r);
            Result& g = got[static_cast<std::size_t>(r)];
            g.lse.setConstant(n, std::numeric_limits<double>::quiet_NaN());
            g.out.setConstant(n, 3, std::numeric_limits<double>::quiet_NaN());
            lse_reduce_symmetric({y.data(), col.data(), vals.data(), n, 3, 3, 3.0, &comm},
                                 ReduceOutput{g.lse.data(), g.out.data()});
          });
        for (auto& t : ranks) t.join();
        for (int r = 0; r < p; ++r) {
          const Result& g = got[static_cast<std::size_t>(r)];
          EXPECT_EQ(std::memcmp(g.lse.data(), one.lse.data(), sizeof(double) * n), 0)
              << "n = " << n << ", " << p << " ranks, rank " << r << (zero_weight ? ", fallback" : "");
          EXPECT_EQ(std::memcmp(g.out.data(), one.out.data(), sizeof(double) * n * 3), 0)
              << "n = " << n << ", " << p << " ranks, rank " << r << (zero_weight ? ", fallback" : "");
        }
      }
    }
  }
  set_num_threads(0);
}

// Points split across P in-process ranks (lse_reduce_symmetric_split): each rank holds only its
// rows and gets their lse and out, bit for bit those of one process. n = 33068 (65 tiles of
// 512, the last short: the single pass runs in waves); 2 and 3 ranks; with and without values;
// a zero weight takes the fallback (keys streamed through lse_reduce_split_keys); the whole
// points on 2 ranks (the waves' blocks split by tiles). The single pass itself is checked on
// sampled rows against the general kernel (lse_reduce).
TEST(KernelSymmetric, PointsSplitAcrossRanksEqualBitForBitAndTheWavesMatchTheGeneralKernel) {
  Rng rng(22);
  set_num_threads(1);  // the ranks are threads here
  const Index n = 33068;
  EXPECT_TRUE(symmetric_splittable(n, 3, 3));
  EXPECT_FALSE(symmetric_splittable(32768 - 512, 3, 3));
  const Matrix y = sphere_points(n, 3, rng), vals3 = random_matrix(n, 3, rng);
  Vector col = random_matrix(n, 1, rng).col(0) * 0.5;
  struct Case {
    Index p;
    bool zero_weight;
    int ranks;
  };
  for (const Case c : {Case{3, false, 2}, Case{0, false, 3}, Case{3, true, 3}}) {
    Vector cc = col;
    if (c.zero_weight) cc[n / 3] = -std::numeric_limits<double>::infinity();
    const Matrix vals = vals3.leftCols(c.p);
    const Result one = symmetric(y, cc, vals, 3.0);
    if (!c.zero_weight) {  // sampled rows against the general kernel
      std::vector<Index> rows;
      for (Index i = 0; i < n; i += 997) rows.push_back(i);
      rows.push_back(n - 1);
      Matrix u(static_cast<Index>(rows.size()), 3);
      for (std::size_t r = 0; r < rows.size(); ++r) u.row(static_cast<Index>(r)) = 3.0 * y.row(rows[r]);
      Vector lse;
      Matrix out;
      lse_reduce(u, y, cc, c.p ? vals3 : Matrix(n, 0), lse, out);
      for (std::size_t r = 0; r < rows.size(); ++r) {
        EXPECT_NEAR(one.lse[rows[r]], lse[static_cast<Index>(r)], 1e-12 * std::abs(lse[static_cast<Index>(r)]))
            << "row " << rows[r];
        for (Index t = 0; t < c.p; ++t)
          EXPECT_NEAR(one.out(rows[r], t), out(static_cast<Index>(r), t), 1e-12) << "row " << rows[r];
      }
    }
    if (c.p == 3 && !c.zero_weight) {  // the whole points on every rank (SymmetricReduceInput::comm), in waves
      test::Shared whole(2);
      std::vector<Result> got(2);
      std::vector<std::thread> ranks;
      for (int r = 0; r < 2; ++r)
        ranks.emplace_back([&, r] {
          test::ThreadCollective comm(whole, r);
          Result& g = got[static_cast<std::size_t>(r)];
          g.lse.resize(n);
          g.out.resize(n, 3);
          lse_reduce_symmetric({y.data(), cc.data(), vals.data(), n, 3, 3, 3.0, &comm},
                               ReduceOutput{g.lse.data(), g.out.data()});
        });
      for (auto& t : ranks) t.join();
      for (const Result& g : got) {
        EXPECT_TRUE(test::bit_equal(g.lse, one.lse)) << "whole points on 2 ranks";
        EXPECT_TRUE(test::bit_equal(g.out, one.out)) << "whole points on 2 ranks";
      }
    }
    const std::vector<Range> parts = symmetric_row_parts(n, c.ranks);
    test::Shared shared(c.ranks);
    std::vector<Result> got(static_cast<std::size_t>(c.ranks));
    std::vector<std::thread> ranks;
    for (int r = 0; r < c.ranks; ++r)
      ranks.emplace_back([&, r] {
        test::ThreadCollective comm(shared, r);
        const Range mine = parts[static_cast<std::size_t>(r)];
        EXPECT_EQ(mine.first % 512, 0);
        Result& g = got[static_cast<std::size_t>(r)];
        g.lse.setConstant(mine.count, std::numeric_limits<double>::quiet_NaN());
        g.out.setConstant(mine.count, c.p, std::numeric_limits<double>::quiet_NaN());
        const Matrix ym = y.middleRows(mine.first, mine.count), vm = vals.middleRows(mine.first, mine.count);
        const Vector cm = cc.segment(mine.first, mine.count);
        lse_reduce_symmetric_split({ym.data(), cm.data(), c.p ? vm.data() : nullptr, mine.count, 3, c.p, 3.0},
                                   parts, comm, ReduceOutput{g.lse.data(), c.p ? g.out.data() : nullptr});
      });
    for (auto& t : ranks) t.join();
    for (int r = 0; r < c.ranks; ++r) {
      const Range mine = parts[static_cast<std::size_t>(r)];
      const Result& g = got[static_cast<std::size_t>(r)];
      const std::string what = fmt::format("{} ranks, rank {}, p = {}{}", c.ranks, r, c.p, c.zero_weight ? ", fallback" : "");
      EXPECT_EQ(std::memcmp(g.lse.data(), one.lse.data() + mine.first, sizeof(double) * mine.count), 0) << what;
      if (c.p)
        EXPECT_EQ(std::memcmp(g.out.data(), one.out.data() + mine.first * c.p, sizeof(double) * mine.count * c.p), 0)
            << what;
    }
  }
  // Parts that are not whole tiles, or rows that are not this process's part, are refused.
  {
    test::Shared shared(2);
    test::ThreadCollective comm(shared, 0);
    Vector lse(n);
    EXPECT_TRUE(test::throws_with(
        [&] {
          lse_reduce_symmetric_split({y.data(), nullptr, nullptr, 1000, 3, 0, 1.0}, {Range{0, 1000}, Range{1000, n - 1000}},
                                     comm, ReduceOutput{lse.data()});
        },
        "must be the parts of symmetric_row_parts"));
    const std::vector<Range> parts = symmetric_row_parts(n, 2);
    EXPECT_TRUE(test::throws_with(
        [&] {
          lse_reduce_symmetric_split({y.data(), nullptr, nullptr, parts[0].count - 1, 3, 0, 1.0}, parts, comm,
                                     ReduceOutput{lse.data()});
        },
        "must be the parts of symmetric_row_parts"));
  }
  set_num_threads(0);
}

}  // namespace
}  // namespace attnflow
