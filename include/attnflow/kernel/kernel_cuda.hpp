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

// "cpu" or "cuda"; anything else is std::invalid_argument("<ctx>: device = <name>, must be one
// of cpu, cuda").
Device parse_device(std::string_view name, std::string_view ctx = "device");
const char* device_name(Device device);
// "float64" or "float32"; anything else is std::invalid_argument ("must be one of float64,
// float32").
Precision parse_precision(std::string_view name, std::string_view ctx = "precision");
const char* precision_name(Precision precision);

// The process-wide device of every reduction, beside the thread count (parallel.hpp):
// kernel.hpp's lse_reduce and lse_reduce_symmetric, and so attention (all normalizations),
// Sinkhorn, flows, energies and the per-system ensembles, run on it. Default: cpu, float64.
// set_device checks first (require_device): cuda in a build without the backend or on a machine
// without a usable GPU throws and leaves the setting unchanged. The CLI's --device, the configs'
// compute.device and Python's set_device() / device= set it. The batched small-system ensemble
// has its own GPU path (batch_cuda.hpp) for SA / USA systems on the sphere; its other cases stay
// on the CPU (device_fallback()).
struct DeviceSetting {
  Device device = Device::cpu;
  Precision precision = Precision::float64;
};
void set_device(Device device, Precision precision = Precision::float64);
DeviceSetting current_device();
// What a run on the current device computes elsewhere, for summaries: "" on the CPU; with cuda
// and the batched ensemble's CPU path in use (Ensemble::runs_on_gpu() false), the sentence saying
// that it ran on the CPU.
std::string device_fallback(bool batched_ensemble);

// True when this build has the CUDA backend and a CUDA device is present.
bool cuda_available();
// True when this build was compiled with the CUDA backend (a device may still be missing).
bool cuda_compiled();
// "NVIDIA H100 80GB HBM3 (sm_90)"-style description of device 0, or why there is none.
std::string cuda_device_description();

// Throws std::invalid_argument(no_cuda_backend_message()) when device is cuda and the backend is
// not compiled in, and std::runtime_error("device = cuda: no usable CUDA device (<CUDA error
// name>: <its text>)") when it is compiled in but no device can be used. Nothing for cpu.
void require_device(Device device);
std::string no_cuda_backend_message();

// lse_reduce / lse_reduce_symmetric on the chosen device, whatever set_device says. Device::cpu
// ignores precision (the CPU path is float64) and runs the CPU kernel. Device::cuda copies the host
// arrays to the GPU, reduces there and copies lse / out back.
void lse_reduce(const ReduceInput& in, const ReduceOutput& out, Device device,
                Precision precision = Precision::float64);
void lse_reduce_symmetric(const SymmetricReduceInput& in, const ReduceOutput& out, Device device,
                          Precision precision = Precision::float64);

}  // namespace attnflow
