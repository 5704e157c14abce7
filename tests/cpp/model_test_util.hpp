// Helpers for the model tests: a dense reference of one attention layer written straight from
// docs/math.md sections 1 and 4 (materialized n x m scores, plain loops), and small random models.
#pragma once

#include <cmath>

#include "attnflow/model/model.hpp"
#include "test_util.hpp"

namespace attnflow::test {

// Dense P (nq, n) of one head: softmax / none against w, or the Sinkhorn conditional of the
// self-coupling pi in Pi(w, w) after `iters` f-updates (iteration 1 = softmax) extended to the
// queries z by P(z, y_j) = w_j exp(s(z, y_j) + g_j) / normalizer.
inline Matrix dense_weights(const AttentionLayer& a, Index h, const Matrix& x, const Vector& w,
                            const Matrix& z) {
  const Index n = x.rows();
  auto scores = [&](const Matrix& qpts) {
    return Matrix(a.beta * (qpts * a.heads[h].q.transpose()) * (x * a.heads[h].k.transpose()).transpose());
  };
  Vector g = Vector::Zero(n);
  if (a.normalization == Normalization::sinkhorn) {
    const Matrix s = scores(x);
    Vector f(n);
    for (int it = 1; it <= a.sinkhorn.iterations; ++it) {
      if (it > 1)
        for (Index j = 0; j < n; ++j) {
          double mx = -1e300;
          for (Index i = 0; i < n; ++i) mx = std::max(mx, std::log(w[i]) + f[i] + s(i, j));
          double sum = 0.0;
          for (Index i = 0; i < n; ++i) sum += std::exp(std::log(w[i]) + f[i] + s(i, j) - mx);
          g[j] = -(mx + std::log(sum));
        }
      for (Index i = 0; i < n; ++i) {
        double mx = -1e300;
        for (Index j = 0; j < n; ++j) mx = std::max(mx, std::log(w[j]) + g[j] + s(i, j));
        double sum = 0.0;
        for (Index j = 0; j < n; ++j) sum += std::exp(std::log(w[j]) + g[j] + s(i, j) - mx);
        f[i] = -(mx + std::log(sum));
      }
    }
  }
  const Matrix s = scores(z);
  Matrix p(z.rows(), n);
  for (Index i = 0; i < z.rows(); ++i) {
    for (Index j = 0; j < n; ++j) p(i, j) = w[j] * std::exp(s(i, j) + g[j]);
    if (a.normalization != Normalization::none) p.row(i) /= p.row(i).sum();
  }
  return p;
}

// G(mu, z) for one layer from the dense weights.
inline Matrix dense_layer(const Layer& layer, const Matrix& x, const Vector& w, const Matrix& z) {
  if (const auto* m = std::get_if<MlpLayer>(&layer)) {
    Matrix h = (z * m->w1.transpose()).rowwise() + m->b1.transpose();
    Matrix out = z + h.cwiseMax(0.0) * m->w2.transpose();
    out.rowwise() += m->b2.transpose();
    return out;
  }
  const auto& a = std::get<AttentionLayer>(layer);
  Matrix out = z;
  for (Index h = 0; h < a.head_count(); ++h)
    out += a.step * dense_weights(a, h, x, w, z) * (x * a.heads[h].v.transpose()) *
           a.heads[h].w.transpose();
  return out;
}

inline Model small_model(Normalization norm, Index dim, Index depth, Index mlp, Rng& rng,
                         double scale = 0.6, int sinkhorn_iters = 3) {
  ModelSpec spec;
  spec.dim = dim;
  spec.depth = depth;
  spec.heads = 2;
  spec.head_dim = dim + 1;  // dk != d on purpose, to catch transposed shapes
  spec.mlp_hidden = mlp;
  spec.normalization = norm;
  spec.beta = 1.3;
  spec.step = 0.8;
  spec.init_scale = scale;
  spec.sinkhorn.iterations = sinkhorn_iters;
  return random_model(spec, rng);
}

}  // namespace attnflow::test
