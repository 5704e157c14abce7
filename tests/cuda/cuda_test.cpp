// The CUDA backend (kernel_cuda.hpp) against the CPU kernel and a direct two-pass reference:
// float64 agreement to relative 1e-12 on lse and out, float32 error bound (measured values
// printed), bit-identical repeated runs, and bad input. Needs a CUDA device: built only when
// CMake finds a CUDA compiler, registered with CTest only where a GPU is visible
// (cmake/cuda.cmake); scripts/gpu-check.sh runs it on the GPU machine.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>

#include "attnflow/kernel/kernel.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"

namespace attnflow {
namespace {

struct Problem {
  Matrix u, v, vals;
  Vector col;
};

Problem make_problem(Index n, Index m, Index k, Index p, double scale, bool with_col,
                     unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  Problem pr;
  pr.u.resize(n, k);
  pr.v.resize(m, k);
  pr.vals.resize(m, p);
  for (Index i = 0; i < pr.u.size(); ++i) pr.u.data()[i] = scale * normal(rng);
  for (Index i = 0; i < pr.v.size(); ++i) pr.v.data()[i] = normal(rng);
  for (Index i = 0; i < pr.vals.size(); ++i) pr.vals.data()[i] = normal(rng);
  if (with_col) {
    pr.col.resize(m);
    for (Index j = 0; j < m; ++j) pr.col[j] = 2.0 * normal(rng);
  }
  return pr;
}

ReduceInput input_of(const Problem& pr) {
  return ReduceInput{pr.u.data(), pr.v.data(), pr.col.size() ? pr.col.data() : nullptr,
                     pr.vals.cols() ? pr.vals.data() : nullptr, pr.u.rows(), pr.v.rows(),
                     pr.u.cols(), pr.vals.cols()};
}

struct Result {
  Vector lse;
  Matrix out;
};

Result run(const Problem& pr, Device device, Precision precision) {
  Result r;
  r.lse.resize(pr.u.rows());
  r.out.resize(pr.u.rows(), pr.vals.cols());
  lse_reduce(input_of(pr), ReduceOutput{r.lse.data(), r.out.size() ? r.out.data() : nullptr},
             device, precision);
  return r;
}

// Direct two-pass reference in long double: maximum, then sums (n m small).
Result reference(const Problem& pr) {
  const Index n = pr.u.rows(), m = pr.v.rows(), p = pr.vals.cols();
  Result r;
  r.lse.resize(n);
  r.out.setZero(n, p);
  std::vector<long double> s(static_cast<size_t>(m));
  for (Index i = 0; i < n; ++i) {
    long double mx = -std::numeric_limits<long double>::infinity();
    for (Index j = 0; j < m; ++j) {
      long double x = pr.col.size() ? pr.col[j] : 0.0L;
      for (Index t = 0; t < pr.u.cols(); ++t)
        x += static_cast<long double>(pr.u(i, t)) * pr.v(j, t);
      s[static_cast<size_t>(j)] = x;
      mx = std::max(mx, x);
    }
    long double sum = 0;
    std::vector<long double> acc(static_cast<size_t>(p), 0.0L);
    for (Index j = 0; j < m; ++j) {
      const long double e = std::exp(s[static_cast<size_t>(j)] - mx);
      sum += e;
      for (Index t = 0; t < p; ++t) acc[static_cast<size_t>(t)] += e * pr.vals(j, t);
    }
    r.lse[i] = static_cast<double>(mx + std::log(sum));
    for (Index t = 0; t < p; ++t) r.out(i, t) = static_cast<double>(acc[static_cast<size_t>(t)] / sum);
  }
  return r;
}

// Largest error of lse relative to max(1, |lse|), and of out relative to max(1, max |vals|).
struct Errors {
  double lse = 0, out = 0;
};
Errors errors(const Result& a, const Result& b, const Problem& pr) {
  Errors e;
  for (Index i = 0; i < a.lse.size(); ++i)
    e.lse = std::max(e.lse, std::abs(a.lse[i] - b.lse[i]) / std::max(1.0, std::abs(b.lse[i])));
  const double vscale = std::max(1.0, pr.vals.size() ? pr.vals.cwiseAbs().maxCoeff() : 0.0);
  for (Index i = 0; i < a.out.size(); ++i)
    e.out = std::max(e.out, std::abs(a.out.data()[i] - b.out.data()[i]) / vscale);
  return e;
}

class Cuda : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cuda_available()) << "cuda_tests needs a CUDA device: "
                                  << cuda_device_description();
  }
};

struct Case {
  Index n, m, k, p;
  double scale;
  bool col;
};

// Shapes cover: many key chunks (small n), one chunk (large n), the exact-size kernels
// (k = 1..4 with p = 0 or p = k), the generic ones (k, p <= 4, <= 16, <= 64), scores up to
// a few hundred (scale), column offsets.
const Case kCases[] = {
    {1000, 5000, 3, 3, 1.0, true},   {70000, 600, 3, 0, 1.0, false}, {300, 2000, 2, 5, 1.0, true},
    {257, 1000, 10, 7, 0.5, true},   {50, 700, 40, 20, 0.2, false},  {5, 3, 1, 1, 1.0, true},
    {2000, 3000, 4, 4, 30.0, true},  {513, 4097, 2, 0, 100.0, true}, {1, 100000, 3, 3, 1.0, true},
};

TEST_F(Cuda, Float64AgreesWithCpuAndReference) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(testing::Message() << "n = " << c.n << ", m = " << c.m << ", k = " << c.k
                                    << ", p = " << c.p << ", scale = " << c.scale);
    const Problem pr = make_problem(c.n, c.m, c.k, c.p, c.scale, c.col, 7);
    const Result gpu = run(pr, Device::cuda, Precision::float64);
    const Result cpu = run(pr, Device::cpu, Precision::float64);
    const Errors e = errors(gpu, cpu, pr);
    EXPECT_LE(e.lse, 1e-12);
    EXPECT_LE(e.out, 1e-12);
    if (static_cast<double>(c.n) * static_cast<double>(c.m) <= 5e6) {
      const Errors r = errors(gpu, reference(pr), pr);
      EXPECT_LE(r.lse, 1e-12);
      EXPECT_LE(r.out, 1e-12);
    }
  }
}

// Float32: inputs rounded to float, single-precision sums. Bound 1e-4 (relative as above);
// the measured errors are printed (docs/usage/gpu.md records them).
TEST_F(Cuda, Float32WithinDocumentedError) {
  for (const Case& c : kCases) {
    if (c.scale > 1.0) continue;  // scores of hundreds: float32 rounds the inputs by 1e-5
    SCOPED_TRACE(testing::Message() << "n = " << c.n << ", m = " << c.m << ", k = " << c.k
                                    << ", p = " << c.p);
    const Problem pr = make_problem(c.n, c.m, c.k, c.p, c.scale, c.col, 11);
    const Errors e = errors(run(pr, Device::cuda, Precision::float32),
                            run(pr, Device::cpu, Precision::float64), pr);
    std::cout << "float32 error n = " << c.n << " m = " << c.m << " k = " << c.k << " p = " << c.p
              << ": lse " << e.lse << ", out " << e.out << "\n";
    EXPECT_LE(e.lse, 1e-4);
    EXPECT_LE(e.out, 1e-4);
  }
}

TEST_F(Cuda, ZeroWeightKeysAreIgnored) {
  Problem pr = make_problem(400, 3000, 3, 3, 1.0, true, 3);
  for (Index j = 0; j < pr.col.size(); j += 3) pr.col[j] = -std::numeric_limits<double>::infinity();
  // Every key of the first 600 has weight 0 (a whole chunk and more).
  for (Index j = 0; j < 600; ++j) pr.col[j] = -std::numeric_limits<double>::infinity();
  const Result gpu = run(pr, Device::cuda, Precision::float64);
  const Errors e = errors(gpu, reference(pr), pr);
  EXPECT_LE(e.lse, 1e-12);
  EXPECT_LE(e.out, 1e-12);
  EXPECT_TRUE(gpu.lse.allFinite());
}

TEST_F(Cuda, BitIdenticalRunToRun) {
  for (const Precision prec : {Precision::float64, Precision::float32}) {
    for (const Case& c : {Case{1000, 50000, 3, 3, 1.0, true}, Case{40000, 40000, 3, 0, 1.0, true}}) {
      const Problem pr = make_problem(c.n, c.m, c.k, c.p, c.scale, c.col, 5);
      const Result a = run(pr, Device::cuda, prec);
      const Result b = run(pr, Device::cuda, prec);
      EXPECT_EQ(0, std::memcmp(a.lse.data(), b.lse.data(), sizeof(double) * a.lse.size()));
      if (a.out.size())
        EXPECT_EQ(0, std::memcmp(a.out.data(), b.out.data(), sizeof(double) * a.out.size()));
    }
  }
}

TEST_F(Cuda, SymmetricAgreesWithCpuSymmetric) {
  for (const double beta : {0.0, 1.0, 2.5, -1.5}) {
    SCOPED_TRACE(testing::Message() << "beta = " << beta);
    const Problem pr = make_problem(3000, 3000, 3, 3, 1.0, true, 13);
    const SymmetricReduceInput in{pr.v.data(), pr.col.data(), pr.vals.data(), 3000, 3, 3, beta};
    Result gpu, cpu;
    for (Result* r : {&gpu, &cpu}) {
      r->lse.resize(3000);
      r->out.resize(3000, 3);
    }
    lse_reduce_symmetric(in, ReduceOutput{gpu.lse.data(), gpu.out.data()}, Device::cuda);
    lse_reduce_symmetric(in, ReduceOutput{cpu.lse.data(), cpu.out.data()}, Device::cpu);
    const Errors e = errors(gpu, cpu, pr);
    EXPECT_LE(e.lse, 1e-12);
    EXPECT_LE(e.out, 1e-12);
  }
}

TEST_F(Cuda, LseOnlyAndOutOnly) {
  const Problem pr = make_problem(500, 2000, 3, 3, 1.0, true, 17);
  const Result full = run(pr, Device::cuda, Precision::float64);
  Vector lse(500);
  Matrix out(500, 3);
  lse_reduce(input_of(pr), ReduceOutput{lse.data(), nullptr}, Device::cuda);
  lse_reduce(input_of(pr), ReduceOutput{nullptr, out.data()}, Device::cuda);
  EXPECT_EQ(0, std::memcmp(lse.data(), full.lse.data(), sizeof(double) * 500));
  EXPECT_EQ(0, std::memcmp(out.data(), full.out.data(), sizeof(double) * 1500));
}

void expect_invalid(const ReduceInput& in, const std::string& needle) {
  Vector lse(std::max<Index>(in.n, 1));
  try {
    lse_reduce(in, ReduceOutput{lse.data(), nullptr}, Device::cuda);
    ADD_FAILURE() << "no exception, expected one naming " << needle;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST_F(Cuda, BadInputIsRejected) {
  const Problem pr = make_problem(10, 20, 3, 2, 1.0, false, 1);
  ReduceInput in = input_of(pr);
  ReduceInput bad = in;
  bad.m = 0;
  expect_invalid(bad, "m = 0");
  bad = in;
  bad.n = -1;
  expect_invalid(bad, "n = -1");
  bad = in;
  bad.vals = nullptr;
  expect_invalid(bad, "vals = null");
  const Problem wide = make_problem(4, 8, 65, 0, 1.0, false, 2);
  expect_invalid(input_of(wide), "k = 65");
  // n = 0 is a no-op.
  bad = in;
  bad.n = 0;
  EXPECT_NO_THROW(lse_reduce(bad, ReduceOutput{}, Device::cuda));
}

}  // namespace
}  // namespace attnflow
