// Transformer layers as in-context maps G(mu, x) (docs/math.md section 4):
//   attention: G(mu, x) = x + step * sum_h W_h sum_j P^h(x, y_j) V_h y_j, P^h the softmax |
//              sinkhorn | none normalization of beta <Q_h x, K_h y> against mu = sum_j w_j delta_{y_j};
//   MLP      : phi(x) = x + W2 relu(W1 x + b1) + b2 (pointwise, ignores mu).
// step = 1 is the ordinary residual layer; step = 1/L gives the depth-limit stacks.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "attnflow/measure/measure.hpp"
#include "attnflow/attention/head.hpp"
#include "attnflow/attention/normalization.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

// Multi-head residual attention layer on points of dimension d. Per head h (head.hpp):
// heads[h].q, .k are (dk, d), .v is (dv, d), .w is (d, dv), all given (no empty = identity
// here). All heads share dk, dv.
struct AttentionLayer {
  Normalization normalization = Normalization::softmax;
  double beta = 1.0;
  double step = 1.0;
  // Sinkhorn normalization of the self-coupling pi in Pi(w, w) (sinkhorn layers only).
  SinkhornNormalizationOptions sinkhorn{.iterations = 3};  // tol, max_iterations: sinkhorn.hpp
  std::vector<Head> heads;

  Index head_count() const { return static_cast<Index>(heads.size()); }
  // Throws std::invalid_argument naming the layer and field (e.g. "layers[2]: beta = nan, ...",
  // "layers[2]: heads[1].k has shape (3, 4), must be (2, 4) (...)": validate_head).
  void validate(Index d, const std::string& context) const;
};

// Residual MLP layer: w1 (h, d), b1 (h), w2 (d, h), b2 (d).
struct MlpLayer {
  Matrix w1, w2;
  Vector b1, b2;
  void validate(Index d, const std::string& context) const;
};

using Layer = std::variant<AttentionLayer, MlpLayer>;

std::string layer_kind(const Layer& layer);  // "attention" | "mlp"

// In-context evaluation of one layer: G(mu, z_i) for every row of queries (nq, d), the context
// mu = (points (n, d), weights w (n)). For sinkhorn, the potentials g of the self-coupling
// pi in Pi(w, w) are computed on mu and the conditional at a query z is
// P(z, y_j) = w_j exp(s(z, y_j) + g_j) / sum_l w_l exp(s(z, y_l) + g_l), which equals
// pi_ij / w_i when z = x_i. Every sum of exponentials goes through lse_reduce. When `stats` is
// given, the status of every head's Sinkhorn normalization is added to it (sinkhorn layers).
Matrix apply_layer(const Layer& layer, const Measure& mu, const Matrix& queries,
                   SinkhornStats* stats = nullptr);

// Number of trainable scalars in a layer.
Index parameter_count(const Layer& layer);

// Calls f(double* data, Index size) on every parameter block of the layer in the fixed order
// (attention: heads[0..H).q, then heads[0..H).k, .v, .w, group by group; mlp: w1, b1, w2,
// b2). The model file and the optimizers rely on this order.
template <typename F>
void for_each_parameter(Layer& layer, F&& f) {
  if (auto* a = std::get_if<AttentionLayer>(&layer)) {
    for (Matrix Head::*group : {&Head::q, &Head::k, &Head::v, &Head::w})
      for (Head& h : a->heads) f((h.*group).data(), (h.*group).size());
  } else {
    auto& m = std::get<MlpLayer>(layer);
    f(m.w1.data(), m.w1.size());
    f(m.b1.data(), m.b1.size());
    f(m.w2.data(), m.w2.size());
    f(m.b2.data(), m.b2.size());
  }
}

}  // namespace attnflow
