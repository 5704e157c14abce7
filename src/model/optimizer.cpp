// SGD (heavy-ball momentum) and Adam over the model's parameters in for_each_parameter order.
#include <cmath>

#include "attnflow/base/error.hpp"
#include "attnflow/model/model_grad.hpp"

namespace attnflow {

OptimizerKind parse_optimizer(const std::string& name, const std::string& context) {
  if (name == "sgd") return OptimizerKind::sgd;
  if (name == "adam") return OptimizerKind::adam;
  throw_invalid(context, "optimizer", fmt::format("\"{}\"", name), "one of sgd, adam");
}

std::string to_string(OptimizerKind kind) { return kind == OptimizerKind::sgd ? "sgd" : "adam"; }

void OptimizerOptions::validate() const {
  constexpr const char* ctx = "optimizer";
  require(std::isfinite(lr) && lr > 0.0, ctx, "lr", lr, "finite and > 0");
  require(momentum >= 0.0 && momentum < 1.0, ctx, "momentum", momentum, "in [0, 1)");
  require(beta1 >= 0.0 && beta1 < 1.0, ctx, "beta1", beta1, "in [0, 1)");
  require(beta2 >= 0.0 && beta2 < 1.0, ctx, "beta2", beta2, "in [0, 1)");
  require(std::isfinite(eps) && eps > 0.0, ctx, "eps", eps, "finite and > 0");
}

Optimizer::Optimizer(const Model& model, const OptimizerOptions& options) : opt_(options) {
  opt_.validate();
  const auto n = static_cast<size_t>(model.parameter_count());
  m_.assign(n, 0.0);
  if (opt_.kind == OptimizerKind::adam) v_.assign(n, 0.0);
}

void Optimizer::step(Model& model, const Model& grad) {
  if (static_cast<size_t>(model.parameter_count()) != m_.size() ||
      grad.layers.size() != model.layers.size())
    throw std::invalid_argument("optimizer: model and gradient do not match the optimizer's layout");
  ++steps_;
  const double c1 = 1.0 - std::pow(opt_.beta1, static_cast<double>(steps_));
  const double c2 = 1.0 - std::pow(opt_.beta2, static_cast<double>(steps_));
  size_t pos = 0;
  for (size_t l = 0; l < model.layers.size(); ++l) {
    std::vector<const double*> gblocks;
    Layer gcopy = grad.layers[l];
    for_each_parameter(gcopy, [&](double* p, Index) { gblocks.push_back(p); });
    size_t b = 0;
    for_each_parameter(model.layers[l], [&](double* p, Index n) {
      const double* g = gblocks[b++];
      for (Index t = 0; t < n; ++t, ++pos) {
        if (opt_.kind == OptimizerKind::sgd) {
          m_[pos] = opt_.momentum * m_[pos] + g[t];
          p[t] -= opt_.lr * m_[pos];
        } else {
          m_[pos] = opt_.beta1 * m_[pos] + (1.0 - opt_.beta1) * g[t];
          v_[pos] = opt_.beta2 * v_[pos] + (1.0 - opt_.beta2) * g[t] * g[t];
          p[t] -= opt_.lr * (m_[pos] / c1) / (std::sqrt(v_[pos] / c2) + opt_.eps);
        }
      }
    });
  }
}

}  // namespace attnflow
