// Learning in-context maps (docs/math.md section 4.6): the loss of a model on a measure
// with targets at its atoms, L(mu, Y) = sum_i w_i |G(mu, x_i) - y_i|^2, its analytic gradient
// (backward passes for attention with softmax | none | sinkhorn, and MLP layers), and the SGD
// and Adam optimizers.
//
// Attention backward (per head, s_ij = <u_i, kk_j>, P_ij = exp(s_ij + col_j + r_i)):
//   dS_ij = P_ij (<gA_i, vv_j> - D_i), D_i = <gA_i, a_i> (softmax, sinkhorn) or 0 (none), so
//   du_i  = sum_j P_ij (kk_j vv_j^T) gA_i - D_i sum_j P_ij kk_j        (one row reduction)
//   dkk_j = sum_i P_ij (u_i gA_i^T) vv_j - sum_i P_ij D_i u_i           (one column reduction)
//   dvv_j = sum_i P_ij gA_i
// each a kernel reduction (lse_reduce) whose value columns are outer products: no n x n buffer.
// Sinkhorn layers are differentiated THROUGH THE ITERATIONS (exact gradient of the computed
// output for the realized number of iterations; with a tolerance the stopping index is treated
// as constant): the potentials of every iteration are kept (O(T n) memory) and each half-step
// is reversed with two more reductions.
#pragma once

#include <string>
#include <vector>

#include "attnflow/model/model.hpp"

namespace attnflow {

// One training example: a measure and the targets (n, d) at its atoms.
struct Example {
  Measure mu;
  Matrix target;
};

// A model-shaped container of zeros (the gradient layout is the model's layout).
Model zeros_like(const Model& model);

// L = sum_i w_i |G(mu, x_i) - y_i|^2. Every function below adds the status of each Sinkhorn
// normalization it runs to `stats` when given (in example order: deterministic).
double model_loss(const Model& model, const Example& example, SinkhornStats* stats = nullptr);

// Returns L and writes dL/dparameters into `grad` (resized like `model`); when `dx` is not
// null it receives dL/dx (n, d), the gradient with respect to the atoms' positions.
double loss_and_gradient(const Model& model, const Example& example, Model& grad,
                         Matrix* dx = nullptr, SinkhornStats* stats = nullptr);

// Mean loss over the examples `batch` (indices into `data`) and its gradient. Examples run in
// parallel; per-example gradients are summed in batch order, so the result is bit-identical
// for any thread count.
double batch_loss_and_gradient(const Model& model, const std::vector<Example>& data,
                               const std::vector<size_t>& batch, Model& grad,
                               SinkhornStats* stats = nullptr);
// Mean loss over all examples (parallel, deterministic).
double mean_loss(const Model& model, const std::vector<Example>& data,
                 SinkhornStats* stats = nullptr);

enum class OptimizerKind { sgd, adam };
OptimizerKind parse_optimizer(const std::string& name, const std::string& context = "optimizer");
std::string to_string(OptimizerKind kind);

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::adam;
  double lr = 1e-2;
  double momentum = 0.0;  // sgd: heavy-ball momentum in [0, 1)
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adam (Kingma & Ba, bias-corrected)
  void validate() const;
};

// Updates parameters in place from a gradient with the model's layout.
//   sgd : m <- momentum m + g;  p <- p - lr m
//   adam: m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
//         p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
class Optimizer {
 public:
  Optimizer(const Model& model, const OptimizerOptions& options);
  void step(Model& model, const Model& grad);
  long steps() const { return steps_; }

 private:
  OptimizerOptions opt_;
  long steps_ = 0;
  std::vector<double> m_, v_;
};

}  // namespace attnflow
