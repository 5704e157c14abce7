// Agreement with POT on the committed problems of tests/reference/ot (made by
// make_reference.py there with POT's ot.sinkhorn(method="sinkhorn_log") and ot.emd): plans,
// costs and marginals, never raw potentials (defined only up to a constant).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/ot/divergence.hpp"
#include "attnflow/ot/exact_ot.hpp"
#include "attnflow/io/npy.hpp"
#include "attnflow/ot/ot.hpp"
#include "ot_dense_reference.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

const std::string kDir = std::string(ATTNFLOW_REFERENCE_DIR) + "/ot/";

// POT ran to a 1e-14 violation; attnflow runs to 1e-12: plans agree to ~1e-12 absolute
// (entries are O(1 / (n m)) ~ 1e-3) and costs to 1e-10 relative.
constexpr double kReferencePlanAtol = 1e-11;
constexpr double kReferenceCostRtol = 1e-10;
// The exact plan is a vertex; POT and LEMON agree on it when it is unique (random data), up to
// LEMON's 2^-40 mass units.
constexpr double kExactAtol = 1e-10;

struct Problem {
  Matrix x, y, plan;
  Vector a, b;
  nlohmann::json meta;
};

Problem load(const std::string& name) {
  Problem p;
  p.x = read_npy_matrix(kDir + name + "_x.npy");
  p.y = read_npy_matrix(kDir + name + "_y.npy");
  p.a = read_npy_vector(kDir + name + "_a.npy");
  p.b = read_npy_vector(kDir + name + "_b.npy");
  p.plan = read_npy_matrix(kDir + name + "_plan.npy");
  p.meta = nlohmann::json::parse(read_file(kDir + "reference.json"))["problems"][name];
  return p;
}

TEST(OtReference, SinkhornMatchesPot) {
  for (const char* name : {"sinkhorn_a", "sinkhorn_b"}) {
    const Problem p = load(name);
    const TransportCost cost = TransportCost::sqeuclidean(p.x, p.y);
    SinkhornOptions o;
    o.eps = p.meta["eps"].get<double>();
    o.tol = 1e-12;
    const SinkhornResult r = sinkhorn(p.a, p.b, cost, o);
    ASSERT_TRUE(r.converged) << name << ": " << r.message;
    const Matrix pi = transport_plan(cost, r);
    EXPECT_TRUE(test::all_close(pi, p.plan, 0.0, kReferencePlanAtol)) << name;
    const double ref_cost = p.meta["cost"].get<double>();
    EXPECT_NEAR(r.cost, ref_cost, kReferenceCostRtol * ref_cost) << name;
    EXPECT_TRUE(test::all_close(Vector(pi.rowwise().sum()), p.a, 0.0, 1e-12)) << name;
    EXPECT_TRUE(test::all_close(Vector(pi.colwise().sum().transpose()), p.b, 0.0, 1e-14)) << name;
  }
}

TEST(OtReference, ExactMatchesPotEmd) {
  const Problem p = load("exact");
  const ExactOtResult r = exact_ot(p.a, p.b, test::dense_sqeuclidean(p.x, p.y));
  ASSERT_TRUE(r.converged);
  const double ref_cost = p.meta["cost"].get<double>();
  EXPECT_NEAR(r.cost, ref_cost, kReferenceCostRtol * ref_cost);
  EXPECT_TRUE(test::all_close(r.dense_plan(), p.plan, 0.0, kExactAtol));
}

}  // namespace
}  // namespace attnflow
