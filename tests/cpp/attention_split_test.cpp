// Attention with the points split across processes (attention_split): P in-process "ranks"
// (threads behind a Collective, thread_collective.hpp), each holding only its rows of the
// queries, keys and values, against attention() on the whole points, bit for bit: softmax,
// Sinkhorn and unnormalized heads, with and without Q, K, V, W maps. The same over MPI is
// tests/mpi/run_mpi_tests.py (group attention).
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "attnflow/attention/attention.hpp"
#include "attnflow/base/parallel.hpp"
#include "test_util.hpp"
#include "thread_collective.hpp"

namespace attnflow {
namespace {

using test::random_matrix;
using test::random_weights;

TEST(AttentionSplit, RowsEqualTheWholePointsBitForBit) {
  Rng rng(11);
  const Index n = 700, m = 517;
  const Matrix x = random_matrix(n, 3, rng), y = random_matrix(m, 3, rng), vals = random_matrix(m, 4, rng);
  const Vector a = random_weights(n, rng), b = random_weights(m, rng);
  std::vector<AttentionOptions> cases(3);
  cases[0].beta = 0.7;  // one softmax head, identity maps
  cases[1].beta = 1.3;  // a Sinkhorn head with maps, and a softmax head
  cases[1].sinkhorn.tol = 1e-10;
  cases[1].heads = {AttentionHead(random_matrix(2, 3, rng), random_matrix(2, 3, rng), random_matrix(2, 4, rng),
                                  random_matrix(3, 2, rng), Normalization::sinkhorn),
                    AttentionHead({}, {}, random_matrix(3, 4, rng), {}, Normalization::softmax)};
  cases[2].beta = 0.4;
  cases[2].normalization = Normalization::none;
  set_num_threads(1);  // the ranks are threads here
  for (std::size_t c = 0; c < cases.size(); ++c) {
    const AttentionResult whole = attention(Measure(x, a), Measure(y, b), vals, cases[c]);
    ASSERT_TRUE(attention_splittable(n, m, cases[c], 3, 4));
    for (int p : {2, 3, 4}) {
      test::Shared shared(p);
      std::vector<std::thread> ranks;
      for (int r = 0; r < p; ++r)
        ranks.emplace_back([&, r] {
          test::ThreadCollective comm(shared, r);
          const SplitRows split{&comm, kernel_row_parts(n, p), kernel_row_parts(m, p)};
          const Range q = split.queries(), k = split.keys();
          const Matrix mine_vals = vals.middleRows(k.first, k.count);
          const AttentionResult res = attention_split(x.middleRows(q.first, q.count), y.middleRows(k.first, k.count),
                                                      &mine_vals, a, b, cases[c], split);
          EXPECT_TRUE(test::bit_equal(res.out, whole.out.middleRows(q.first, q.count)))
              << "case " << c << ", " << p << " ranks";
          ASSERT_EQ(res.lse.size(), whole.lse.size());
          for (std::size_t h = 0; h < res.lse.size(); ++h) {
            EXPECT_TRUE(test::bit_equal(res.lse[h], whole.lse[h].segment(q.first, q.count))) << "case " << c << " head " << h;
            EXPECT_EQ(res.status[h].iterations, whole.status[h].iterations);
            EXPECT_EQ(std::memcmp(&res.status[h].marginal_error, &whole.status[h].marginal_error, sizeof(double)), 0);
          }
        });
      for (auto& t : ranks) t.join();
    }
  }
  set_num_threads(0);
}

TEST(AttentionSplit, RefusesRowsThatAreNotThisProcesssPart) {
  Rng rng(2);
  const Matrix x = random_matrix(20, 2, rng);
  AttentionOptions opt;
  EXPECT_FALSE(attention_splittable(4, 20, opt, 2, 2));
  EXPECT_FALSE(attention_splittable(20, 20, opt, 17, 2));
  test::Shared shared(1);
  test::ThreadCollective comm(shared, 0);
  const SplitRows split{&comm, kernel_row_parts(20, 1), kernel_row_parts(20, 1)};
  EXPECT_TRUE(test::throws_with([&] { attention_split(x.topRows(10), x, nullptr, Vector(), Vector(), opt, split); },
                                "must hold rows [0, 20) of the queries"));
}

}  // namespace
}  // namespace attnflow
