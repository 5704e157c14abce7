// parallel.hpp without OpenMP (scripts/gpu-check on a machine whose compiler has none): one
// thread. The kernel's results do not depend on the thread count.
#include "attnflow/base/parallel.hpp"

namespace attnflow {

void set_num_threads(int) {}
int num_threads() { return 1; }

}  // namespace attnflow
