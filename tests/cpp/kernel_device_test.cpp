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
    EXPECT_EQ(std::string(e.what()), "device: device = gpu, must be \"cpu\" or \"cuda\"");
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
      EXPECT_EQ(std::string(e.what()),
                "device = cuda: this build has no CUDA backend (configure with a CUDA compiler)");
    }
    EXPECT_EQ(cuda_device_description(), "this build has no CUDA backend");
  }
}

}  // namespace
}  // namespace attnflow
