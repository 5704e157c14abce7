// Device selection (kernel_cuda.hpp) on any build: parsing, Device::cpu is exactly the CPU
// kernel, and device = cuda either works (CUDA backend with a GPU), fails with a runtime error
// (backend without a GPU) or, without the backend, fails with the documented message.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <stdexcept>
#include <string>

#include "attnflow/kernel/kernel.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"
#include "attnflow/base/parallel.hpp"

namespace attnflow {
namespace {

TEST(KernelDevice, ParsesNames) {
  EXPECT_EQ(parse_device("cpu"), Device::cpu);
  EXPECT_EQ(parse_device("cuda"), Device::cuda);
  EXPECT_STREQ(device_name(Device::cuda), "cuda");
  try {
    parse_device("gpu");
    ADD_FAILURE() << "parse_device(\"gpu\") did not throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "device: device = gpu, must be one of cpu, cuda");
  }
  EXPECT_EQ(parse_precision("float32"), Precision::float32);
  EXPECT_EQ(parse_precision("float64"), Precision::float64);
  EXPECT_STREQ(precision_name(Precision::float32), "float32");
  try {
    parse_precision("fp16", "config: compute.precision");
    ADD_FAILURE() << "parse_precision(\"fp16\") did not throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()),
              "config: compute.precision: precision = fp16, must be one of float64, float32");
  }
}

TEST(KernelDevice, CpuDeviceIsTheCpuKernel) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal;
  Matrix u(300, 3), v(700, 3), vals(700, 3);
  Vector col(700);
  for (Matrix* a : {&u, &v, &vals})
    for (Index i = 0; i < a->size(); ++i) a->data()[i] = normal(rng);
  for (Index j = 0; j < col.size(); ++j) col[j] = normal(rng);
  const ReduceInput in{u.data(), v.data(), col.data(), vals.data(), 300, 700, 3, 3};
  Vector lse1(300), lse2(300);
  Matrix out1(300, 3), out2(300, 3);
  lse_reduce(in, ReduceOutput{lse1.data(), out1.data()});
  lse_reduce(in, ReduceOutput{lse2.data(), out2.data()}, Device::cpu, Precision::float32);
  EXPECT_EQ(0, std::memcmp(lse1.data(), lse2.data(), sizeof(double) * 300));
  EXPECT_EQ(0, std::memcmp(out1.data(), out2.data(), sizeof(double) * 900));
}

TEST(KernelDevice, CpuDeviceIsTheCpuSymmetricKernel) {
  std::mt19937_64 rng(5);
  std::normal_distribution<double> normal;
  Matrix y(500, 3), vals(500, 2);
  Vector col(500);
  for (Matrix* a : {&y, &vals})
    for (Index i = 0; i < a->size(); ++i) a->data()[i] = normal(rng);
  for (Index j = 0; j < col.size(); ++j) col[j] = 0.1 * normal(rng);
  const SymmetricReduceInput in{y.data(), col.data(), vals.data(), 500, 3, 2, 1.5};
  Vector lse1(500), lse2(500);
  Matrix out1(500, 2), out2(500, 2);
  lse_reduce_symmetric(in, ReduceOutput{lse1.data(), out1.data()});
  lse_reduce_symmetric(in, ReduceOutput{lse2.data(), out2.data()}, Device::cpu);
  EXPECT_EQ(0, std::memcmp(lse1.data(), lse2.data(), sizeof(double) * 500));
  EXPECT_EQ(0, std::memcmp(out1.data(), out2.data(), sizeof(double) * 1000));
}

TEST(KernelDevice, CudaWithoutBackendOrDeviceIsAClearError) {
  if (cuda_available()) {
    EXPECT_TRUE(cuda_compiled());
    EXPECT_NO_THROW(require_device(Device::cuda));
  } else if (cuda_compiled()) {
    EXPECT_THROW(require_device(Device::cuda), std::runtime_error);
  } else {
    const double x[3] = {0.0, 1.0, 2.0};
    double lse[1];
    try {
      lse_reduce(ReduceInput{x, x, nullptr, nullptr, 1, 3, 1, 0}, ReduceOutput{lse, nullptr},
                 Device::cuda);
      ADD_FAILURE() << "device = cuda did not throw on a build without CUDA";
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()), no_cuda_backend_message());
    }
    EXPECT_EQ(cuda_device_description(), "this build has no CUDA backend");
  }
}

// The documented text of the not-built error (docs/usage/gpu.md), whatever this build is.
TEST(KernelDevice, NoBackendMessageSaysHowToEnable) {
  EXPECT_EQ(no_cuda_backend_message(),
            "device = cuda: this attnflow was built without CUDA (rebuild with a CUDA compiler: "
            "nvcc on PATH or -DCMAKE_CUDA_COMPILER=..., and -DATTNFLOW_CUDA=AUTO or ON; "
            "docs/usage/gpu.md)");
}

TEST(KernelDevice, ProcessWideDefaultIsCpuFloat64) {
  EXPECT_EQ(current_device().device, Device::cpu);
  EXPECT_EQ(current_device().precision, Precision::float64);
  EXPECT_EQ(device_fallback(true), "");
}

Matrix random_matrix(std::mt19937_64& rng, Index rows, Index cols) {
  std::normal_distribution<double> normal;
  Matrix a(rows, cols);
  for (Index i = 0; i < a.size(); ++i) a.data()[i] = normal(rng);
  return a;
}

// set_device(cpu) changes nothing: the public reductions give the same bits as before, on 1
// thread and on 2.
TEST(KernelDevice, SetDeviceCpuIsBitIdentical) {
  std::mt19937_64 rng(11);
  const Matrix u = random_matrix(rng, 257, 3), v = random_matrix(rng, 611, 3),
               vals = random_matrix(rng, 611, 2), col = random_matrix(rng, 611, 1);
  const ReduceInput in{u.data(), v.data(), col.data(), vals.data(), 257, 611, 3, 2};
  const SymmetricReduceInput sin{v.data(), col.data(), vals.data(), 611, 3, 2, 0.7};
  Vector l0(257), l1(257), s0(611), s1(611);
  Matrix o0(257, 2), o1(257, 2), t0(611, 2), t1(611, 2);
  lse_reduce(in, ReduceOutput{l0.data(), o0.data()});
  lse_reduce_symmetric(sin, ReduceOutput{s0.data(), t0.data()});
  const int threads = num_threads();
  set_device(Device::cpu);
  for (int t : {1, 2}) {
    set_num_threads(t);
    lse_reduce(in, ReduceOutput{l1.data(), o1.data()});
    lse_reduce_symmetric(sin, ReduceOutput{s1.data(), t1.data()});
    EXPECT_EQ(0, std::memcmp(l0.data(), l1.data(), sizeof(double) * 257));
    EXPECT_EQ(0, std::memcmp(o0.data(), o1.data(), sizeof(double) * 514));
    EXPECT_EQ(0, std::memcmp(s0.data(), s1.data(), sizeof(double) * 611));
    EXPECT_EQ(0, std::memcmp(t0.data(), t1.data(), sizeof(double) * 1222));
  }
  set_num_threads(threads);
  EXPECT_EQ(current_device().device, Device::cpu);
}

TEST(KernelDevice, CpuFloat32IsRejected) {
  try {
    set_device(Device::cpu, Precision::float32);
    ADD_FAILURE() << "set_device(cpu, float32) did not throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()),
              "set_device: precision = float32, must be float64 with device = cpu (the CPU "
              "kernel computes in float64; float32 is a GPU option)");
  }
  EXPECT_EQ(current_device().precision, Precision::float64);
}

// set_device(cuda): the message that applies to this build (cuda_compiled, cuda_available), the
// setting unchanged on failure; with a GPU, the public reductions follow it.
TEST(KernelDevice, SetDeviceCudaFollowsOrExplains) {
  if (cuda_available()) {
    std::mt19937_64 rng(13);
    const Matrix u = random_matrix(rng, 300, 3), v = random_matrix(rng, 900, 3),
                 vals = random_matrix(rng, 900, 3);
    const ReduceInput in{u.data(), v.data(), nullptr, vals.data(), 300, 900, 3, 3};
    Vector lc(300), lg(300), le(300);
    Matrix oc(300, 3), og(300, 3), oe(300, 3);
    lse_reduce(in, ReduceOutput{lc.data(), oc.data()});
    set_device(Device::cuda);
    EXPECT_EQ(current_device().device, Device::cuda);
    EXPECT_NE(device_fallback(true), "");
    lse_reduce(in, ReduceOutput{lg.data(), og.data()});
    set_device(Device::cpu);
    lse_reduce(in, ReduceOutput{le.data(), oe.data()}, Device::cuda);
    EXPECT_EQ(0, std::memcmp(lg.data(), le.data(), sizeof(double) * 300));
    EXPECT_EQ(0, std::memcmp(og.data(), oe.data(), sizeof(double) * 900));
    for (Index i = 0; i < 300; ++i) EXPECT_NEAR(lg[i], lc[i], 1e-12 * std::abs(lc[i]) + 1e-14);
    return;
  }
  try {
    set_device(Device::cuda);
    ADD_FAILURE() << "set_device(cuda) did not throw without a usable GPU";
  } catch (const std::runtime_error& e) {
    ASSERT_TRUE(cuda_compiled()) << e.what();
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("device = cuda: no usable CUDA device (", 0), 0u) << what;
    // The CUDA error is named (cudaErrorNoDevice, cudaErrorInsufficientDriver, ...).
    EXPECT_NE(what.find("(cuda"), std::string::npos) << what;
  } catch (const std::invalid_argument& e) {
    ASSERT_FALSE(cuda_compiled()) << e.what();
    EXPECT_EQ(std::string(e.what()), no_cuda_backend_message());
  }
  EXPECT_EQ(current_device().device, Device::cpu);
}

}  // namespace
}  // namespace attnflow
