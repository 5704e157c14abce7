// ODE integrators for particle flows and theory ODEs (docs/math.md section 5): dx/dt = F(t, x)
// with x a matrix (one row per particle, or one row for a scalar ODE), followed after every
// step by an optional retraction (e.g. renormalizing rows onto the sphere).
//   euler   : x <- R(x + dt F(t, x))          (F the tangent field: a projected step, retracted)
//   residual: x <- the ODE's layer map, e.g. normalize(x + dt A(x)) with no tangent projection
//             (the published phase-diagram code, a post-LN residual block); same flow as
//             dt -> 0, differs from euler at first order in dt. ODEs without a layer map: euler
//   rk4   : classical Runge-Kutta 4, then R
//   dopri5: adaptive Dormand-Prince 5(4) with rtol/atol, then R
// Integrators know nothing of attention: a field is a function of the state.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "attnflow/base/types.hpp"

namespace attnflow {

// Writes dx/dt at (t, x) into dxdt (already sized like x).
using Field = std::function<void(double t, const Matrix& x, Matrix& dxdt)>;
// Maps a state back onto its manifold in place (rows to the sphere, ...). May be empty.
using Retraction = std::function<void(Matrix& x)>;
// One residual layer of step h at time t, in place, retraction included (Method::residual).
using LayerStep = std::function<void(double t, double h, Matrix& x)>;

struct Ode {
  Ode() = default;
  Ode(Field f, Retraction r = {}, LayerStep l = {})
      : field(std::move(f)), retract(std::move(r)), layer(std::move(l)) {}
  Field field;
  Retraction retract;
  LayerStep layer;  // empty: Method::residual takes the euler step
  // Optional, with layer: whether the state the last layer step left is finite, known from
  // the step itself (batch_residual_layer's squared norms); the integrator asks it instead of
  // scanning the state after each residual step.
  std::function<bool()> layer_finite;
};

enum class Method { euler, rk4, dopri5, residual };
Method parse_method(std::string_view name, std::string_view context = "integrate");
std::string to_string(Method m);

struct IntegratorOptions {
  Method method = Method::rk4;
  double dt = 0.01;     // fixed step (euler, residual, rk4); first trial step (dopri5)
  double rtol = 1e-6;   // dopri5 relative tolerance
  double atol = 1e-9;   // dopri5 absolute tolerance
  double dt_min = 1e-14;
  long max_steps = 1'000'000'000;
  // Throws naming the field: "integrate: dt = -0.1, must be > 0".
  void validate() const;
};

// Where an integration stands; saved in checkpoints so a resumed run continues exactly.
struct IntegratorState {
  double t = 0.0;
  double dt_next = 0.0;  // dopri5's proposed next step (0 = use options.dt)
  long steps = 0;        // accepted steps
  long rejected = 0;     // dopri5 rejected steps
  long evaluations = 0;  // field evaluations
  // Fixed-step grid: step times are grid_origin + k dt computed by multiplication (never
  // accumulated), so advancing to 0.7 then 3.0 equals advancing to 3.0 bit for bit.
  double grid_origin = 0.0;
  long grid_steps = 0;
};

// A step that ends closer than kArrivalSlack * dt to t_end counts as arriving (guards against
// t += dt round-off); every stepping loop (advance, the noisy flow) uses it.
inline constexpr double kArrivalSlack = 1e-9;

// Advances x from state.t to t_end (>= state.t). Fixed-step methods take steps of dt and
// shorten the last one to land on t_end exactly. Throws std::runtime_error if the state
// becomes non-finite (naming the step and time) or dopri5's step falls below dt_min.
void advance(const Ode& ode, Matrix& x, IntegratorState& state, double t_end,
             const IntegratorOptions& options);

// The fixed-grid steps advance() takes from state.t to t_end (method euler, residual or rk4; not
// dopri5): for each, state is updated as advance() updates it (grid, t, steps, evaluations),
// then step(t, h) is called with the step's start time and size. advance() runs its steps
// through this, and so can engines that take the steps elsewhere (the GPU ensemble) on the same grid.
void fixed_steps(IntegratorState& state, double t_end, const IntegratorOptions& options,
                 const std::function<void(double t, double h)>& step);

// One step of size h from (t, x) with a fixed-step method (euler, residual or rk4), retraction
// included.
void fixed_step(const Ode& ode, Matrix& x, double t, double h, Method method);

}  // namespace attnflow
