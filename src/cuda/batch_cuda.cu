// The batched ensemble's GPU path (host_api.hpp's batch_*): one thread block per system, the
// block algorithm of batch_step.cuh on the GPU. The states stay on the GPU between calls.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "batch_step.cuh"
#include "host_api.hpp"
#include "reduce.cuh"

namespace attnflow::cuda_detail {

namespace {

namespace bs = batch_step;

constexpr int kBatchThreads = 128;

// batch_step's Block on the GPU: a phase is every thread's share, then a barrier.
struct DeviceBlock {
  template <class F>
  __device__ void run(F f) {
    f(static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x));
    __syncthreads();
  }
  __device__ void flag_or(int* p, int v) { atomicOr(p, v); }
  __device__ int read(const int* p) { return *static_cast<const volatile int*>(p); }
};

struct Params {
  int n = 0, d = 0;
  const double* beta = nullptr;
  const unsigned char* usa = nullptr;
  const double* usa_shift = nullptr;
  const double* log_w = nullptr;
  const double* w = nullptr;
  double* states = nullptr;
};

__device__ bs::System system_of(const Params& p, std::int64_t s) {
  bs::System sys;
  sys.n = p.n;
  sys.d = p.d;
  sys.beta = p.beta[s];
  sys.usa = p.usa[s] != 0;
  sys.usa_shift = p.usa_shift[s];
  sys.log_w = p.log_w + s * p.n;
  sys.w = p.w + s * p.n;
  return sys;
}

// The block's system state from global into shared memory (rows stride(d) apart).
__device__ void load_state(const Params& p, std::int64_t s, double* x) {
  const int n = p.n, d = p.d, ds = bs::stride(d);
  const double* st = p.states + s * n * d;
  for (int idx = threadIdx.x; idx < n * d; idx += blockDim.x) {
    const int i = idx / d, k = idx - i * d;
    x[i * ds + k] = st[idx];
  }
}

__global__ void __launch_bounds__(kBatchThreads)
advance_kernel(Params p, const double* __restrict__ h, int steps, int method, int* __restrict__ status,
               int* __restrict__ failed, unsigned long long* __restrict__ first_failure,
               const double* __restrict__ obs_beta, const double* __restrict__ obs_ltb, double delta,
               const int* __restrict__ obs_after, int obs_count, double* __restrict__ obs_out) {
  extern __shared__ __align__(16) double smem[];
  __shared__ int flag;
  const std::int64_t s = blockIdx.x;
  const bs::Method m = static_cast<bs::Method>(method);
  if (threadIdx.x == 0) flag = 0;
  const bs::System sys = system_of(p, s);
  const bs::Shared sh = bs::carve(smem, &flag, p.n, p.d, m);
  load_state(p, s, sh.x);
  __syncthreads();
  DeviceBlock b;
  int at = -1;
  // The steps, with the observables (obs_count, systems, 5) after the steps obs_after lists.
  const bool obs = obs_count > 0;
  const int code = bs::advance_observing(b, sys, sh, h, steps, m, obs_after, obs_count, obs ? obs_beta[s] : 0.0,
                                         obs ? obs_ltb[s] : 0.0, delta, obs ? obs_out + 5 * s : nullptr,
                                         static_cast<std::ptrdiff_t>(5) * gridDim.x, &at);
  const int n = p.n, d = p.d, ds = bs::stride(d);
  double* st = p.states + s * n * d;
  for (int idx = threadIdx.x; idx < n * d; idx += blockDim.x) {
    const int i = idx / d, k = idx - i * d;
    st[idx] = sh.x[i * ds + k];
  }
  if (threadIdx.x == 0) {
    status[s] = code;
    failed[s] = at;
    if (code != 0) atomicMin(first_failure, static_cast<unsigned long long>(s));
  }
}

template <typename T>
T* alloc(std::size_t count, const char* what) {
  T* dst = nullptr;
  check(cudaMalloc(&dst, sizeof(T) * std::max<std::size_t>(count, 1)), what);
  return dst;
}

template <typename T>
T* upload(const T* src, std::size_t count, const char* what) {
  T* dst = alloc<T>(count, what);
  if (count) check(cudaMemcpy(dst, src, sizeof(T) * count, cudaMemcpyHostToDevice), what);
  return dst;
}

std::size_t shared_bytes(std::int64_t n, std::int64_t d, bs::Method m) {
  return sizeof(double) * bs::shared_doubles(static_cast<int>(n), static_cast<int>(d), m);
}

int max_shared_bytes() {
  int v = 0;
  check(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0), "cudaDeviceGetAttribute");
  return v - static_cast<int>(sizeof(int)) - 64;  // the static flag and some slack
}

template <typename T>
T* alloc_host(std::size_t count, const char* what) {
  void* dst = nullptr;
  check(cudaMallocHost(&dst, sizeof(T) * std::max<std::size_t>(count, 1)), what);
  return static_cast<T*>(dst);
}

// A device array sent again only when its contents change: a run observed every step sends
// the same one step (and the same observation point) with each call.
template <typename T>
struct Resent {
  T* dev = nullptr;
  std::size_t capacity = 0;
  std::vector<T> last;  // what dev holds
  const T* put(const T* src, std::size_t count, const char* what) {
    if (count == 0) return dev;
    if (last.size() == count && std::equal(src, src + count, last.begin())) return dev;
    last.clear();  // until the copy below has happened
    if (count > capacity) {
      if (dev) check(cudaFree(dev), what);
      dev = nullptr;
      capacity = 0;
      check(cudaMalloc(&dev, sizeof(T) * count), what);
      capacity = count;
    }
    check(cudaMemcpy(dev, src, sizeof(T) * count, cudaMemcpyHostToDevice), what);
    last.assign(src, src + count);
    return dev;
  }
  ~Resent() {
    if (dev) cudaFree(dev);
  }
};

// A buffer of doubles grown to the largest call: on the device, or page-locked on the host.
template <bool Host>
struct Grown {
  double* ptr = nullptr;
  std::size_t capacity = 0;
  void reserve(std::size_t count) {
    if (count <= capacity) return;
    release();
    if (Host) check(cudaMallocHost(&ptr, sizeof(double) * count), "cudaMallocHost (batch observe)");
    else check(cudaMalloc(&ptr, sizeof(double) * count), "cudaMalloc (batch observe)");
    capacity = count;
  }
  void release() {
    if (ptr) {
      if (Host) cudaFreeHost(ptr);
      else cudaFree(ptr);
    }
    ptr = nullptr;
    capacity = 0;
  }
  ~Grown() { release(); }
};

struct Batch {
  std::int64_t systems = 0, n = 0, d = 0;
  Params p;
  int* status = nullptr;
  int* failed = nullptr;
  unsigned long long* first_failure = nullptr;  // the lowest failing system (or ~0)
  Resent<double> h;                             // the steps
  Resent<int> obs_after;                        // the observation points
  double* obs_beta = nullptr;
  double* obs_ltb = nullptr;
  // The observables come back, with first_failure (page-locked: first_host), by asynchronous
  // copies after the launch, with one synchronization (batch_finish). Two host buffers, one per
  // launch in turn: a launch's observations stay readable while the next one runs.
  Grown<false> obs;
  Grown<true> obs_host[2];
  int parity = 0;             // obs_host of the launch in flight
  std::size_t obs_values = 0;  // its values
  bool pending = false;        // a launch not yet finished
  unsigned long long* first_host = nullptr;
  std::vector<void*> owned, owned_host;
  ~Batch() {
    for (void* q : owned) cudaFree(q);
    for (void* q : owned_host) cudaFreeHost(q);
  }
};

}  // namespace

std::string batch_refusal(std::int64_t n, std::int64_t d, int method) {
  if (n < 2 || d < 1) return "n = " + std::to_string(n) + ", d = " + std::to_string(d) + " (needs n >= 2, d >= 1)";
  std::string reason;
  if (!device_usable(&reason)) return "no usable CUDA device (" + reason + ")";
  const std::size_t need = shared_bytes(n, d, static_cast<bs::Method>(method));
  const int have = max_shared_bytes();
  if (need > static_cast<std::size_t>(have))
    return "n = " + std::to_string(n) + ", d = " + std::to_string(d) + " needs " + std::to_string(need) +
           " bytes of shared memory per system, the GPU has " + std::to_string(have);
  return "";
}

void* batch_create(const BatchSpec& spec, const double* states) {
  auto* b = new Batch;
  try {
    b->systems = spec.systems;
    b->n = spec.n;
    b->d = spec.d;
    const auto S = static_cast<std::size_t>(spec.systems), N = static_cast<std::size_t>(spec.n),
               D = static_cast<std::size_t>(spec.d);
    auto keep = [&](auto* q) {  // freed with the batch
      b->owned.push_back(q);
      return q;
    };
    b->p.n = static_cast<int>(spec.n);
    b->p.d = static_cast<int>(spec.d);
    b->p.beta = keep(upload(spec.beta, S, "cudaMalloc (batch beta)"));
    b->p.usa = keep(upload(spec.usa, S, "cudaMalloc (batch usa)"));
    b->p.usa_shift = keep(upload(spec.usa_shift, S, "cudaMalloc (batch usa shift)"));
    b->p.log_w = keep(upload(spec.log_w, S * N, "cudaMalloc (batch log weights)"));
    b->p.w = keep(upload(spec.w, S * N, "cudaMalloc (batch weights)"));
    b->p.states = keep(upload(states, S * N * D, "cudaMalloc (batch states)"));
    b->status = keep(alloc<int>(S, "cudaMalloc (batch status)"));
    b->failed = keep(alloc<int>(S, "cudaMalloc (batch status)"));
    b->first_failure = keep(alloc<unsigned long long>(1, "cudaMalloc (batch status)"));
    b->obs_beta = keep(alloc<double>(S, "cudaMalloc (batch observe)"));
    b->obs_ltb = keep(alloc<double>(S, "cudaMalloc (batch observe)"));
    b->first_host = alloc_host<unsigned long long>(1, "cudaMallocHost (batch status)");
    b->owned_host.push_back(b->first_host);
  } catch (...) {
    delete b;
    throw;
  }
  return b;
}

void batch_destroy(void* handle) { delete static_cast<Batch*>(handle); }

namespace {

// The observation betas and their log(2 beta) to the GPU (the caller sends them only when they
// change: host_api.hpp).
void set_obs_beta(Batch* b, const double* beta, const double* log_two_beta) {
  const auto S = static_cast<std::size_t>(b->systems);
  check(cudaMemcpy(b->obs_beta, beta, sizeof(double) * S, cudaMemcpyHostToDevice), "cudaMemcpy (batch observe)");
  check(cudaMemcpy(b->obs_ltb, log_two_beta, sizeof(double) * S, cudaMemcpyHostToDevice),
        "cudaMemcpy (batch observe)");
}

}  // namespace

void batch_start(void* handle, const double* h, int steps, int method, const double* obs_beta,
                 const double* obs_log_two_beta, double delta, const int* obs_after, int obs_count) {
  auto* b = static_cast<Batch*>(handle);
  if (b->pending) throw std::logic_error("batch_start: the previous launch is not finished (batch_finish)");
  steps = std::max(steps, 0);
  obs_count = std::max(obs_count, 0);
  b->parity ^= 1;
  b->obs_values = 0;
  if (b->systems == 0 || (steps == 0 && obs_count == 0)) return;
  if (obs_count > 0 && obs_beta) set_obs_beta(b, obs_beta, obs_log_two_beta);
  const auto m = static_cast<bs::Method>(method);
  const double* h_dev = b->h.put(h, static_cast<std::size_t>(steps), "cudaMemcpy (batch steps)");
  const int* after_dev = b->obs_after.put(obs_after, static_cast<std::size_t>(obs_count), "cudaMemcpy (batch observe)");
  const std::size_t obs_values = 5 * static_cast<std::size_t>(b->systems) * static_cast<std::size_t>(obs_count);
  b->obs.reserve(obs_values);
  b->obs_host[b->parity].reserve(obs_values);
  const std::size_t smem = shared_bytes(b->n, b->d, m);
  if (smem > 48 * 1024)
    check(cudaFuncSetAttribute(advance_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
          "cudaFuncSetAttribute");
  check(cudaMemsetAsync(b->first_failure, 0xff, sizeof(unsigned long long)), "cudaMemsetAsync (batch status)");
  advance_kernel<<<static_cast<unsigned>(b->systems), kBatchThreads, smem>>>(
      b->p, h_dev, steps, method, b->status, b->failed, b->first_failure, b->obs_beta, b->obs_ltb, delta, after_dev,
      obs_count, b->obs.ptr);
  check(cudaGetLastError(), "advance_kernel launch");
  // The status and the observables back in one round trip (the launch's stream, in order).
  check(cudaMemcpyAsync(b->first_host, b->first_failure, sizeof(unsigned long long), cudaMemcpyDeviceToHost),
        "cudaMemcpyAsync (batch status)");
  if (obs_values)
    check(cudaMemcpyAsync(b->obs_host[b->parity].ptr, b->obs.ptr, sizeof(double) * obs_values,
                          cudaMemcpyDeviceToHost),
          "cudaMemcpyAsync (batch observe)");
  b->obs_values = obs_values;
  b->pending = true;
}

int batch_finish(void* handle, const double** obs, std::int64_t* system, int* step) {
  auto* b = static_cast<Batch*>(handle);
  *system = -1;
  *step = -1;
  *obs = b->obs_values ? b->obs_host[b->parity].ptr : nullptr;
  if (!b->pending) return 0;
  b->pending = false;
  check(cudaStreamSynchronize(nullptr), "advance_kernel");
  const unsigned long long first = *b->first_host;
  if (first >= static_cast<unsigned long long>(b->systems)) return 0;
  *obs = nullptr;
  int status = 0, failed = -1;
  check(cudaMemcpy(&status, b->status + first, sizeof(int), cudaMemcpyDeviceToHost), "cudaMemcpy (batch status)");
  check(cudaMemcpy(&failed, b->failed + first, sizeof(int), cudaMemcpyDeviceToHost), "cudaMemcpy (batch status)");
  *system = static_cast<std::int64_t>(first);
  *step = failed;
  return status;
}

void batch_download(const void* handle, double* states) {
  const auto* b = static_cast<const Batch*>(handle);
  const std::size_t count = static_cast<std::size_t>(b->systems * b->n * b->d);
  if (count) check(cudaMemcpy(states, b->p.states, sizeof(double) * count, cudaMemcpyDeviceToHost), "cudaMemcpy (batch states)");
}

}  // namespace attnflow::cuda_detail
