// GPU benchmark of the CUDA reduction (src/cuda/reduce.cuh), driven by bench/cuda_compare.py,
// which runs PyTorch on the same card on the same inputs and prints the table.
//
//   cuda_bench attention --n N --k K --prec f64|f32 --input x.bin [--dump out.bin] [--reps R]
//     softmax self-attention of the points x (n, k) (raw float64, row-major): out_i =
//     sum_j softmax_j(<x_i, x_j>) x_j. Times the reduction only (inputs on the GPU), median of
//     R runs. --dump writes out (n, k) as raw float64.
//   cuda_bench sinkhorn --n N --k K --prec f64|f32 --x x.bin --y y.bin --eps E --tol T
//                       [--max-iter I]
//     entropic OT between uniform measures on x and y, cost |x - y|^2, log-domain Sinkhorn
//     half-steps f <- |x|^2 - eps lse_j(<x_i, 2 y_j / eps> + (g_j - |y_j|^2) / eps + log b_j)
//     (and g likewise), stopped when the L1 row-marginal error sum_i a_i |exp((f_i - f'_i) /
//     eps) - 1| (read off each f half-step) is below tol. Times the whole solve, and prints
//     "ITER iteration=I error=E seconds=S" after each f half-step (flushed).
// Each prints one line "RESULT key=value ...".
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_args.hpp"
#include "reduce.cuh"

namespace cd = attnflow::cuda_detail;

namespace {

std::map<std::string, std::string> parse(int argc, char** argv) {
  return attnflow::bench::parse_args(argc, argv, 2, "cuda_bench");
}

std::string get(const std::map<std::string, std::string>& a, const std::string& key,
                const std::string& fallback = "") {
  return attnflow::bench::arg(a, key, fallback, "cuda_bench");
}

std::vector<double> read_raw(const std::string& path, std::size_t count) {
  std::vector<double> x(count);
  std::ifstream f(path, std::ios::binary);
  f.read(reinterpret_cast<char*>(x.data()), static_cast<std::streamsize>(count * sizeof(double)));
  if (!f) throw std::runtime_error("cuda_bench: cannot read " + std::to_string(count) +
                                   " doubles from " + path);
  return x;
}

template <typename T>
T* to_device(const std::vector<double>& host) {
  std::vector<T> tmp(host.begin(), host.end());
  T* d = nullptr;
  cd::check(cudaMalloc(&d, sizeof(T) * tmp.size()), "cudaMalloc");
  cd::check(cudaMemcpy(d, tmp.data(), sizeof(T) * tmp.size(), cudaMemcpyHostToDevice), "H2D");
  return d;
}

template <typename T>
T* device_zeros(std::size_t count) {
  T* d = nullptr;
  cd::check(cudaMalloc(&d, sizeof(T) * std::max<std::size_t>(count, 1)), "cudaMalloc");
  cd::check(cudaMemset(d, 0, sizeof(T) * std::max<std::size_t>(count, 1)), "cudaMemset");
  return d;
}

template <typename T>
int attention(const std::map<std::string, std::string>& a) {
  const std::int64_t n = std::stoll(get(a, "n")), k = std::stoll(get(a, "k", "3"));
  const int reps = std::stoi(get(a, "reps", "10"));
  const std::vector<double> x = read_raw(get(a, "input"), static_cast<std::size_t>(n * k));
  T* dx = to_device<T>(x);
  T* lse = device_zeros<T>(n);
  T* out = device_zeros<T>(n * k);
  void* scratch = nullptr;
  const std::size_t sb = cd::scratch_bytes<T>(n, n, k);
  if (sb) cd::check(cudaMalloc(&scratch, sb), "cudaMalloc scratch");
  cd::DeviceReduce<T> r;
  r.u = dx;
  r.v = dx;
  r.vals = dx;
  r.n = n;
  r.m = n;
  r.k = k;
  r.p = k;
  r.lse = lse;
  r.out = out;
  r.scratch = scratch;
  cudaEvent_t start, stop;
  cd::check(cudaEventCreate(&start), "event");
  cd::check(cudaEventCreate(&stop), "event");
  cd::reduce_device<T>(r);  // warm-up
  cd::check(cudaDeviceSynchronize(), "sync");
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    cd::check(cudaEventRecord(start), "record");
    cd::reduce_device<T>(r);
    cd::check(cudaEventRecord(stop), "record");
    cd::check(cudaEventSynchronize(stop), "sync");
    float t = 0;
    cd::check(cudaEventElapsedTime(&t, start, stop), "elapsed");
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2] * 1e-3;
  // Determinism check: the last run against a fresh one, bit for bit.
  std::vector<T> o1(static_cast<std::size_t>(n * k)), o2(o1.size());
  cd::check(cudaMemcpy(o1.data(), out, sizeof(T) * o1.size(), cudaMemcpyDeviceToHost), "D2H");
  cd::reduce_device<T>(r);
  cd::check(cudaMemcpy(o2.data(), out, sizeof(T) * o2.size(), cudaMemcpyDeviceToHost), "D2H");
  const bool identical = std::equal(o1.begin(), o1.end(), o2.begin(), [](T p, T q) {
    return std::memcmp(&p, &q, sizeof(T)) == 0;
  });
  if (a.count("dump")) {
    std::vector<double> od(o1.begin(), o1.end());
    std::ofstream f(a.at("dump"), std::ios::binary);
    f.write(reinterpret_cast<const char*>(od.data()),
            static_cast<std::streamsize>(od.size() * sizeof(double)));
  }
  std::printf("RESULT kind=attention n=%lld k=%lld prec=%s seconds=%.6g chunks=%lld identical=%d\n",
              static_cast<long long>(n), static_cast<long long>(k),
              sizeof(T) == 8 ? "f64" : "f32", median,
              static_cast<long long>(cd::num_chunks(n, n)), identical ? 1 : 0);
  return 0;
}

// After an f half-step: lse -> f' = x2 - eps lse, term_i = a |exp((f - f') / eps) - 1|,
// f = f', and the next half-step's column offsets colx = (f - x2) / eps + log a.
template <typename T>
__global__ void after_half_step(std::int64_t n, T eps, T log_a, T a, const T* __restrict__ lse,
                                const T* __restrict__ x2, T* __restrict__ f,
                                T* __restrict__ colx, T* __restrict__ term) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const T fn = x2[i] - eps * lse[i];
  if (term) term[i] = a * fabs(exp((f[i] - fn) / eps) - T(1));
  f[i] = fn;
  colx[i] = (fn - x2[i]) / eps + log_a;
}

template <typename T>
__global__ void squared_norms(std::int64_t n, std::int64_t k, const T* __restrict__ x,
                              T* __restrict__ x2, T* __restrict__ col, T log_a, T eps) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  T s = 0;
  for (std::int64_t t = 0; t < k; ++t) s = fma(x[i * k + t], x[i * k + t], s);
  x2[i] = s;
  col[i] = -s / eps + log_a;  // potential 0
}

template <typename T>
int sinkhorn(const std::map<std::string, std::string>& a) {
  const std::int64_t n = std::stoll(get(a, "n")), k = std::stoll(get(a, "k", "3"));
  const double eps = std::stod(get(a, "eps")), tol = std::stod(get(a, "tol"));
  const int max_iter = std::stoi(get(a, "max-iter", "1000"));
  const std::vector<double> xh = read_raw(get(a, "x"), static_cast<std::size_t>(n * k));
  const std::vector<double> yh = read_raw(get(a, "y"), static_cast<std::size_t>(n * k));
  T* x = to_device<T>(xh);
  T* y = to_device<T>(yh);
  T *x2 = device_zeros<T>(n), *y2 = device_zeros<T>(n), *f = device_zeros<T>(n),
    *g = device_zeros<T>(n), *colx = device_zeros<T>(n), *coly = device_zeros<T>(n),
    *lse = device_zeros<T>(n), *term = device_zeros<T>(n);
  void* scratch = nullptr;
  const std::size_t sb = cd::scratch_bytes<T>(n, n, 0);
  if (sb) cd::check(cudaMalloc(&scratch, sb), "cudaMalloc scratch");
  const T w = static_cast<T>(1.0 / static_cast<double>(n)), log_w = static_cast<T>(-std::log(static_cast<double>(n)));
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>((n + threads - 1) / threads);
  std::vector<T> term_h(static_cast<std::size_t>(n));

  cd::check(cudaDeviceSynchronize(), "sync");
  const auto t0 = std::chrono::steady_clock::now();
  squared_norms<T><<<blocks, threads>>>(n, k, x, x2, colx, log_w, static_cast<T>(eps));
  squared_norms<T><<<blocks, threads>>>(n, k, y, y2, coly, log_w, static_cast<T>(eps));
  auto half = [&](const T* u, const T* v, const T* col) {
    cd::DeviceReduce<T> r;
    r.u = u;
    r.v = v;
    r.col = col;
    r.n = n;
    r.m = n;
    r.k = k;
    r.p = 0;
    r.uscale = static_cast<T>(2.0 / eps);
    r.lse = lse;
    r.scratch = scratch;
    cd::reduce_device<T>(r);
  };
  int it = 0;
  double err = INFINITY;
  for (;; ++it) {
    half(x, y, coly);  // f from g
    after_half_step<T><<<blocks, threads>>>(n, static_cast<T>(eps), log_w, w, lse, x2, f, colx,
                                            term);
    cd::check(cudaMemcpy(term_h.data(), term, sizeof(T) * n, cudaMemcpyDeviceToHost), "D2H");
    err = 0;
    for (const T t : term_h) err += static_cast<double>(t);  // fixed order
    // Progress (read by cuda_compare.py when a long solve is stopped by its time limit).
    std::printf("ITER iteration=%d error=%.6g seconds=%.6g\n", it, err,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    std::fflush(stdout);
    if (err < tol || it >= max_iter) break;
    half(y, x, colx);  // g from f
    after_half_step<T><<<blocks, threads>>>(n, static_cast<T>(eps), log_w, w, lse, y2, g, coly,
                                            static_cast<T*>(nullptr));
  }
  cd::check(cudaDeviceSynchronize(), "sync");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<T> fh(static_cast<std::size_t>(n)), gh(fh.size());
  cd::check(cudaMemcpy(fh.data(), f, sizeof(T) * n, cudaMemcpyDeviceToHost), "D2H");
  cd::check(cudaMemcpy(gh.data(), g, sizeof(T) * n, cudaMemcpyDeviceToHost), "D2H");
  double dual = 0;
  for (std::size_t i = 0; i < fh.size(); ++i)
    dual += (static_cast<double>(fh[i]) + static_cast<double>(gh[i])) / static_cast<double>(n);
  std::printf("RESULT kind=sinkhorn n=%lld k=%lld prec=%s seconds=%.6g iterations=%d "
              "error=%.6g dual=%.15g converged=%d\n",
              static_cast<long long>(n), static_cast<long long>(k),
              sizeof(T) == 8 ? "f64" : "f32", seconds, it, err, dual, err < tol ? 1 : 0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) throw std::invalid_argument("usage: cuda_bench attention|sinkhorn --key value ...");
    const std::string what = argv[1];
    const auto a = parse(argc, argv);
    const bool single = get(a, "prec", "f64") == "f32";
    if (what == "attention") return single ? attention<float>(a) : attention<double>(a);
    if (what == "sinkhorn") return single ? sinkhorn<float>(a) : sinkhorn<double>(a);
    throw std::invalid_argument("cuda_bench: unknown benchmark " + what);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
