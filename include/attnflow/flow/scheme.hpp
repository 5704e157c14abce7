// Normalization schemes of docs/math.md section 5: tokens x_i = r_i theta_i, A_i the attention
// average of the thetas, and each scheme a rule (dtheta/dt, dr/dt):
//   post-LN  P A                  0           pre-LN  P A / r          <theta, A>
//   mix-LN   post-LN for t < tau, then pre-LN  peri-LN P A / (r |A|)  <theta, A> / |A|
//   nGPT     alpha P A / |A|      0           sqrt    P A / sqrt(t + 1)    0
// (P = P_theta.) A scheme wraps any average field; the state is (n, d + 1) = [theta | r].
// Each scheme is also the layer map it describes (Method::residual, one layer of step h):
//   post-LN  theta <- N(theta + h A)                     r unchanged
//   pre-LN   y = r theta + h A, theta <- N(y), r <- |y|  (x <- x + h Attn(LN x))
//   mix-LN   post-LN for t < tau, then pre-LN
//   peri-LN  y = r theta + h A / |A|, theta <- N(y), r <- |y|  (x <- x + h LN(Attn(LN x)))
//   nGPT     theta <- N(theta + alpha h (A / |A| - theta))  r unchanged (h_A = N(A))
//   sqrt     theta <- N(theta + h A / sqrt(t + 1))      r unchanged
// (N = normalize; rows with |A| = 0 stay put under peri-LN and nGPT.) Each map's first-order
// expansion in h is the rate above, so it converges to the same flow as dt -> 0.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "attnflow/flow/integrate.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

// The one scheme enum: flows (SchemeOptions), models and the equiangular theory
// (EquiangularOptions, which refuses none) all take it, and parse_scheme is its one parser.
enum class Scheme { none, post_ln, pre_ln, mix_ln, peri_ln, ngpt, sqrt_scaling };
// "none" | "post_ln" | "pre_ln" | "mix_ln" | "peri_ln" | "ngpt" | "sqrt" (dashes for underscores,
// any case, "post" / "pre" / "mix" / "peri" and "sqrt_scaling" also accepted).
// Errors name `field`: "context: field = \"x\", must be one of ...".
Scheme parse_scheme(std::string_view name, std::string_view context = "flow",
                    std::string_view field = "scheme");
std::string to_string(Scheme scheme);

struct SchemeOptions {
  Scheme scheme = Scheme::none;  // none: the plain flow on points, no [theta | r] state
  double tau = 1.0;              // mix-LN switch time, >= 0
  double alpha = 1.0;            // nGPT step scale alpha_t (constant), > 0
  void validate() const;         // throws "flow: scheme.tau = -1, must be >= 0"
};

// Writes A (n, d), the unprojected attention average, for unit directions theta (n, d).
using AverageField = std::function<void(double t, const Matrix& theta, Matrix& a)>;

// The scheme's rates for directions theta (n, d), radii r (n) and averages a (n, d):
// dtheta (n, d) tangent to theta, dr (n). Rows with |A_i| = 0 get zero rates under
// peri-LN and nGPT (the direction of A is undefined there).
void scheme_rates(const SchemeOptions& options, double t, const Matrix& theta, const Vector& r,
                  const Matrix& a, Matrix& dtheta, Vector& dr);

// The scheme's field on the state [theta | r] (n, d + 1) into dxdt (same shape).
void scheme_field(const SchemeOptions& options, const AverageField& average, double t,
                  const Matrix& state, Matrix& dxdt);
// One residual layer of step h at time t on the state [theta | r] (n, d + 1), in place.
void scheme_layer(const SchemeOptions& options, const AverageField& average, double t, double h,
                  Matrix& state);
// Renormalizes the theta columns of [theta | r] (the retraction of every scheme).
void scheme_retract(Matrix& state);
// The Ode on the state [theta | r] (n, d + 1): scheme_field, scheme_retract, scheme_layer.
Ode scheme_ode(AverageField average, const SchemeOptions& options);
// Points x (n, d) -> [x / |x| | |x|]; zero rows are rejected naming "flow: initial state".
Matrix scheme_state(const Matrix& x);
// [theta | r] -> r theta (n, d).
Matrix scheme_positions(const Matrix& state);

}  // namespace attnflow
