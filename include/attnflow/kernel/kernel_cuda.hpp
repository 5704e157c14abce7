// Device selection for the streaming log-sum-exp reduction (kernel.hpp): the same lse_reduce /
// lse_reduce_symmetric contract computed on the CPU (kernel.cpp) or on an NVIDIA GPU
// (src/cuda/, compiled only when CMake finds a CUDA compiler, option ATTNFLOW_CUDA).
//
// GPU semantics (docs/usage/gpu.md):
//  - streaming: never an n x m buffer; per query a running maximum, sum and weighted sum
//    ("online softmax") over key tiles in a fixed order, the keys split into a number of
//    chunks that depends on n and m only, then the chunks combined in chunk order. So GPU
//    results are bit-identical run to run (same card, same build).
//  - float64 agrees with the CPU path to relative 1e-12 (lse and out); float32 computes in
//    single precision from inputs rounded to float (its error is measured by cuda_tests and
//    scripts/gpu-check.sh).
//  - lse_reduce_symmetric on the GPU is lse_reduce with u = beta y, v = y (the CPU's symmetric
//    path gives the same values to rounding); any beta, no fast-path condition.
//  - k and p up to 64 on the GPU (larger: std::invalid_argument).
#pragma once

#include <string>
#include <string_view>

#include "attnflow/kernel/kernel.hpp"

namespace attnflow {

enum class Device { cpu, cuda };
enum class Precision { float64, float32 };

// "cpu" or "cuda"; anything else is std::invalid_argument naming the value.
Device parse_device(std::string_view name);
const char* device_name(Device device);

// True when this build has the CUDA backend and a CUDA device is present.
bool cuda_available();
// True when this build was compiled with the CUDA backend (a device may still be missing).
bool cuda_compiled();
// "NVIDIA H100 80GB HBM3 (sm_90)"-style description of device 0, or why there is none.
std::string cuda_device_description();

// Throws std::invalid_argument("device = cuda: this build has no CUDA backend (configure with
// a CUDA compiler)") when device is cuda and the backend is not compiled in, and
// std::runtime_error when it is compiled in but no device can be used. Does nothing for cpu.
void require_device(Device device);

// lse_reduce / lse_reduce_symmetric on the chosen device. Device::cpu ignores precision
// (the CPU path is float64) and calls kernel.hpp's functions. Device::cuda copies the host
// arrays to the GPU, reduces there and copies lse / out back.
void lse_reduce(const ReduceInput& in, const ReduceOutput& out, Device device,
                Precision precision = Precision::float64);
void lse_reduce_symmetric(const SymmetricReduceInput& in, const ReduceOutput& out, Device device,
                          Precision precision = Precision::float64);

}  // namespace attnflow
