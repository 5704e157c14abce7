// Device selection for the kernel's reductions (kernel_cuda.hpp). The CUDA backend
// (src/cuda/, library attnflow_cuda) is linked in only when CMake found a CUDA compiler; it
// then defines ATTNFLOW_HAVE_CUDA for this file. Without it, asking for device = cuda is a
// clear std::invalid_argument and everything else is the CPU path unchanged.
#include <fmt/format.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "attnflow/kernel/kernel_cuda.hpp"
#include "kernel_cpu.hpp"

#ifdef ATTNFLOW_HAVE_CUDA
#include "cuda/host_api.hpp"
#endif

namespace attnflow {

Device parse_device(std::string_view name, std::string_view ctx) {
  if (name == "cpu") return Device::cpu;
  if (name == "cuda") return Device::cuda;
  throw std::invalid_argument(
      fmt::format("{}: device = {}, must be one of cpu, cuda", ctx, name));
}

const char* device_name(Device device) { return device == Device::cuda ? "cuda" : "cpu"; }

Precision parse_precision(std::string_view name, std::string_view ctx) {
  if (name == "float64") return Precision::float64;
  if (name == "float32") return Precision::float32;
  throw std::invalid_argument(
      fmt::format("{}: precision = {}, must be one of float64, float32", ctx, name));
}

const char* precision_name(Precision precision) {
  return precision == Precision::float32 ? "float32" : "float64";
}

namespace {
// Device in bit 1, precision in bit 0: one atomic word, read once per reduction.
std::atomic<int> g_device{0};
}  // namespace

void set_device(Device device, Precision precision) {
  if (device == Device::cpu && precision == Precision::float32)
    throw std::invalid_argument(
        "set_device: precision = float32, must be float64 with device = cpu (the CPU kernel "
        "computes in float64; float32 is a GPU option)");
  require_device(device);
  g_device = (device == Device::cuda ? 2 : 0) | (precision == Precision::float32 ? 1 : 0);
}

DeviceSetting current_device() {
  const int v = g_device.load(std::memory_order_relaxed);
  return {(v & 2) ? Device::cuda : Device::cpu, (v & 1) ? Precision::float32 : Precision::float64};
}

std::string device_fallback(bool batched_ensemble) {
  if (current_device().device == Device::cpu || !batched_ensemble) return "";
  return "the batched ensemble ran on the CPU: its GPU path takes SA / USA systems on the sphere (scheme "
         "none) with euler, residual or rk4 steps and shapes that fit a block's shared memory "
         "(measure.batched = false runs each system through the GPU reduction)";
}

std::string no_cuda_backend_message() {
  return "device = cuda: this attnflow was built without CUDA (rebuild with a CUDA compiler: "
         "nvcc on PATH or -DCMAKE_CUDA_COMPILER=..., and -DATTNFLOW_CUDA=AUTO or ON; "
         "docs/usage/gpu.md)";
}

bool cuda_compiled() {
#ifdef ATTNFLOW_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

bool cuda_available() {
#ifdef ATTNFLOW_HAVE_CUDA
  return cuda_detail::device_usable(nullptr);
#else
  return false;
#endif
}

std::string cuda_device_description() {
#ifdef ATTNFLOW_HAVE_CUDA
  return cuda_detail::device_description();
#else
  return "this build has no CUDA backend";
#endif
}

void require_device(Device device) {
  if (device != Device::cuda) return;
#ifdef ATTNFLOW_HAVE_CUDA
  std::string reason;
  if (!cuda_detail::device_usable(&reason))
    throw std::runtime_error(fmt::format("device = cuda: no usable CUDA device ({})", reason));
#else
  throw std::invalid_argument(no_cuda_backend_message());
#endif
}

namespace {

#ifdef ATTNFLOW_HAVE_CUDA
void check_dims(const char* ctx, Index k, Index p) {
  if (k > cuda_detail::kMaxDim || p > cuda_detail::kMaxDim)
    throw std::invalid_argument(fmt::format("{} (cuda): k = {}, p = {}, must be <= {} on the GPU",
                                            ctx, k, p, cuda_detail::kMaxDim));
}
#endif

}  // namespace

void lse_reduce(const ReduceInput& in, const ReduceOutput& out, Device device,
                Precision precision) {
  if (device == Device::cpu) return detail::lse_reduce_cpu(in, out);
  require_device(device);
  if (in.n < 0 || in.m <= 0 || in.k < 0 || in.p < 0)
    throw std::invalid_argument(fmt::format(
        "lse_reduce: shapes n = {}, m = {}, k = {}, p = {}, must be n >= 0, m >= 1, k, p >= 0",
        in.n, in.m, in.k, in.p));
  if (in.n == 0) return;
  if (in.p > 0 && in.vals == nullptr)
    throw std::invalid_argument("lse_reduce: vals = null, must be given when p > 0");
#ifdef ATTNFLOW_HAVE_CUDA
  check_dims("lse_reduce", in.k, in.p);
  cuda_detail::reduce_host(in.u, in.v, in.col, in.vals, in.n, in.m, in.k, in.p, 1.0, out.lse,
                           out.out, precision == Precision::float32);
#else
  (void)precision;
#endif
}

void lse_reduce_symmetric(const SymmetricReduceInput& in, const ReduceOutput& out, Device device,
                          Precision precision) {
  if (device == Device::cpu) return detail::lse_reduce_symmetric_cpu(in, out);
  require_device(device);
  if (in.n < 0 || in.k < 0 || in.p < 0 || (in.p > 0 && in.vals == nullptr))
    throw std::invalid_argument(fmt::format(
        "lse_reduce_symmetric: n = {}, k = {}, p = {} (vals {}), must be >= 0 with vals given "
        "when p > 0", in.n, in.k, in.p, in.vals ? "given" : "null"));
  if (in.n == 0) return;
#ifdef ATTNFLOW_HAVE_CUDA
  check_dims("lse_reduce_symmetric", in.k, in.p);
  // Queries beta y, keys y: the general reduction with the factor applied to the queries.
  cuda_detail::reduce_host(in.y, in.y, in.col, in.vals, in.n, in.n, in.k, in.p, in.beta, out.lse,
                           out.out, precision == Precision::float32);
#else
  (void)precision;
#endif
}

}  // namespace attnflow
