// In-context linear regression with one attention layer (docs/math.md section 7): x ~ N(0, S),
// task w (E[w w^T] = tau^2 I), y = <w, x> + noise, tokens z_i = (x_i, y_i), query (x_q, 0).
// Block parametrization U = [[A, 0], [0, 0]], V = [[0, 0], [0, b]] gives the prediction
//   softmax: b * sum_i softmax_i(x_i^T A x_q) y_i      linear: b * (1/L) sum_i y_i x_i^T A x_q
// trained by mini-batch SGD on fresh prompts; risk = (1/2) E (prediction - <w, x_q>)^2.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "attnflow/flow/integrate.hpp"
#include "attnflow/base/rng.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

enum class TaskPrior { gaussian, sphere };  // w ~ N(0, tau^2 I) or uniform, |w| = tau sqrt(d)
TaskPrior parse_task_prior(std::string_view name, std::string_view context = "icl");
std::string to_string(TaskPrior p);

// The data model. cov = S (d, d) symmetric positive definite.
struct IclData {
  Matrix cov;
  double noise = 0.0;       // variance of the label noise on prompt tokens
  TaskPrior prior = TaskPrior::gaussian;
  double task_scale = 1.0;  // tau
  Index dim() const { return cov.rows(); }
  // Throws naming the field: "icl: noise = -1, must be >= 0".
  void validate() const;
};

// S_ij = rho^|i-j| (the published covariance, rho = 0.5).
Matrix toeplitz_covariance(Index d, double rho);

// One prompt: L tokens (x_i, y_i), the query x_q and its noise-free target <w, x_q>.
struct IclPrompt {
  Matrix x;  // (L, d)
  Vector y;  // (L)
  Vector w;  // (d)
  Vector xq;  // (d)
  double target = 0.0;
};

// Draws prompts; each prompt is drawn from its own Rng stream by the caller, so a batch is
// the same whatever the thread count.
class IclSampler {
 public:
  explicit IclSampler(IclData data);
  IclPrompt sample(Index length, Rng& rng) const;
  // The same draw into an existing prompt, reusing its buffers (the training loop's path).
  void sample_into(Index length, Rng& rng, IclPrompt& prompt) const;
  const IclData& data() const { return data_; }

 private:
  IclData data_;
  Matrix chol_;  // lower Cholesky factor of S
};

enum class IclModel { softmax, linear };
IclModel parse_icl_model(std::string_view name, std::string_view context = "icl");
std::string to_string(IclModel m);

struct IclParams {
  Matrix a;  // (d, d)
  double b = 0.0;
};

// Prediction on one prompt and its gradient in (A, b) (softmax: one lse_reduce pass).
struct IclPrediction {
  double value = 0.0;
  Matrix grad_a;  // (d, d), empty unless requested
  double grad_b = 0.0;
};
IclPrediction icl_predict(IclModel model, const IclParams& params, const IclPrompt& prompt,
                          bool gradients);

// The paper's balanced start: A = alpha Theta Theta^T / |Theta Theta^T|_F, b = alpha, with
// Theta (d, d) standard normal from rng.
IclParams icl_balanced_init(Index d, double alpha, Rng& rng);

// Infinite-prompt objects (closed forms of docs/math.md section 7, times tau^2 = E|w|^2 / d):
//   R(A, b) = (tau^2 / 2) tr((b S A - I) S (b S A - I)^T)
double icl_infinite_risk(const IclData& data, const IclParams& params);
//   -grad R: dA/dt = tau^2 (b S^2 - b^2 S^2 A S), db/dt = tau^2 (tr(A^T S^2) - b tr(A^T S^2 A S))
void icl_infinite_flow(const IclData& data, const IclParams& params, Matrix& da, double& db);
//   b = tr(S^-2)^(1/4), A = S^-1 / b (the balanced stationary point)
IclParams icl_fixed_point(const Matrix& cov);
// The flow as an Ode on the state (1, d*d + 1) = [A row-major, b], for attnflow::advance.
Ode icl_flow_ode(const IclData& data);
Matrix icl_pack(const IclParams& p);
IclParams icl_unpack(const Matrix& state, Index d);

struct IclTrainOptions {
  IclModel model = IclModel::softmax;
  Index prompt_length = 100;  // L; 0 = infinite prompt (the ODE)
  long steps = 1000;
  double lr = 0.01;           // SGD step; for the ODE, step k is time t = k lr
  Index batch = 128;
  std::uint64_t seed = 0;
  long log_every = 1;         // a history row every log_every steps (and at the end)
  Method method = Method::rk4;  // ODE integrator
  double ode_dt = 0.0;        // ODE step (0 = lr)
  void validate() const;
};

struct IclStepRecord {
  long step = 0;
  double time = 0.0;           // step * lr
  double risk = 0.0;           // mini-batch risk before the update (infinite: R(A, b))
  double risk_infinite = 0.0;  // R(A, b) of the current parameters
  double b = 0.0;
  double a_norm = 0.0;         // |A|_F
  double balance = 0.0;        // |A|_F^2 - b^2 (conserved by the ODE)
};

struct IclTrainResult {
  IclParams params;
  std::vector<IclStepRecord> history;
  long steps = 0;
  // false if training diverged (lr too large): the first step whose batch risk, gradient,
  // parameters or infinite-prompt risk is not finite ends training; params and history hold
  // the last finite values, and message names the step.
  bool finite = true;
  long diverged_step = -1;     // that step (-1: none)
  bool stopped = false;        // a checkpoint hook asked to stop before the last step
  std::string message;
};

// Where training stands, everything needed to continue bit for bit (prompts depend only on
// the step index, so SGD needs no generator state). `step` is the next step to run:
//   SGD: steps 0 .. step-1 are taken, params are their result;
//   ODE: times 0 .. (step-1) lr are done, params are the state at (step-1) lr (0 = not started).
// `history` holds the records logged so far.
struct IclTrainState {
  long step = 0;
  IclParams params;
  IntegratorState integrator;  // infinite prompt only
  std::vector<IclStepRecord> history;
};
// The state before any step: params = init.
IclTrainState icl_initial_state(const IclParams& init);

// Called after every logged step (progress lines, streaming).
using IclProgress = std::function<void(const IclStepRecord&)>;
// Called with the state every `every` steps taken (never after the last one); the run layer
// writes a checkpoint from it. Returning false stops training there (result.stopped).
struct IclCheckpointHook {
  long every = 0;  // 0 = never
  std::function<bool(const IclTrainState&)> save;
  // Checked after every step (not the last): true offers the state to `save` at once (a stop
  // request) and stops after it, whatever `every` says.
  std::function<bool()> stop_now = {};
};

IclTrainResult icl_train(const IclData& data, const IclParams& init,
                         const IclTrainOptions& options, const IclProgress& progress = {});
// Continues from `start` (icl_initial_state or a saved state); the result equals the
// uninterrupted run's bit for bit. Throws naming the field for a state that does not fit the
// options (shape, step out of range).
IclTrainResult icl_train(const IclData& data, const IclTrainState& start,
                         const IclTrainOptions& options, const IclProgress& progress,
                         const IclCheckpointHook& checkpoint);

// Mean risk (1/2)(prediction - <w, x_q>)^2 over `prompts` fresh prompts of length L, with
// its standard error; prompt k is drawn from Rng(seed, 0).split(k).
struct IclRiskEstimate {
  double mean = 0.0;
  double standard_error = 0.0;
};
IclRiskEstimate icl_estimate_risk(const IclData& data, IclModel model, const IclParams& params,
                                  Index length, Index prompts, std::uint64_t seed);

}  // namespace attnflow
