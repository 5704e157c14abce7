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
#include "attnflow/attention/normalization.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

// Multi-head residual attention layer on points of dimension d. Per head h:
// q[h], k[h] are (dk, d), v[h] is (dv, d), w[h] is (d, dv). All heads share dk, dv.
struct AttentionLayer {
  Normalization normalization = Normalization::softmax;
  double beta = 1.0;
  double step = 1.0;
  // Sinkhorn normalization of the self-coupling pi in Pi(w, w) (sinkhorn layers only).
  SinkhornNormalizationOptions sinkhorn{.iterations = 3};  // tol, max_iterations: sinkhorn.hpp
  std::vector<Matrix> q, k, v, w;

  Index heads() const { return static_cast<Index>(q.size()); }
  // Throws std::invalid_argument naming the layer and field (e.g. "layers[2]: beta = nan, ...").
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
// (attention: q[0..H), k[0..H), v[0..H), w[0..H); mlp: w1, b1, w2, b2). The model file and the
// optimizers rely on this order.
template <typename F>
void for_each_parameter(Layer& layer, F&& f) {
  if (auto* a = std::get_if<AttentionLayer>(&layer)) {
    for (auto* group : {&a->q, &a->k, &a->v, &a->w})
      for (Matrix& m : *group) f(m.data(), m.size());
  } else {
    auto& m = std::get<MlpLayer>(layer);
    f(m.w1.data(), m.w1.size());
    f(m.b1.data(), m.b1.size());
    f(m.w2.data(), m.w2.size());
    f(m.b2.data(), m.b2.size());
  }
}

}  // namespace attnflow
