// Fitting a model to a dataset of (measure, targets) by minibatch gradient descent (docs/math.md
// section 4, "Learning"): each step draws `batch_size` examples with replacement from a seeded
// stream, takes the mean loss gradient (model_grad.hpp) and an optimizer step. Deterministic:
// the same seed and data give the same model bit for bit on any thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "attnflow/model/model_grad.hpp"
#include "attnflow/base/rng.hpp"

namespace attnflow {

struct FitOptions {
  long steps = 500;
  Index batch_size = 16;
  long eval_every = 25;  // train/test loss on the full sets every this many steps (and at 0, end)
  std::uint64_t seed = 1;
  OptimizerOptions optimizer;
  void validate() const;
};

struct FitRecord {
  long step = 0;
  double train_loss = 0.0, test_loss = 0.0;
};

struct FitResult {
  std::vector<FitRecord> history;
  double final_train_loss = 0.0, final_test_loss = 0.0;
  // Baseline: the loss of the identity map (the model with all residual branches zero).
  double identity_train_loss = 0.0, identity_test_loss = 0.0;
  long steps = 0;
  bool finite = true;  // false if a step produced a non-finite loss (training stopped there)
  std::string message;
  // Every Sinkhorn normalization of the run (training steps and evaluations): a layer that
  // misses its tolerance is counted in sinkhorn.not_converged, never dropped.
  SinkhornStats sinkhorn;
};

// Called after each evaluation (for progress and streaming loss.csv).
using FitCallback = std::function<void(const FitRecord&)>;

FitResult fit_model(Model& model, const std::vector<Example>& train, const std::vector<Example>& test,
                    const FitOptions& options, const FitCallback& callback = {});

// sum_i w_i |x_i - y_i|^2 averaged over examples: the loss of the identity map.
double identity_loss(const std::vector<Example>& data);

}  // namespace attnflow
