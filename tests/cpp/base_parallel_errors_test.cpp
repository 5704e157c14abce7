// ParallelErrors (parallel.hpp): an exception thrown inside an OpenMP region is
// caught there and rethrown after it; the one of the lowest iteration wins, whatever the
// thread count. Before, a bad_alloc inside `icl`'s batch loop aborted the process.
#include <gtest/gtest.h>

#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "attnflow/base/parallel.hpp"

namespace attnflow {
namespace {

std::string run_region(int threads) {
  ParallelErrors errors;
  std::vector<int> done(64, 0);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (long k = 0; k < 64; ++k) {
    errors.run(k, [&] {
      if (k == 41) throw std::bad_alloc();
      if (k == 17) throw std::invalid_argument("iteration 17");
      done[static_cast<size_t>(k)] = 1;
    });
  }
  int count = 0;
  for (const int d : done) count += d;
  EXPECT_EQ(count, 62);  // every other iteration ran
  try {
    errors.rethrow();
  } catch (const std::invalid_argument& e) {
    return e.what();
  } catch (const std::bad_alloc&) {
    return "bad_alloc";
  }
  return "nothing";
}

TEST(ParallelErrors, LowestIterationIsRethrownAfterTheRegion) {
  EXPECT_EQ(run_region(1), "iteration 17");
  EXPECT_EQ(run_region(2), "iteration 17");
  EXPECT_EQ(run_region(4), "iteration 17");
}

TEST(ParallelErrors, NothingThrownNothingRethrown) {
  ParallelErrors errors;
#pragma omp parallel for num_threads(2)
  for (long k = 0; k < 8; ++k) errors.run(k, [] {});
  EXPECT_NO_THROW(errors.rethrow());
}

}  // namespace
}  // namespace attnflow
