// Euler + retraction of the SA flow against the committed dense NumPy trajectories of
// tests/reference/flow/make_sa_euler.py (the published code's step: exp(beta X X^T),
// row-normalize, multiply, project, Euler, renormalize).
#include <gtest/gtest.h>

#include <string>

#include "attnflow/flow/flow.hpp"
#include "attnflow/io/npy.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

// Per step the kernel and NumPy's dense exp/sum differ by ulps; after a few Euler steps the
// trajectories agree to ~1e-14 (the flow is contracting, round-off does not grow).
constexpr double kRefTol = 1e-12;

void check_case(const std::string& name, double beta, double dt) {
  const NpyArray traj = read_npy(std::string(ATTNFLOW_REFERENCE_DIR) + "/flow/" + name + "_x.npy");
  ASSERT_EQ(traj.shape.size(), 3u);
  const Index steps = traj.shape[0] - 1, n = traj.shape[1], d = traj.shape[2];
  const auto at = [&](Index k) {
    Matrix x(n, d);
    std::copy_n(traj.data.begin() + k * n * d, n * d, x.data());
    return x;
  };
  FlowOptions o;
  o.beta = beta;
  const Flow f(o, n, d);
  Matrix x = f.initial_state(at(0));
  FlowState st = f.initial_flow_state();
  IntegratorOptions io;
  io.method = Method::euler;
  io.dt = dt;
  for (Index k = 1; k <= steps; ++k) {
    f.advance(x, st, dt * static_cast<double>(k), io);
    EXPECT_TRUE(test::all_close(x, at(k), kRefTol, kRefTol)) << name << " step " << k;
  }
  EXPECT_EQ(st.integrator.steps, steps);
}

TEST(FlowReference, EulerRetractionEqualsDenseNumpyStep) {
  check_case("sa_euler_beta1", 1.0, 0.1);
  check_case("sa_euler_beta9", 9.0, 0.05);
}

}  // namespace
}  // namespace attnflow
