#include "attnflow/measure/measure.hpp"

#include <cmath>
#include <limits>

#include "attnflow/base/error.hpp"

namespace attnflow {

Vector normalized_weights(const Vector& weights, Index n, std::string_view name) {
  if (n == 0) throw_message(name, "empty measure (n = 0), must have at least one point");
  if (weights.size() == 0) return Vector::Constant(n, 1.0 / static_cast<double>(n));
  if (weights.size() != n) {
    throw std::invalid_argument(fmt::format(
        "{}: weights size = {}, must equal the number of points ({})", name, weights.size(), n));
  }
  require_finite(name, "weights", weights);
  for (Index i = 0; i < n; ++i) {
    if (weights[i] < 0.0) {
      throw std::invalid_argument(
          fmt::format("{}: weights[{}] = {}, must be >= 0", name, i, weights[i]));
    }
  }
  const double total = weights.sum();
  if (std::isinf(total)) {
    // Finite weights whose sum overflows (all 1e308): only ratios matter, so normalize by the
    // largest first (M3; the sum used to be reported as "total weight = 0").
    const Vector scaled = weights / weights.maxCoeff();
    return scaled / scaled.sum();
  }
  if (!(total > 0.0)) {
    throw std::invalid_argument(
        fmt::format("{}: total weight = {}, must be > 0", name, total));
  }
  return weights / total;
}

Measure::Measure(Matrix points, std::string_view name)
    : Measure(std::move(points), Vector(), name) {}

Measure::Measure(Matrix points, Vector weights, std::string_view name)
    : points_(std::move(points)) {
  if (points_.rows() == 0) throw_message(name, "empty measure (n = 0), must have at least one point");
  if (points_.cols() == 0) throw_message(name, "points have dimension d = 0, must be >= 1");
  require_finite(name, "points", points_);
  weights_ = normalized_weights(weights, points_.rows(), name);
}

Vector log_weights(const Vector& w) {
  Vector lw(w.size());
  for (Index i = 0; i < lw.size(); ++i)
    lw[i] = w[i] > 0.0 ? std::log(w[i]) : -std::numeric_limits<double>::infinity();
  return lw;
}

Vector Measure::log_weights() const { return attnflow::log_weights(weights_); }

Vector normalized_weights_gradient(const Vector& raw, const Vector& grad_normalized) {
  if (raw.size() != grad_normalized.size())
    throw std::invalid_argument(fmt::format(
        "weights gradient: weights have {} entries and the gradient {}, must be equal",
        raw.size(), grad_normalized.size()));
  const double total = raw.sum();
  require(total > 0.0 && std::isfinite(total), "weights gradient", "sum of weights", total,
          "> 0 and finite");
  const Vector w = raw / total;
  const double mean = grad_normalized.dot(w);
  return (grad_normalized.array() - mean) / total;
}

}  // namespace attnflow
