#include "attnflow/base/parallel.hpp"

#include <omp.h>

#include <atomic>

namespace attnflow {

namespace {
std::atomic<int> g_threads{0};
}

void set_num_threads(int threads) { g_threads = threads > 0 ? threads : 0; }

int num_threads() {
  const int t = g_threads.load();
  return t > 0 ? t : omp_get_max_threads();
}

}  // namespace attnflow
