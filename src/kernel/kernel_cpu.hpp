// The CPU reductions themselves (kernel.cpp, kernel_symmetric.cpp). The public lse_reduce /
// lse_reduce_symmetric (kernel.hpp) consult the process-wide device first (kernel_cuda.hpp,
// set_device) and call these when it is the CPU; device.cpp calls them for Device::cpu.
#pragma once

#include "attnflow/kernel/kernel.hpp"

namespace attnflow::detail {

void lse_reduce_cpu(const ReduceInput& in, const ReduceOutput& out);
void lse_reduce_symmetric_cpu(const SymmetricReduceInput& in, const ReduceOutput& out);

}  // namespace attnflow::detail
