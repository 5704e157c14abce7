// The distributed Sinkhorn of collective.hpp without MPI: kernel_row_parts' cuts, gibbs_rows
// against the rows of gibbs (bit for bit), and whole solves on P in-process "ranks" (threads
// behind a Collective that gathers through shared memory) against one process, bit for bit.
// The same over MPI is tests/mpi/run_mpi_tests.py.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "attnflow/base/collective.hpp"
#include "attnflow/ot/ot.hpp"
#include "attnflow/ot/ot_report.hpp"
#include "attnflow/base/parallel.hpp"
#include "test_util.hpp"
#include "thread_collective.hpp"

namespace attnflow {
namespace {

using test::random_matrix;
using test::random_weights;
using test::Shared;
using test::ThreadCollective;

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
          EXPECT_TRUE(test::bit_equal(part.softmin, whole.softmin.segment(r.first, r.count)));
          EXPECT_TRUE(test::bit_equal(part.ecost, whole.ecost.segment(r.first, r.count)));
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
      EXPECT_TRUE(test::bit_equal(r.f, one.f)) << p << " ranks";
      EXPECT_TRUE(test::bit_equal(r.g, one.g)) << p << " ranks";
      EXPECT_EQ(r.iterations, one.iterations);
      EXPECT_EQ(std::memcmp(&r.cost, &one.cost, sizeof(double)), 0);
      EXPECT_EQ(std::memcmp(&r.marginal_error, &one.marginal_error, sizeof(double)), 0);
    }
  }
  set_num_threads(0);
}

// The points split across ranks (TransportCost::sqeuclidean_split): each rank holds its rows
// only, its half-step rows equal those of the whole cost bit for bit, and so do whole solves.
template <typename Body>
void on_ranks(int p, Body body) {
  Shared shared(p);
  std::vector<std::thread> ranks;
  for (int r = 0; r < p; ++r)
    ranks.emplace_back([&, r] {
      ThreadCollective comm(shared, r);
      body(comm, r);
    });
  for (auto& t : ranks) t.join();
}

TEST(OtDistributed, SplitCostRowsEqualTheWholeCostBitForBit) {
  Rng rng(5);
  const Matrix x = random_matrix(700, 3, rng, 2.0), y = random_matrix(517, 3, rng);
  const Vector hx = random_matrix(700, 1, rng).col(0), hy = random_matrix(517, 1, rng).col(0);
  const Vector lx = random_weights(700, rng).array().log().matrix();
  const Vector ly = random_weights(517, rng).array().log().matrix();
  const TransportCost whole = TransportCost::sqeuclidean(x, y);
  set_num_threads(1);
  for (int p : {2, 3, 4}) {
    on_ranks(p, [&](const Collective& comm, int r) {
      const Range mx = kernel_row_parts(700, p)[static_cast<std::size_t>(r)];
      const Range my = kernel_row_parts(517, p)[static_cast<std::size_t>(r)];
      const TransportCost cost = TransportCost::sqeuclidean_split(x.middleRows(mx.first, mx.count),
                                                                     y.middleRows(my.first, my.count), 700, 517, comm);
      EXPECT_EQ(cost.comm(), &comm);
      const double scale = cost.scale(), whole_scale = whole.scale();
      EXPECT_EQ(std::memcmp(&scale, &whole_scale, sizeof(double)), 0) << p << " ranks";
      for (bool transpose : {false, true}) {
        const Range mine = transpose ? my : mx;
        const TransportCost::Gibbs part =
            cost.gibbs_rows(transpose, mine.first, mine.count, transpose ? hx : hy, transpose ? lx : ly, 0.3, true);
        const TransportCost::Gibbs ref =
            whole.gibbs_rows(transpose, mine.first, mine.count, transpose ? hx : hy, transpose ? lx : ly, 0.3, true);
        EXPECT_TRUE(test::bit_equal(part.softmin, ref.softmin)) << p << " ranks, rank " << r;
        EXPECT_TRUE(test::bit_equal(part.ecost, ref.ecost)) << p << " ranks, rank " << r;
      }
      // No process holds every point: entries and other processes' rows are refused.
      EXPECT_TRUE(test::throws_with([&] { cost(0, 0); }, "split across"));
      const Range other = kernel_row_parts(700, p)[static_cast<std::size_t>((r + 1) % p)];
      if (other.count > 0) {
        EXPECT_TRUE(test::throws_with([&] { cost.gibbs_rows(false, other.first, other.count, hy, ly, 0.3, false); },
                                      "must be this process's rows"));
      }
    });
  }
  set_num_threads(0);
}

TEST(OtDistributed, SplitSolveEqualsOneProcessBitForBit) {
  Rng rng(9);
  const Matrix x = random_matrix(700, 2, rng), y = random_matrix(261, 2, rng);
  const Vector a = random_weights(700, rng), b = random_weights(261, rng);
  OtRequest req;
  req.sinkhorn.eps = 0.05;
  req.sinkhorn.tol = 1e-9;
  set_num_threads(1);
  const OtReport one = solve_ot(Measure(x, a), Measure(y, b), req);
  ASSERT_TRUE(one.converged);
  EXPECT_FALSE(one.points_split);
  for (int p : {2, 3, 4}) {
    std::vector<OtReport> res(static_cast<std::size_t>(p));
    on_ranks(p, [&](const Collective& comm, int r) {
      const Range mx = kernel_row_parts(700, p)[static_cast<std::size_t>(r)];
      const Range my = kernel_row_parts(261, p)[static_cast<std::size_t>(r)];
      OtRequest q = req;
      q.sinkhorn.comm = &comm;
      res[static_cast<std::size_t>(r)] =
          solve_ot_split(x.middleRows(mx.first, mx.count), y.middleRows(my.first, my.count), 700, 261, a, b, q, comm);
    });
    for (const OtReport& r : res) {
      EXPECT_TRUE(r.points_split);
      EXPECT_TRUE(test::bit_equal(r.f, one.f)) << p << " ranks";
      EXPECT_TRUE(test::bit_equal(r.g, one.g)) << p << " ranks";
      EXPECT_EQ(r.iterations, one.iterations);
      EXPECT_EQ(std::memcmp(&r.cost, &one.cost, sizeof(double)), 0);
      EXPECT_EQ(std::memcmp(&r.objective, &one.objective, sizeof(double)), 0);
      EXPECT_EQ(std::memcmp(&r.marginal_error, &one.marginal_error, sizeof(double)), 0);
      EXPECT_EQ(std::memcmp(&r.max_cost_bound, &one.max_cost_bound, sizeof(double)), 0);
    }
  }
  set_num_threads(0);
}

TEST(OtDistributed, SplitSolveRefusesWhatNeedsEveryPoint) {
  Rng rng(4);
  const Matrix x = random_matrix(20, 2, rng), y = random_matrix(20, 2, rng);
  EXPECT_FALSE(TransportCost::splittable(4, 20, 2));
  EXPECT_FALSE(TransportCost::splittable(20, 20, 16));
  EXPECT_TRUE(TransportCost::splittable(20, 20, 15));
  on_ranks(2, [&](const Collective& comm, int r) {
    OtRequest req;
    req.sinkhorn.eps = 0.1;
    req.sinkhorn.comm = &comm;
    req.plan = true;
    const Matrix xs = r == 0 ? x : Matrix(0, 2), ys = r == 0 ? y : Matrix(0, 2);  // 20 rows: all on rank 0
    EXPECT_TRUE(test::throws_with([&] { solve_ot_split(xs, ys, 20, 20, Vector(), Vector(), req, comm); },
                                  "plan with points split across processes"));
    // A rank passing rows that are not its part is refused, naming them.
    EXPECT_TRUE(test::throws_with(
        [&] { TransportCost::sqeuclidean_split(x, y.topRows(r == 0 ? 20 : 3), 20, 20, comm); },
        r == 0 ? "process 0 of 2 holds x (20, 2)" : "process 1 of 2 holds x (20, 2)"));
  });
}

}  // namespace
}  // namespace attnflow
