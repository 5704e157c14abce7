// Device-pointer interface of the CUDA reduction (for the host API in kernel_cuda.cu, the
// GPU benchmark bench/cuda_bench.cu and GPU-resident loops such as a Sinkhorn solve).
//
// For queries u (n, k), keys v (m, k), column offsets col (m) and values vals (m, p), all
// row-major device arrays of T (float or double):
//   s_ij  = uscale <u_i, v_j> + col_j,   lse_i = log sum_j exp(s_ij),
//   out_i = sum_j exp(s_ij - lse_i) vals_j.
// Work split (fixed, so results are bit-identical run to run): the keys are cut into
// num_chunks(n, m) chunks of equal length, a function of n and m only. Thread blocks of
// kThreads threads, each thread owning kQueriesPerThread queries, stream one chunk's keys
// through shared memory in tiles of kTile keys, in key order, keeping per query a running
// maximum, sum and weighted sum (log2 units). With one chunk the block writes lse / out;
// otherwise it writes per-chunk partials and a second kernel combines them in chunk order.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace attnflow::cuda_detail {

constexpr int kThreads = 128;
constexpr int kQueriesPerThread = 2;
constexpr int kTile = 128;

template <typename T>
struct DeviceReduce {
  const T* u = nullptr;
  const T* v = nullptr;
  const T* col = nullptr;   // null = 0
  const T* vals = nullptr;  // null when p = 0
  std::int64_t n = 0, m = 0, k = 0, p = 0;
  T uscale = 1;
  T* lse = nullptr;  // (n) or null
  T* out = nullptr;  // (n, p) or null
  // Scratch for the per-chunk partials, scratch_bytes(n, m, p) bytes (null: an internal,
  // grow-only buffer, not thread-safe).
  void* scratch = nullptr;
};

// Number of key chunks: enough (query, chunk) pairs to fill a large GPU, chunks of at least
// 512 keys, at most 64 chunks. Depends on n and m only.
std::int64_t num_chunks(std::int64_t n, std::int64_t m);
template <typename T>
std::size_t scratch_bytes(std::int64_t n, std::int64_t m, std::int64_t p);

// Launches the reduction on stream (asynchronous). Throws std::invalid_argument on bad
// shapes (k, p > 64 included) and std::runtime_error on CUDA errors at launch.
template <typename T>
void reduce_device(const DeviceReduce<T>& r, cudaStream_t stream = nullptr);

extern template void reduce_device<float>(const DeviceReduce<float>&, cudaStream_t);
extern template void reduce_device<double>(const DeviceReduce<double>&, cudaStream_t);
extern template std::size_t scratch_bytes<float>(std::int64_t, std::int64_t, std::int64_t);
extern template std::size_t scratch_bytes<double>(std::int64_t, std::int64_t, std::int64_t);

// Throws std::runtime_error("cuda: what: error string") unless status is cudaSuccess.
void check(cudaError_t status, const char* what);

}  // namespace attnflow::cuda_detail
