// CUDA implementation of the streaming log-sum-exp reduction (reduce.cuh, kernel_cuda.hpp).
// Same arithmetic contract as src/kernel/kernel.cpp: per query a running maximum M, a sum
// l = sum exp(s - M) and a weighted sum acc = sum exp(s - M) vals, in log2 units (scores
// multiplied by log2(e), so the exponential is exp2), lse = M ln2 + log l, out = acc / l.
// Deterministic by construction: every (query, chunk) partial is reduced by one thread over
// the chunk's keys in key order, and the chunks are combined in chunk order.
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "host_api.hpp"
#include "reduce.cuh"

namespace attnflow::cuda_detail {

namespace {

constexpr double kLog2e = 0x1.71547652b82fep+0;
constexpr double kLn2 = 0x1.62e42fefa39efp-1;

template <typename T>
__device__ __forceinline__ T dev_exp2(T x);
template <>
__device__ __forceinline__ double dev_exp2<double>(double x) { return exp2(x); }
template <>
__device__ __forceinline__ float dev_exp2<float>(float x) { return exp2f(x); }
template <typename T>
__device__ __forceinline__ T dev_log(T x);
template <>
__device__ __forceinline__ double dev_log<double>(double x) { return log(x); }
template <>
__device__ __forceinline__ float dev_log<float>(float x) { return logf(x); }

// The running maximum starts at the lowest finite value, not -inf: a key of weight 0
// (s = -inf) then gives exp2(-inf) = 0 instead of exp2(-inf + inf) = NaN.
template <typename T>
__host__ __device__ constexpr T lowest() {
  return sizeof(T) == 8 ? static_cast<T>(-DBL_MAX) : static_cast<T>(-FLT_MAX);
}

// Shared-memory row of one key: W = k + 1 + p values padded to a multiple of 16 bytes, so that
// a row starts 16-byte aligned and the compiler may read it with vector loads.
__host__ __device__ constexpr int padded_width(int w, int elem) {
  return (w + 16 / elem - 1) / (16 / elem) * (16 / elem);
}

struct Shape {
  std::int64_t n, m, k, p;
  std::int64_t chunk;   // keys per chunk
  std::int64_t chunks;  // gridDim.y
};

// KM, PM: compile-time bounds of k and p; Exact: k == KM and p == PM (no guards).
// Shared tile: kTile keys, each W = k + 1 + p values [v_0 .. v_{k-1}, log2e col, vals...],
// rows WS = padded_width(W) apart.
template <typename T, int KM, int PM, bool Exact>
__global__ void __launch_bounds__(kThreads)
reduce_kernel(const T* __restrict__ u, const T* __restrict__ v, const T* __restrict__ col,
              const T* __restrict__ vals, Shape sh, T uscale_log2e, T* __restrict__ lse,
              T* __restrict__ out, T* __restrict__ part_max, T* __restrict__ part_sum,
              T* __restrict__ part_acc) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* tile = reinterpret_cast<T*>(smem_raw);
  const int k = Exact ? KM : static_cast<int>(sh.k);
  const int p = Exact ? PM : static_cast<int>(sh.p);
  const int W = k + 1 + p;
  const int WS = padded_width(W, static_cast<int>(sizeof(T)));
  constexpr int Q = kQueriesPerThread;

  const std::int64_t q0 = (static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x) * Q;
  const std::int64_t c = blockIdx.y;
  const std::int64_t j_begin = c * sh.chunk;
  const std::int64_t j_end = min(sh.m, j_begin + sh.chunk);

  T uq[Q][KM];
  T mx[Q], sum[Q], acc[Q][PM > 0 ? PM : 1];
#pragma unroll
  for (int q = 0; q < Q; ++q) {
    const std::int64_t i = q0 + q;
#pragma unroll
    for (int t = 0; t < KM; ++t)
      uq[q][t] = (i < sh.n && (Exact || t < k)) ? uscale_log2e * u[i * k + t] : T(0);
    mx[q] = lowest<T>();
    sum[q] = 0;
#pragma unroll
    for (int t = 0; t < (PM > 0 ? PM : 1); ++t) acc[q][t] = 0;
  }

  const T log2e = static_cast<T>(kLog2e);
  for (std::int64_t j0 = j_begin; j0 < j_end; j0 += kTile) {
    const int len = static_cast<int>(min(static_cast<std::int64_t>(kTile), j_end - j0));
    __syncthreads();  // the previous tile is no longer read
    for (int e = threadIdx.x; e < len * W; e += kThreads) {
      const int key = e / W, f = e - key * W;
      const std::int64_t j = j0 + key;
      T x;
      if (f < k) x = v[j * k + f];
      else if (f == k) x = col ? log2e * col[j] : T(0);
      else x = vals[j * p + (f - k - 1)];
      tile[key * WS + f] = x;
    }
    __syncthreads();
    for (int jj = 0; jj < len; ++jj) {
      const T* key = tile + jj * WS;
      T kv[KM];
#pragma unroll
      for (int t = 0; t < KM; ++t) kv[t] = (Exact || t < k) ? key[t] : T(0);
      const T cj = key[k];
      T kw[PM > 0 ? PM : 1];
#pragma unroll
      for (int t = 0; t < PM; ++t) kw[t] = (Exact || t < p) ? key[k + 1 + t] : T(0);
#pragma unroll
      for (int q = 0; q < Q; ++q) {
        T s = cj;
#pragma unroll
        for (int t = 0; t < KM; ++t) s = fma(uq[q][t], kv[t], s);
        // One exponential per pair, exp2(-|s - M|), whichever way the maximum goes (no
        // divergent second exp when some lanes of the warp raise their maximum):
        //   s > M: rescale by exp2(M - s) and add 1 (the new maximal term), M = s;
        //   else:  add exp2(s - M).
        // s = -inf (weight 0) gives exp2(-inf) = 0; NaN propagates into the sums.
        const T d = s - mx[q];
        const bool up = d > T(0);
        const T e = dev_exp2<T>(up ? -d : d);  // 0 on the first finite score (M = lowest)
        sum[q] = up ? fma(sum[q], e, T(1)) : sum[q] + e;
#pragma unroll
        for (int t = 0; t < PM; ++t)
          acc[q][t] = up ? fma(acc[q][t], e, kw[t]) : fma(e, kw[t], acc[q][t]);
        mx[q] = up ? s : mx[q];
      }
    }
  }

  const T ln2 = static_cast<T>(kLn2);
#pragma unroll
  for (int q = 0; q < Q; ++q) {
    const std::int64_t i = q0 + q;
    if (i >= sh.n) continue;
    if (sh.chunks == 1) {
      if (lse) lse[i] = mx[q] * ln2 + dev_log<T>(sum[q]);
      if (out) {
        const T inv = T(1) / sum[q];
#pragma unroll
        for (int t = 0; t < PM; ++t)
          if (Exact || t < p) out[i * p + t] = acc[q][t] * inv;
      }
    } else {
      const std::int64_t slot = c * sh.n + i;
      part_max[slot] = mx[q];
      part_sum[slot] = sum[q];
#pragma unroll
      for (int t = 0; t < PM; ++t)
        if (Exact || t < p) part_acc[slot * p + t] = acc[q][t];
    }
  }
}

// Combines the chunks of each query in chunk order (one thread per query).
template <typename T>
__global__ void combine_kernel(Shape sh, const T* __restrict__ part_max,
                               const T* __restrict__ part_sum, const T* __restrict__ part_acc,
                               T* __restrict__ lse, T* __restrict__ out) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= sh.n) return;
  const int p = static_cast<int>(sh.p);
  T mx = lowest<T>();
  for (std::int64_t c = 0; c < sh.chunks; ++c) mx = max(mx, part_max[c * sh.n + i]);
  T sum = 0;
  for (std::int64_t c = 0; c < sh.chunks; ++c)
    sum = fma(part_sum[c * sh.n + i], dev_exp2<T>(part_max[c * sh.n + i] - mx), sum);
  if (lse) lse[i] = mx * static_cast<T>(kLn2) + dev_log<T>(sum);
  if (out && p > 0) {
    const T inv = T(1) / sum;
    for (int t = 0; t < p; ++t) {
      T a = 0;
      for (std::int64_t c = 0; c < sh.chunks; ++c) {
        const std::int64_t slot = c * sh.n + i;
        a = fma(part_acc[slot * p + t], dev_exp2<T>(part_max[slot] - mx), a);
      }
      out[i * p + t] = a * inv;
    }
  }
}

template <typename T, int KM, int PM, bool Exact>
void launch(const DeviceReduce<T>& r, const Shape& sh, T* pm, T* ps, T* pa, cudaStream_t stream) {
  const std::int64_t per_block = static_cast<std::int64_t>(kThreads) * kQueriesPerThread;
  const dim3 grid(static_cast<unsigned>((sh.n + per_block - 1) / per_block),
                  static_cast<unsigned>(sh.chunks));
  const std::size_t smem =
      sizeof(T) * kTile *
      static_cast<std::size_t>(padded_width(static_cast<int>(sh.k + 1 + sh.p), sizeof(T)));
  auto* kern = reduce_kernel<T, KM, PM, Exact>;
  if (smem > 48 * 1024)
    check(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(smem)),
          "cudaFuncSetAttribute");
  kern<<<grid, kThreads, smem, stream>>>(r.u, r.v, r.col, r.vals, sh,
                                         static_cast<T>(r.uscale * static_cast<T>(kLog2e)),
                                         r.lse, r.out, pm, ps, pa);
  check(cudaGetLastError(), "reduce_kernel launch");
}

template <typename T, int K>
void dispatch_exact_p(const DeviceReduce<T>& r, const Shape& sh, T* pm, T* ps, T* pa,
                      cudaStream_t stream) {
  if (sh.p == 0) return launch<T, K, 0, true>(r, sh, pm, ps, pa, stream);
  return launch<T, K, K, true>(r, sh, pm, ps, pa, stream);  // p == k (values = points)
}

struct ScratchCache {
  std::mutex lock;
  void* ptr = nullptr;
  std::size_t size = 0;
};
ScratchCache& scratch_cache() {
  static ScratchCache cache;
  return cache;
}

}  // namespace

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string("cuda: ") + what + ": " + cudaGetErrorString(status));
}

std::int64_t num_chunks(std::int64_t n, std::int64_t m) {
  const std::int64_t target = (std::int64_t{1} << 20) / std::max<std::int64_t>(n, 1);
  const std::int64_t by_keys = (m + 511) / 512;
  return std::max<std::int64_t>(1, std::min<std::int64_t>({target, by_keys, 64}));
}

template <typename T>
std::size_t scratch_bytes(std::int64_t n, std::int64_t m, std::int64_t p) {
  const std::int64_t chunks = num_chunks(n, m);
  if (chunks == 1) return 0;
  return sizeof(T) * static_cast<std::size_t>(chunks * n * (2 + p));
}

template <typename T>
void reduce_device(const DeviceReduce<T>& r, cudaStream_t stream) {
  if (r.n < 0 || r.m <= 0 || r.k < 0 || r.p < 0 || r.k > kMaxDim || r.p > kMaxDim)
    throw std::invalid_argument(
        "lse_reduce (cuda): shapes n = " + std::to_string(r.n) + ", m = " + std::to_string(r.m) +
        ", k = " + std::to_string(r.k) + ", p = " + std::to_string(r.p) +
        ", must be n >= 0, m >= 1, 0 <= k, p <= " + std::to_string(kMaxDim));
  if (r.p > 0 && r.vals == nullptr)
    throw std::invalid_argument("lse_reduce (cuda): vals = null, must be given when p > 0");
  if (r.n == 0) return;
  Shape sh{r.n, r.m, r.k, r.p, 0, num_chunks(r.n, r.m)};
  sh.chunk = (r.m + sh.chunks - 1) / sh.chunks;
  sh.chunks = (r.m + sh.chunk - 1) / sh.chunk;  // no empty chunk
  T *pm = nullptr, *ps = nullptr, *pa = nullptr;
  std::unique_lock<std::mutex> guard;
  if (sh.chunks > 1) {
    const std::size_t bytes = sizeof(T) * static_cast<std::size_t>(sh.chunks * r.n * (2 + r.p));
    void* base = r.scratch;
    if (!base) {
      ScratchCache& cache = scratch_cache();
      guard = std::unique_lock<std::mutex>(cache.lock);
      if (cache.size < bytes) {
        if (cache.ptr) check(cudaFree(cache.ptr), "cudaFree");
        cache.ptr = nullptr;
        cache.size = 0;
        check(cudaMalloc(&cache.ptr, bytes), "cudaMalloc (reduction partials)");
        cache.size = bytes;
      }
      base = cache.ptr;
    }
    pm = static_cast<T*>(base);
    ps = pm + sh.chunks * r.n;
    pa = ps + sh.chunks * r.n;
  }
  if (r.k == 1) dispatch_exact_p<T, 1>(r, sh, pm, ps, pa, stream);
  else if (r.k == 2 && (r.p == 0 || r.p == 2)) dispatch_exact_p<T, 2>(r, sh, pm, ps, pa, stream);
  else if (r.k == 3 && (r.p == 0 || r.p == 3)) dispatch_exact_p<T, 3>(r, sh, pm, ps, pa, stream);
  else if (r.k == 4 && (r.p == 0 || r.p == 4)) dispatch_exact_p<T, 4>(r, sh, pm, ps, pa, stream);
  else if (r.k <= 4 && r.p <= 4) launch<T, 4, 4, false>(r, sh, pm, ps, pa, stream);
  else if (r.k <= 16 && r.p <= 16) launch<T, 16, 16, false>(r, sh, pm, ps, pa, stream);
  else launch<T, kMaxDim, kMaxDim, false>(r, sh, pm, ps, pa, stream);
  if (sh.chunks > 1) {
    const int threads = 256;
    const unsigned blocks = static_cast<unsigned>((r.n + threads - 1) / threads);
    combine_kernel<T><<<blocks, threads, 0, stream>>>(sh, pm, ps, pa, r.lse, r.out);
    check(cudaGetLastError(), "combine_kernel launch");
  }
  // The cached scratch may be reused by the next call only after this one finished.
  if (guard.owns_lock()) check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

template void reduce_device<float>(const DeviceReduce<float>&, cudaStream_t);
template void reduce_device<double>(const DeviceReduce<double>&, cudaStream_t);
template std::size_t scratch_bytes<float>(std::int64_t, std::int64_t, std::int64_t);
template std::size_t scratch_bytes<double>(std::int64_t, std::int64_t, std::int64_t);

bool device_usable(std::string* reason) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    if (reason)
      *reason = status != cudaSuccess
                    ? std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status)
                    : std::string("cudaGetDeviceCount found no CUDA device");
    cudaGetLastError();  // clear the sticky-free error state
    return false;
  }
  return true;
}

std::string device_description() {
  std::string reason;
  if (!device_usable(&reason)) return "no usable CUDA device (" + reason + ")";
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
         std::to_string(prop.minor) + ", " + std::to_string(prop.multiProcessorCount) + " SMs)";
}

namespace {

// Grow-only device buffer.
struct Buffer {
  void* ptr = nullptr;
  std::size_t size = 0;
  void* get(std::size_t bytes) {
    if (bytes > size) {
      if (ptr) check(cudaFree(ptr), "cudaFree");
      ptr = nullptr;
      size = 0;
      check(cudaMalloc(&ptr, bytes), "cudaMalloc");
      size = bytes;
    }
    return ptr;
  }
};

template <typename T>
void reduce_host_typed(const double* u, const double* v, const double* col, const double* vals,
                       std::int64_t n, std::int64_t m, std::int64_t k, std::int64_t p,
                       double uscale, double* lse, double* out) {
  static std::mutex lock;  // one host call at a time: the buffers below are shared
  std::lock_guard<std::mutex> guard(lock);
  static Buffer bu, bv, bc, bw, bl, bo, bs;
  auto upload = [](Buffer& b, const double* src, std::int64_t count) -> T* {
    if (!src || count == 0) return nullptr;
    T* dst = static_cast<T*>(b.get(sizeof(T) * static_cast<std::size_t>(count)));
    if constexpr (sizeof(T) == sizeof(double)) {
      check(cudaMemcpy(dst, src, sizeof(T) * count, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
    } else {
      std::vector<T> tmp(src, src + count);
      check(cudaMemcpy(dst, tmp.data(), sizeof(T) * count, cudaMemcpyHostToDevice),
            "cudaMemcpy H2D");
    }
    return dst;
  };
  DeviceReduce<T> r;
  r.u = upload(bu, u, n * k);
  r.v = upload(bv, v, m * k);
  r.col = upload(bc, col, m);
  r.vals = upload(bw, p > 0 ? vals : nullptr, m * p);
  r.n = n;
  r.m = m;
  r.k = k;
  r.p = p;
  r.uscale = static_cast<T>(uscale);
  r.lse = lse ? static_cast<T*>(bl.get(sizeof(T) * n)) : nullptr;
  r.out = out && p > 0 ? static_cast<T*>(bo.get(sizeof(T) * n * p)) : nullptr;
  const std::size_t sb = scratch_bytes<T>(n, m, p);
  r.scratch = sb ? bs.get(sb) : nullptr;
  // k = 0 (constant scores): u and v may be null; the kernel never reads them.
  reduce_device<T>(r, nullptr);
  auto download = [](double* dst, const T* src, std::int64_t count) {
    if (!dst || !src || count == 0) return;
    if constexpr (sizeof(T) == sizeof(double)) {
      check(cudaMemcpy(dst, src, sizeof(T) * count, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
    } else {
      std::vector<T> tmp(static_cast<std::size_t>(count));
      check(cudaMemcpy(tmp.data(), src, sizeof(T) * count, cudaMemcpyDeviceToHost),
            "cudaMemcpy D2H");
      std::copy(tmp.begin(), tmp.end(), dst);
    }
  };
  download(lse, r.lse, n);
  download(out, r.out, n * p);
}

}  // namespace

void reduce_host(const double* u, const double* v, const double* col, const double* vals,
                 std::int64_t n, std::int64_t m, std::int64_t k, std::int64_t p, double uscale,
                 double* lse, double* out, bool single) {
  if (single) reduce_host_typed<float>(u, v, col, vals, n, m, k, p, uscale, lse, out);
  else reduce_host_typed<double>(u, v, col, vals, n, m, k, p, uscale, lse, out);
}

}  // namespace attnflow::cuda_detail
