#include <cmath>

#include "attnflow/base/error.hpp"
#include "attnflow/model/model_fit.hpp"

namespace attnflow {

void FitOptions::validate() const {
  constexpr const char* ctx = "fit";
  require(steps >= 0, ctx, "steps", steps, ">= 0");
  require(batch_size >= 1, ctx, "batch_size", batch_size, ">= 1");
  require(eval_every >= 1, ctx, "eval_every", eval_every, ">= 1");
  optimizer.validate();
}

double identity_loss(const std::vector<Example>& data) {
  double s = 0.0;
  for (const Example& ex : data)
    s += ((ex.mu.points() - ex.target).rowwise().squaredNorm().transpose() * ex.mu.weights()).value();
  return s / static_cast<double>(data.size());
}

FitResult fit_model(Model& model, const std::vector<Example>& train, const std::vector<Example>& test,
                    const FitOptions& options, const FitCallback& callback) {
  options.validate();
  model.validate();
  require(!train.empty(), "fit", "train examples", train.size(), ">= 1");
  require(!test.empty(), "fit", "test examples", test.size(), ">= 1");
  FitResult res;
  res.identity_train_loss = identity_loss(train);
  res.identity_test_loss = identity_loss(test);
  Optimizer opt(model, options.optimizer);
  Rng rng(options.seed, 0x666974);  // "fit": the minibatch stream
  auto evaluate_now = [&](long step) {
    FitRecord rec{step, mean_loss(model, train, &res.sinkhorn), mean_loss(model, test, &res.sinkhorn)};
    res.history.push_back(rec);
    if (callback) callback(rec);
  };
  evaluate_now(0);
  Model grad;
  std::vector<size_t> batch(static_cast<size_t>(options.batch_size));
  for (long step = 1; step <= options.steps; ++step) {
    for (auto& b : batch)
      b = std::min(train.size() - 1, static_cast<size_t>(rng.uniform() * static_cast<double>(train.size())));
    const double loss = batch_loss_and_gradient(model, train, batch, grad, &res.sinkhorn);
    if (!std::isfinite(loss)) {
      res.finite = false;
      res.message = fmt::format("fit: non-finite minibatch loss at step {} (lower optimizer.lr?)", step);
      break;
    }
    opt.step(model, grad);
    res.steps = step;
    if (step % options.eval_every == 0 || step == options.steps) evaluate_now(step);
  }
  res.final_train_loss = res.history.back().train_loss;
  res.final_test_loss = res.history.back().test_loss;
  return res;
}

}  // namespace attnflow
