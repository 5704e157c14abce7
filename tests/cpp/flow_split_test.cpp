// Flows with the tokens split across processes (FlowOptions::split, `attnflow run
// --split-points`): P in-process "ranks" (threads behind a Collective, thread_collective.hpp),
// each holding only its rows of the state, against one Flow holding every token, bit for bit:
// the SA field with Q = K (the symmetric reduction streamed tile by tile), USA with Q != K and an
// output map (keys streamed through lse_reduce_split_keys), a pre-LN scheme, and an rk4 step.
// The same over MPI is tests/mpi/run_mpi_tests.py (group run-split).
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "attnflow/base/collective.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/flow/flow.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "test_util.hpp"
#include "thread_collective.hpp"

namespace attnflow {
namespace {

using test::random_matrix;

TEST(FlowSplit, RowsOfTheFieldAndOfRk4StepsEqualOneProcessBitForBit) {
  Rng rng(31);
  const Index n = 33068, d = 3;  // 65 tiles of 512, the last short
  const Matrix x0 = random_matrix(n, d, rng);
  std::vector<FlowOptions> cases(3);
  cases[0].beta = 4.0;  // SA, one identity head: the symmetric reduction
  cases[1].kind = FieldKind::usa;  // USA, Q != K with an output map, weights
  cases[1].beta = 0.5;
  cases[1].heads = {Head{random_matrix(2, d, rng), random_matrix(2, d, rng), random_matrix(2, d, rng),
                         random_matrix(d, 2, rng)}};
  cases[1].weights = random_matrix(n, 1, rng).col(0).array().abs() + 0.1;
  cases[2].beta = 2.0;  // pre-LN on [theta | r]
  cases[2].scheme.scheme = Scheme::pre_ln;
  IntegratorOptions rk4;
  rk4.method = Method::rk4;
  rk4.dt = 0.05;
  set_num_threads(1);  // the ranks are threads here
  for (std::size_t c = 0; c < cases.size(); ++c) {
    ASSERT_EQ(flow_split_refusal(cases[c], n, d, 3), "");
    const Flow whole(cases[c], n, d);
    const Matrix s0 = whole.initial_state(x0);
    Matrix field(s0.rows(), s0.cols());
    whole.field(0.0, s0, field);
    Matrix stepped = s0;
    FlowState st = whole.initial_flow_state();
    if (c == 0) whole.advance(stepped, st, 0.05, rk4);  // one step
    const int p = c == 0 ? 2 : 3;
    test::Shared shared(p);
    std::vector<std::thread> ranks;
    for (int r = 0; r < p; ++r)
      ranks.emplace_back([&, r] {
        test::ThreadCollective comm(shared, r);
        const std::vector<Range> parts = symmetric_row_parts(n, p);
        const SplitRows split{&comm, parts, parts};
        FlowOptions o = cases[c];
        o.split = &split;
        const Flow mine(o, n, d);
        const Range q = split.queries();
        ASSERT_EQ(mine.rows(), q.count);
        const Matrix s = mine.initial_state(x0.middleRows(q.first, q.count));
        EXPECT_TRUE(test::bit_equal(s, s0.middleRows(q.first, q.count))) << "case " << c;
        Matrix f(s.rows(), s.cols());
        mine.field(0.0, s, f);
        EXPECT_TRUE(test::bit_equal(f, field.middleRows(q.first, q.count))) << "case " << c << ", rank " << r;
        if (c == 0) {
          Matrix sx = s;
          FlowState fs = mine.initial_flow_state();
          mine.advance(sx, fs, 0.05, rk4);
          EXPECT_TRUE(test::bit_equal(sx, stepped.middleRows(q.first, q.count))) << "case " << c << ", rank " << r;
          EXPECT_EQ(fs.integrator.steps, st.integrator.steps);
        }
      });
    for (auto& t : ranks) t.join();
  }
  set_num_threads(0);
}

TEST(FlowSplit, RefusesWhatCannotSplitNamingTheOption) {
  FlowOptions o;
  EXPECT_EQ(flow_split_refusal(o, 32768, 3, 2), "");
  EXPECT_NE(flow_split_refusal(o, 20000, 3, 2).find("measure.n = 20000, must be >= 32768"), std::string::npos);
  EXPECT_NE(flow_split_refusal(o, 32768, 3, 40).find("per process"), std::string::npos);
  o.kind = FieldKind::sinkhorn;
  EXPECT_NE(flow_split_refusal(o, 32768, 3, 2).find("model.kind = \"sinkhorn\", must be sa or usa"), std::string::npos);
  o.kind = FieldKind::sa;
  o.kappa = 10.0;
  EXPECT_NE(flow_split_refusal(o, 32768, 3, 2).find("model.kappa = 10"), std::string::npos);
  o.kappa = 0.0;
  EXPECT_NE(flow_split_refusal(o, 32768, 20, 2).find("must be <= 16"), std::string::npos);
  // A Flow given parts that are not symmetric_row_parts refuses them.
  test::Shared shared(1);
  test::ThreadCollective comm(shared, 0);
  const SplitRows bad{&comm, {Range{0, 32768}}, {Range{0, 32767}}};
  o.split = &bad;
  EXPECT_TRUE(test::throws_with([&] { Flow f(o, 32768, 3); }, "must be symmetric_row_parts"));
}

}  // namespace
}  // namespace attnflow
