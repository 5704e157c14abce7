// The library's public API on the GPU, as a user calls it: set_device(cuda, precision), then
// attnflow::attention or attnflow::sinkhorn on host matrices (each reduction copies its inputs
// to the GPU and its results back: kernel_cuda.hpp's host path). bench/cuda_bench.cu times the
// GPU-resident reduction loop instead; bench/cuda_compare.py runs both beside PyTorch.
//
//   cuda_library_bench attention --n N --prec f64|f32 --input x.bin [--reps R]
//     softmax self-attention of the points x (n, 3) (raw float64, row-major), beta = 1:
//     median of R calls (after a warm-up), and whether a repeat is bit-identical.
//   cuda_library_bench sinkhorn --n N --prec f64|f32 --x x.bin --y y.bin --eps E --tol T
//                               [--dim D] [--scaling 0|1] [--factor F] [--overrelax W] [--max-iter I]
//   --device cpu runs the same calls on the CPU (a dry run; float64 only).
//     attnflow::sinkhorn between uniform measures on x and y (n, D; default D = 3), cost
//     |x - y|^2, to the L1 marginal tolerance T, with or without eps-scaling (default 0: the
//     fixed-eps iteration that PyTorch's online loop runs; F its factor), over-relaxed by W
//     (default 1, plain). Times the whole call, cost pass included, and reports the process's
//     peak RSS.
// Each prints one line "RESULT key=value ...".
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "attnflow/attention/attention.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"
#include "attnflow/measure/measure.hpp"
#include "attnflow/ot/ot.hpp"
#include "bench_args.hpp"

namespace {

using attnflow::Index;
using attnflow::Matrix;
using Clock = std::chrono::steady_clock;

std::map<std::string, std::string> parse(int argc, char** argv) {
  return attnflow::bench::parse_args(argc, argv, 2, "cuda_library_bench");
}

std::string get(const std::map<std::string, std::string>& a, const std::string& key, const std::string& fallback = "") {
  return attnflow::bench::arg(a, key, fallback, "cuda_library_bench");
}

Matrix read_points(const std::string& path, Index n, Index dim = 3) {
  Matrix x(n, dim);
  std::vector<double> raw(static_cast<std::size_t>(n * dim));
  std::ifstream f(path, std::ios::binary);
  f.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size() * sizeof(double)));
  if (!f) throw std::runtime_error("cuda_library_bench: cannot read " + std::to_string(raw.size()) + " doubles from " + path);
  for (Index i = 0; i < n; ++i)
    for (Index k = 0; k < dim; ++k) x(i, k) = raw[static_cast<std::size_t>(i * dim + k)];
  return x;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int attention_bench(const std::map<std::string, std::string>& a) {
  const Index n = std::stoll(get(a, "n"));
  const int reps = std::stoi(get(a, "reps", "10"));
  const attnflow::Measure x(read_points(get(a, "input"), n));
  attnflow::AttentionOptions o;
  o.beta = 1.0;
  const attnflow::AttentionResult first = attnflow::attention(x, x, std::nullopt, o);  // warm-up
  std::vector<double> t;
  Matrix last;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    last = attnflow::attention(x, x, std::nullopt, o).out;
    t.push_back(seconds_since(t0));
  }
  std::sort(t.begin(), t.end());
  const bool identical = std::memcmp(first.out.data(), last.data(), sizeof(double) * last.size()) == 0;
  std::printf("RESULT kind=attention n=%lld device=%s seconds=%.6g identical=%d\n", static_cast<long long>(n),
              first.device.c_str(), t[t.size() / 2], identical ? 1 : 0);
  return 0;
}

int sinkhorn_bench(const std::map<std::string, std::string>& a) {
  const Index n = std::stoll(get(a, "n"));
  const Index dim = std::stoll(get(a, "dim", "3"));
  const attnflow::Measure x(read_points(get(a, "x"), n, dim)), y(read_points(get(a, "y"), n, dim));
  attnflow::SinkhornOptions o;
  o.eps = std::stod(get(a, "eps"));
  o.tol = std::stod(get(a, "tol"));
  o.eps_scaling = get(a, "scaling", "0") == "1";
  o.scaling = std::stod(get(a, "factor", std::to_string(o.scaling)));
  o.overrelax = std::stod(get(a, "overrelax", "1"));
  o.max_iterations = std::stoi(get(a, "max-iter", "10000"));
  const auto t0 = Clock::now();
  // One line per iteration (a solve stopped by a time limit still shows its trace).
  o.on_iteration = [&t0](int it, double eps, double err) {
    std::printf("ITER iteration=%d eps=%g error=%.6g seconds=%.3f\n", it, eps, err, seconds_since(t0));
    std::fflush(stdout);
  };
  const attnflow::SinkhornResult r = attnflow::sinkhorn(x, y, o);
  const double seconds = seconds_since(t0);
  // The dual value <f, a> + <g, b> (cuda_compare.py's error column compares it).
  const double dual = r.f.dot(r.a) + r.g.dot(r.b);
  rusage use{};
  getrusage(RUSAGE_SELF, &use);
  std::printf("RESULT kind=sinkhorn n=%lld dim=%lld scaling=%d factor=%g overrelax=%g seconds=%.6g iterations=%d "
              "stages=%d error=%.6g dual=%.15g cost=%.15g converged=%d peak_rss_mb=%.1f\n",
              static_cast<long long>(n), static_cast<long long>(dim), o.eps_scaling ? 1 : 0, o.scaling, o.overrelax,
              seconds, r.iterations, r.stages, r.marginal_error, dual, r.cost, r.converged ? 1 : 0,
              static_cast<double>(use.ru_maxrss) / 1024.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) throw std::invalid_argument("usage: cuda_library_bench attention|sinkhorn --key value ...");
    const std::string what = argv[1];
    const auto a = parse(argc, argv);
    const std::string prec = get(a, "prec", "f64");
    if (prec != "f64" && prec != "f32") throw std::invalid_argument("cuda_library_bench: --prec = " + prec + ", must be f64 or f32");
    // --device cpu (float64 only): the same calls on the CPU kernel, for a dry run without a GPU.
    attnflow::set_device(attnflow::parse_device(get(a, "device", "cuda")),
                         prec == "f32" ? attnflow::Precision::float32 : attnflow::Precision::float64);
    if (what == "attention") return attention_bench(a);
    if (what == "sinkhorn") return sinkhorn_bench(a);
    throw std::invalid_argument("cuda_library_bench: unknown benchmark " + what);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
