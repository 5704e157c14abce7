// The one Sinkhorn engine (docs/math.md sections 1 and 3): every Sinkhorn iteration in attnflow
// (attention normalization, model layers and their backward trace, in-context task targets,
// entropic OT and its divergences) runs sinkhorn_loop below. Callers supply the two soft-min
// half-steps of their problem (an affinity <u_i, v_j> through the kernel, or a TransportCost);
// the engine owns the iteration order, eps-scaling, the symmetric update, the marginal error,
// the stopping rule, the observer and the status. Part of the ot/ module, which sits in core
// below attention (docs/ARCHITECTURE.md).
//
// Conventions. Potentials f (n), g (m) in cost units, the plan
//   pi_ij = a_i b_j exp((f_i + g_j - C_ij) / eps),
// and the half-steps
//   F(g)_i = -eps log sum_j b_j exp((g_j - C_ij) / eps)   (rows of pi sum to a afterwards)
//   G(f)_j = -eps log sum_i a_i exp((f_i - C_ij) / eps)   (columns sum to b afterwards).
// An affinity s_ij = <u_i, v_j> is the cost C = -s at eps = 1.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "attnflow/base/collective.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {


// The largest iteration cap validate() accepts (configs read it as a 64-bit integer first).
inline constexpr int kMaxSinkhornIterations = 100'000'000;

// The stopping rule of every Sinkhorn solve: one struct, one validate(), the defaults written
// here only. The CLI, the Python bindings, model files, configs and the config templates
// (`attnflow run/fit --print-config`) take them from here.
struct SinkhornControl {
  int iterations = 0;          // > 0: exactly this many iterations (reported converged); 0: until tol
  double tol = 1e-9;           // stop when the marginal violation sum |marginal - weights| <= tol
  int max_iterations = 10000;  // cap when iterations = 0, in [1, kMaxSinkhornIterations]

  // Throws std::invalid_argument "context: <prefix>tol = 0, must be > 0" (prefix names the
  // struct inside a larger one, e.g. "sinkhorn.").
  void validate(std::string_view context, std::string_view prefix = "") const;
};

// The Sinkhorn normalization of attention (normalization.hpp) is this stopping rule on the
// affinity; the name is kept for attention, flows, models and configs.
using SinkhornNormalizationOptions = SinkhornControl;

// Where a Sinkhorn solve stopped; carried by every caller into its own result.
struct SinkhornStatus {
  int iterations = 0;           // iterations run (0 for softmax and none in attention)
  double marginal_error = 0.0;  // sum |marginal - weights| of the last measured plan (NaN:
                                // never measured)
  bool converged = true;
  std::string message;          // why not converged (empty when converged)
};
using NormalizationStatus = SinkhornStatus;
// SinkhornStatus::message of a run that missed tol: "<context>: not converged after ...".
std::string sinkhorn_not_converged_message(std::string_view context, int iterations, double marginal_error,
                                           double tol);

// The statuses of many Sinkhorn solves (every head of every layer a model evaluation or a
// training run went through), so that a miss anywhere reaches the caller's result.
struct SinkhornStats {
  long solves = 0;                  // Sinkhorn solves counted
  long not_converged = 0;           // of which missed their tolerance
  int max_iterations = 0;           // the most iterations one solve ran
  double max_marginal_error = 0.0;  // the largest measured marginal error (NaN ones skipped)
  std::string message;              // the first miss's message
  bool converged() const { return not_converged == 0; }
  void add(const SinkhornStatus& status);
  // Adds another tally (call in a fixed order for a deterministic message).
  void merge(const SinkhornStats& other);
};

// One soft-min half-step: F(h) (transpose = false, result of length n, h of length m) or
// G(h) (transpose = true), each one streaming pass of the kernel.
using SinkhornHalfStep = std::function<Vector(bool transpose, const Vector& h, double eps)>;

// What the observer sees after every iteration: f and g as they stand (for the symmetric
// update g is f), and the marginal error measured during this iteration (of the plan before
// its last half-step; NaN where not measured: eps-scaling stages and the first iteration).
struct SinkhornIterate {
  int iteration = 0;
  double eps = 0.0;
  const Vector& f;
  const Vector& g;
  double marginal_error = 0.0;
  // g is over-relaxed (SinkhornLoop::omega != 1): the columns of the plan (f, g) are not exact
  // yet. Part of a resume point.
  bool relaxed = false;
};
using SinkhornObserver = std::function<void(const SinkhornIterate&)>;

// Where a solve stands at the end of an iteration: enough to continue it bit for bit (the
// checkpoints of long entropic OT solves, `attnflow ot --resume`). Alternating updates with
// the rows measured only (SinkhornLoop::Measure::rows, not symmetric).
struct SinkhornResumePoint {
  int iteration = 0;  // full iterations done, eps-scaling stages included
  Vector f, g;
  bool relaxed = false;  // SinkhornIterate::relaxed of that iteration
};

// How the engine runs a problem, beyond the user's stopping rule.
struct SinkhornLoop {
  // eps values, the last one the target: one iteration at each earlier value (eps-scaling,
  // warm starting the next), then iterations at the target. Affinity problems use {1}.
  std::vector<double> eps{1.0};
  // Which marginal is measured. The half-steps always alternate F, G, F, G, ... from g0; an
  // iteration ends after the half-step of the side that is NOT measured, and the measured
  // side's half-step is what measures it (its potential would move by the log of the
  // marginal's ratio to the weights), so no pass is spent on measuring:
  //   measure = rows    (entropic OT): iteration = F then G; rows measured, columns exact;
  //   measure = columns (attention) : iteration 1 = F alone (softmax, the Sinkformer
  //                                   convention), then G then F; rows exact.
  enum class Measure { rows, columns } measure = Measure::rows;
  // Self-transport C = C^T, a = b: one potential and the averaged update
  //   f <- (f + F(f)) / 2,
  // which converges where alternating updates stall on spread-out clouds (eps << diameter^2);
  // the error is the row (= column) violation of the plan (f, f).
  bool symmetric = false;
  // Over-relaxation (alternating updates with the rows measured only; docs/math.md section
  // 3.3): at the target eps, from the first measured iteration on, each half-step moves its
  // potential omega times as far as plain Sinkhorn would,
  //   f <- (1 - omega) f + omega F(g),   g <- (1 - omega) g + omega G(f),
  // the same fixed point, reached in far fewer iterations when eps is small (omega in (1, 2)).
  // An over-relaxed g leaves the columns inexact, so a run never stops on one: when the rows
  // measure within tol after a relaxed g, that iteration is a plain one (g = G(f) exactly) and
  // the next one measures again; a run that ends at max_iterations does the same before its
  // final measurement. omega = 1 is plain Sinkhorn.
  double omega = 1.0;
  // A run to tol that reaches max_iterations measures once more (one half-step, only on that
  // failure path) so its status describes the returned plan. A fixed number of iterations does
  // the same only with final_check: attention reports the error of the plan it returns; the
  // backward trace of model training turns it off (one pass less per training step) and then
  // reports the last error measured (NaN when none was: iterations = 1).
  bool final_check = true;
  // Stop (not converged) at a non-finite marginal error. Entropic OT does: there it means eps
  // is too small for the cost scale. Attention does not: at large beta the first errors can
  // overflow while the potentials stay finite and the iterations recover.
  bool stop_if_not_finite = false;
  std::string_view context = "sinkhorn";  // prefix of the status message
  SinkhornObserver observer;              // called after every iteration, may be empty
  // Continue from this point instead of starting (the same problem, schedule and control).
  const SinkhornResumePoint* resume = nullptr;
  // Called after every iteration (after the observer); true ends the run there, interrupted
  // (SinkhornRun::interrupted): that iterate is the point to resume from. May be empty.
  std::function<bool(const SinkhornIterate&)> stop_after;
};

struct SinkhornRun {
  Vector f, g;          // the potentials (g = f for the symmetric update)
  Vector mass;          // the measured marginal of the returned plan (empty if never measured)
  SinkhornStatus status;
  bool interrupted = false;  // stop_after ended it: f, g are a resume point, not a result
};

// Runs Sinkhorn for marginals a (n), b (m) (weights >= 0; the marginal error is
// sum_i |mass_i - w_i| over the measured side) from g0 (m) (f0 for the symmetric update;
// zero when null). Non-convergence is a status, never an exception. control is validated by
// the caller.
SinkhornRun sinkhorn_loop(const SinkhornHalfStep& softmin, const Vector& a, const Vector& b,
                          const SinkhornControl& control, const SinkhornLoop& loop,
                          const Vector* g0 = nullptr);

// The affinity problem s_ij = <u_i, v_j> (u (n, k), v (m, k); beta folded into u) with
// marginals of log-weights loga (n), logb (m): F(g) = -LSE_j(logb_j + g_j + s_ij) and
// G(f) = -LSE_i(loga_i + f_i + s_ij), each one lse_reduce pass (eps must be 1). The function
// keeps views of u and v and references to loga and logb: their data must outlive it.
// With `comm` (collective.hpp, several processes) each process computes its part of the rows
// of every half-step and the parts are gathered: the same vectors bit for bit.
SinkhornHalfStep affinity_half_steps(const MatrixRef& u, const MatrixRef& v, const Vector& loga,
                                     const Vector& logb, const Collective* comm = nullptr);
// The same with the points split across processes: u and v are this process's rows
// (split.queries() of u, split.keys() of v); each half-step reduces this process's rows against
// the other side's points streamed from their owners (lse_reduce_split_keys, kernel.hpp), then
// gathers the rows. The whole potentials on every process, bit for bit those of one process.
SinkhornHalfStep affinity_half_steps(const MatrixRef& u, const MatrixRef& v, const Vector& loga,
                                     const Vector& logb, const SplitRows& split);

}  // namespace attnflow
