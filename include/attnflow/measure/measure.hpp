// A discrete probability measure mu = sum_i w_i delta_{x_i} (docs/math.md section 0): points X
// (n, d) row-major and weights w (n), w_i >= 0, sum w_i = 1 (given weights are normalized
// to total mass 1; default weights are uniform 1/n). Construction validates everything.
#pragma once

#include <string>
#include <string_view>

#include "attnflow/base/types.hpp"

namespace attnflow {

class Measure {
 public:
  Measure() = default;
  // Uniform weights. `name` is used in error messages ("queries", "keys", ...).
  explicit Measure(Matrix points, std::string_view name = "measure");
  // Given weights (n); normalized to sum 1. Rejects NaN/Inf, negative weights, zero mass,
  // size mismatch and empty measures, naming `name` and the offending value.
  Measure(Matrix points, Vector weights, std::string_view name = "measure");

  const Matrix& points() const { return points_; }
  const Vector& weights() const { return weights_; }
  Index size() const { return points_.rows(); }
  Index dim() const { return points_.cols(); }
  // log w_i (-inf for zero weights), the form the kernel consumes.
  Vector log_weights() const;

 private:
  Matrix points_;
  Vector weights_;
};

// Validates weights for a measure of n points and returns them normalized to sum 1.
// An empty `weights` means uniform.
Vector normalized_weights(const Vector& weights, Index n, std::string_view name);

// log w_i (-inf for zero weights) of any weight vector: the one place log-weights are taken.
Vector log_weights(const Vector& w);

// Chain rule through the normalization w = r / sum(r) that Measure applies to given weights r:
// from g = dL/dw returns dL/dr_k = (g_k - <g, w>) / sum(r).
Vector normalized_weights_gradient(const Vector& raw, const Vector& grad_normalized);

}  // namespace attnflow
