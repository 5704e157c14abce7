// The distributed Sinkhorn of collective.hpp without MPI: kernel_row_parts' cuts, gibbs_rows
// against the rows of gibbs (bit for bit), and whole solves on P in-process "ranks" (threads
// behind a Collective that gathers through shared memory) against one process, bit for bit.
// The same over MPI is tests/mpi/run_mpi_tests.py.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "attnflow/base/collective.hpp"
#include "attnflow/ot/ot.hpp"
#include "attnflow/base/parallel.hpp"
#include "test_util.hpp"
#include "thread_collective.hpp"

namespace attnflow {
namespace {

using test::random_matrix;
using test::random_weights;
using test::Shared;
using test::ThreadCollective;

bool same_bits(const Vector& a, const Vector& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(double) * a.size()) == 0;
}

TEST(OtDistributed, KernelRowPartsCoverInOrderAtBlockCuts) {
  for (Index total : {0, 1, 4, 5, 255, 256, 257, 260, 261, 517, 700, 1000, 4096, 100003}) {
    for (int parts = 1; parts <= 7; ++parts) {
      const std::vector<Range> r = kernel_row_parts(total, parts);
      ASSERT_EQ(static_cast<int>(r.size()), parts);
      Index next = 0;
      for (const Range& p : r) {
        EXPECT_EQ(p.first, next) << total << " rows in " << parts;
        EXPECT_GE(p.count, 0);
        if (p.count > 0 && p.first + p.count < total) {
          EXPECT_EQ((p.first + p.count) % 256, 0);
        }
        if (total >= 5 && p.count > 0) {
          EXPECT_GE(p.count, 5) << total << " rows in " << parts;
        }
        next = p.first + p.count;
      }
      EXPECT_EQ(next, total);
    }
  }
}

TEST(OtDistributed, GibbsRowsEqualThoseRowsOfTheWholePass) {
  Rng rng(3);
  const Matrix x = random_matrix(517, 2, rng), y = random_matrix(300, 2, rng);
  const Vector hx = random_matrix(517, 1, rng).col(0), hy = random_matrix(300, 1, rng).col(0);
  const Vector lx = random_weights(517, rng).array().log().matrix(), ly = random_weights(300, rng).array().log().matrix();
  const Matrix vals = random_matrix(517, 3, rng);
  for (const TransportCost& cost : {TransportCost::sqeuclidean(x, y), TransportCost::dense(random_matrix(517, 300, rng))}) {
    for (bool transpose : {false, true}) {
      const Vector& h = transpose ? hx : hy;
      const Vector& lw = transpose ? lx : ly;
      const Matrix* v = transpose ? &vals : nullptr;
      const TransportCost::Gibbs whole = cost.gibbs(transpose, h, lw, 0.3, true, v);
      const Index rows = whole.softmin.size();
      for (int parts : {2, 3, 5}) {
        for (const Range& r : kernel_row_parts(rows, parts)) {
          if (r.count == 0) continue;
          const TransportCost::Gibbs part = cost.gibbs_rows(transpose, r.first, r.count, h, lw, 0.3, true, v);
          EXPECT_TRUE(same_bits(part.softmin, whole.softmin.segment(r.first, r.count)));
          EXPECT_TRUE(same_bits(part.ecost, whole.ecost.segment(r.first, r.count)));
          if (v) {
            const Matrix rows_of_whole = whole.evals.middleRows(r.first, r.count);
            EXPECT_EQ(std::memcmp(part.evals.data(), rows_of_whole.data(), sizeof(double) * part.evals.size()), 0);
          }
        }
      }
    }
  }
}

TEST(OtDistributed, SolveOnRanksEqualsOneProcessBitForBit) {
  Rng rng(8);
  const Matrix x = random_matrix(700, 2, rng), y = random_matrix(261, 2, rng);
  const Vector a = random_weights(700, rng), b = random_weights(261, rng);
  const TransportCost cost = TransportCost::sqeuclidean(x, y);
  SinkhornOptions opt;
  opt.eps = 0.05;
  opt.tol = 1e-9;
  set_num_threads(1);  // the ranks are threads here
  const SinkhornResult one = sinkhorn(a, b, cost, opt);
  ASSERT_TRUE(one.converged);
  for (int p : {2, 3, 4}) {
    Shared shared(p);
    std::vector<SinkhornResult> res(static_cast<std::size_t>(p));
    std::vector<std::thread> ranks;
    for (int r = 0; r < p; ++r)
      ranks.emplace_back([&, r] {
        ThreadCollective comm(shared, r);
        SinkhornOptions o = opt;
        o.comm = &comm;
        res[static_cast<std::size_t>(r)] = sinkhorn(a, b, cost, o);
      });
    for (auto& t : ranks) t.join();
    for (const SinkhornResult& r : res) {
      EXPECT_TRUE(same_bits(r.f, one.f)) << p << " ranks";
      EXPECT_TRUE(same_bits(r.g, one.g)) << p << " ranks";
      EXPECT_EQ(r.iterations, one.iterations);
      EXPECT_EQ(std::memcmp(&r.cost, &one.cost, sizeof(double)), 0);
      EXPECT_EQ(std::memcmp(&r.marginal_error, &one.marginal_error, sizeof(double)), 0);
    }
  }
  set_num_threads(0);
}

}  // namespace
}  // namespace attnflow
