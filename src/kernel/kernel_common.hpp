// Constants and vector types shared by the kernel's two reductions (kernel.cpp, the general
// one, and kernel_symmetric.cpp, queries = beta * keys).
#pragma once

#include <limits>

#include "attnflow/base/types.hpp"
#include "simd_exp.hpp"

namespace attnflow::detail {

constexpr Index kPacket = kPacketSize;
constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr double kLog2e = 0x1.71547652b82fep+0;  // log2(e), for the loops in log2 units
constexpr double kLn2 = 0x1.62e42fefa39efp-1;    // ln(2)

// Largest k and p of the fused SIMD loops (packed, per-dimension vectors in registers).
constexpr Index kMaxFused = 16;

// Below this many (query, key) pairs one thread does the whole reduction: an OpenMP region
// costs microseconds (milliseconds when the cores are oversubscribed), more than the work.
// Only the thread count changes, never the arithmetic, so results stay bit-identical.
constexpr double kMinParallelPairs = 65536.0;

}  // namespace attnflow::detail
