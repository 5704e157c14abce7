// Device selection for the kernel's reductions (kernel_cuda.hpp). The CUDA backend
// (src/cuda/, library attnflow_cuda) is linked in only when CMake found a CUDA compiler; it
// then defines ATTNFLOW_HAVE_CUDA for this file. Without it, asking for device = cuda is a
// clear std::invalid_argument and everything else is the CPU path unchanged.
#include <fmt/format.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "attnflow/kernel/kernel_cuda.hpp"

#ifdef ATTNFLOW_HAVE_CUDA
#include "cuda/host_api.hpp"
#endif

namespace attnflow {

Device parse_device(std::string_view name) {
  if (name == "cpu") return Device::cpu;
  if (name == "cuda") return Device::cuda;
  throw std::invalid_argument(
      fmt::format("device: device = {}, must be \"cpu\" or \"cuda\"", name));
}

const char* device_name(Device device) { return device == Device::cuda ? "cuda" : "cpu"; }

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
  throw std::invalid_argument(
      "device = cuda: this build has no CUDA backend (configure with a CUDA compiler)");
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
  if (device == Device::cpu) return lse_reduce(in, out);
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
  if (device == Device::cpu) return lse_reduce_symmetric(in, out);
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
