// Target in-context maps to learn (docs/math.md section 4.6): datasets of measures with
// the target T(mu, x_i) at every atom, for
//   gaussian: T(mu, x) = S^{-1/2} (x - m), m and S the weighted mean and covariance of mu (the
//             Gaussian OT map from N(m, S) to N(0, I), a nonlinear function of the measure);
//   vlasov  : T(mu, x) = the time-T flow map of the Vlasov equation d/dt mu + div(mu X[mu]) = 0
//             with the SA field X[mu](x) = sum_h sum_j softmax_j(beta <Q_h x, K_h x_j>) V_h x_j
//             (flow.hpp, RK4), seeded Gaussian heads;
//   sinkhorn: T(mu, x_i) = sum_j pi_ij x_j / w_i, pi the entropic OT plan of mu with itself for
//             the cost |x - y|^2 and eps: a coupling-valued map through its barycentric
//             projection (the Sinkhorn coupling of the affinity <2 x / eps, y>,
//             docs/math.md section 1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attnflow/model/model_grad.hpp"

namespace attnflow {

enum class TaskKind { gaussian, vlasov, sinkhorn };
TaskKind parse_task_kind(const std::string& name, const std::string& context = "task");
std::string to_string(TaskKind kind);

struct TaskOptions {
  TaskKind kind = TaskKind::gaussian;
  Index dim = 2;
  Index n_min = 16, n_max = 32;  // atoms per measure, uniform in [n_min, n_max]
  Index train_size = 256, test_size = 64;
  std::uint64_t seed = 1;
  bool random_weights = false;  // weights uniform on [0.5, 1.5] then normalized, else uniform
  double spread = 0.5;          // gaussian: covariance A A^T, A = I + spread G (G i.i.d. N(0, 1/d))
  double beta = 1.0;            // vlasov: inverse temperature
  double time = 1.0;            // vlasov: T
  Index heads = 1;              // vlasov: heads of the target field
  double dt = 1e-2;             // vlasov: RK4 step (error ~dt^4)
  double eps = 0.5;             // sinkhorn: entropic regularization (cost units)
  // sinkhorn: the target plan's solve, run to tol (iterations must be 0); tight, since it is
  // the ground truth the model learns. Not converging is an error naming the measure.
  SinkhornControl target_sinkhorn{.tol = 1e-11, .max_iterations = 100000};
  void validate() const;
};

// Measure k of the train set uses Rng(seed, 2k), of the test set Rng(seed, 2k + 1), so sets
// do not depend on each other's sizes or on the thread count.
struct TaskData {
  std::vector<Example> train, test;
};
TaskData make_task(const TaskOptions& options);

// The target map alone, for a given measure (n, d).
Matrix task_target(const TaskOptions& options, const Measure& mu);

}  // namespace attnflow
