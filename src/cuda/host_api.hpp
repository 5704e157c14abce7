// Plain C++ interface of the CUDA backend (attnflow_cuda), called by src/kernel/device.cpp.
// No Eigen and no CUDA types, so that both the CUDA and the C++ compiler read it.
#pragma once

#include <cstdint>
#include <string>

namespace attnflow::cuda_detail {

// Whether a CUDA device can be used; why not in *reason otherwise.
bool device_usable(std::string* reason);
std::string device_description();

// Host arrays in, host arrays out (lse (n) and out (n, p) may be null). Computes
// s_ij = uscale <u_i, v_j> + col_j and the reductions of kernel.hpp in float64, or in
// float32 when single is true. Shapes are validated by the caller; k, p <= kMaxDim.
constexpr std::int64_t kMaxDim = 64;
void reduce_host(const double* u, const double* v, const double* col, const double* vals,
                 std::int64_t n, std::int64_t m, std::int64_t k, std::int64_t p, double uscale,
                 double* lse, double* out, bool single);

}  // namespace attnflow::cuda_detail
