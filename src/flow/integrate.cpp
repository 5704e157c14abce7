#include "attnflow/flow/integrate.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>

#include "attnflow/base/error.hpp"
#include "attnflow/base/finite.hpp"

namespace attnflow {

Method parse_method(std::string_view name, std::string_view context) {
  if (name == "euler") return Method::euler;
  if (name == "rk4") return Method::rk4;
  if (name == "dopri5") return Method::dopri5;
  if (name == "residual") return Method::residual;
  throw_invalid(context, "method", fmt::format("\"{}\"", name), "one of euler, residual, rk4, dopri5");
}

std::string to_string(Method m) {
  switch (m) {
    case Method::euler: return "euler";
    case Method::rk4: return "rk4";
    case Method::dopri5: return "dopri5";
    case Method::residual: return "residual";
  }
  return "?";
}

void IntegratorOptions::validate() const {
  constexpr const char* c = "integrate";
  require(dt > 0.0 && std::isfinite(dt), c, "dt", dt, "> 0");
  require(rtol > 0.0 && std::isfinite(rtol), c, "rtol", rtol, "> 0");
  require(atol > 0.0 && std::isfinite(atol), c, "atol", atol, "> 0");
  require(dt_min > 0.0, c, "dt_min", dt_min, "> 0");
  require(max_steps >= 1, c, "max_steps", max_steps, ">= 1");
}

namespace {

// all_finite (base/finite.hpp) costs a small fraction of a field evaluation even for an
// ensemble's many small systems.
// finite: the state's finiteness where the step already knows it (Ode::layer_finite).
void check_state(const Matrix& x, const IntegratorState& st, std::optional<bool> finite = std::nullopt) {
  if (!(finite ? *finite : all_finite(x.data(), x.size())))
    throw std::runtime_error(fmt::format(
        "integrate: state is not finite after step {} (t = {}): the field overflowed or the "
        "step dt is too large for this beta",
        st.steps, st.t));
}

void retract(const Ode& ode, Matrix& x) {
  if (ode.retract) ode.retract(x);
}

// Dormand-Prince 5(4) tableau.
constexpr double c2 = 1.0 / 5, c3 = 3.0 / 10, c4 = 4.0 / 5, c5 = 8.0 / 9;
constexpr double a21 = 1.0 / 5;
constexpr double a31 = 3.0 / 40, a32 = 9.0 / 40;
constexpr double a41 = 44.0 / 45, a42 = -56.0 / 15, a43 = 32.0 / 9;
constexpr double a51 = 19372.0 / 6561, a52 = -25360.0 / 2187, a53 = 64448.0 / 6561,
                 a54 = -212.0 / 729;
constexpr double a61 = 9017.0 / 3168, a62 = -355.0 / 33, a63 = 46732.0 / 5247, a64 = 49.0 / 176,
                 a65 = -5103.0 / 18656;
constexpr double b1 = 35.0 / 384, b3 = 500.0 / 1113, b4 = 125.0 / 192, b5 = -2187.0 / 6784,
                 b6 = 11.0 / 84;
// Error coefficients: 5th-order minus embedded 4th-order weights.
constexpr double e1 = 71.0 / 57600, e3 = -71.0 / 16695, e4 = 71.0 / 1920, e5 = -17253.0 / 339200,
                 e6 = 22.0 / 525, e7 = -1.0 / 40;

// One Dormand-Prince trial step: xnew (5th order) and the scaled error norm.
double dopri_trial(const Ode& ode, const Matrix& x, double t, double h, Matrix& xnew,
                   const IntegratorOptions& o, Matrix k[7]) {
  ode.field(t, x, k[0]);
  ode.field(t + c2 * h, x + h * a21 * k[0], k[1]);
  ode.field(t + c3 * h, x + h * (a31 * k[0] + a32 * k[1]), k[2]);
  ode.field(t + c4 * h, x + h * (a41 * k[0] + a42 * k[1] + a43 * k[2]), k[3]);
  ode.field(t + c5 * h, x + h * (a51 * k[0] + a52 * k[1] + a53 * k[2] + a54 * k[3]), k[4]);
  ode.field(t + h, x + h * (a61 * k[0] + a62 * k[1] + a63 * k[2] + a64 * k[3] + a65 * k[4]), k[5]);
  xnew = x + h * (b1 * k[0] + b3 * k[2] + b4 * k[3] + b5 * k[4] + b6 * k[5]);
  ode.field(t + h, xnew, k[6]);
  const Matrix err = h * (e1 * k[0] + e3 * k[2] + e4 * k[3] + e5 * k[4] + e6 * k[5] + e7 * k[6]);
  double sum = 0.0;
  for (Index i = 0; i < x.rows(); ++i)
    for (Index j = 0; j < x.cols(); ++j) {
      const double sc = o.atol + o.rtol * std::max(std::abs(x(i, j)), std::abs(xnew(i, j)));
      const double r = err(i, j) / sc;
      sum += r * r;
    }
  return std::sqrt(sum / static_cast<double>(std::max<Index>(x.size(), 1)));
}

}  // namespace

void fixed_step(const Ode& ode, Matrix& x, double t, double h, Method method) {
  if (method == Method::residual && ode.layer) {
    ode.layer(t, h, x);  // the layer map retracts itself
    return;
  }
  Matrix k1(x.rows(), x.cols());
  if (method == Method::euler || method == Method::residual) {
    ode.field(t, x, k1);
    x += h * k1;
  } else if (method == Method::rk4) {
    Matrix k2(x.rows(), x.cols()), k3(x.rows(), x.cols()), k4(x.rows(), x.cols());
    ode.field(t, x, k1);
    ode.field(t + 0.5 * h, x + 0.5 * h * k1, k2);
    ode.field(t + 0.5 * h, x + 0.5 * h * k2, k3);
    ode.field(t + h, x + h * k3, k4);
    x += (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4);
  } else {
    throw std::invalid_argument("integrate: fixed_step needs method euler, residual or rk4, not dopri5");
  }
  retract(ode, x);
}

void fixed_steps(IntegratorState& st, double t_end, const IntegratorOptions& o,
                 const std::function<void(double t, double h)>& step) {
  require(o.method != Method::dopri5, "integrate", "method", to_string(o.method), "euler, residual or rk4 (fixed steps)");
  require(t_end >= st.t, "integrate", "t_end", t_end, fmt::format(">= current time {}", st.t));
  const double eps_t = kArrivalSlack * o.dt;
  const int evals = o.method == Method::rk4 ? 4 : 1;
  while (t_end - st.t > eps_t) {
    if (st.steps >= o.max_steps)
      throw std::runtime_error(fmt::format("integrate: max_steps = {} reached at t = {}", o.max_steps, st.t));
    const double t = st.grid_origin + static_cast<double>(st.grid_steps) * o.dt;
    const double next = st.grid_origin + static_cast<double>(st.grid_steps + 1) * o.dt;
    double h = o.dt;
    if (next <= t_end + eps_t) {  // a full grid step (landing on t_end within round-off)
      ++st.grid_steps;
      st.t = std::abs(next - t_end) <= eps_t ? t_end : next;
    } else {  // t_end is off the grid: a shortened step, and a new grid from t_end
      h = t_end - t;
      st.grid_origin = t_end;
      st.grid_steps = 0;
      st.t = t_end;
    }
    ++st.steps;
    st.evaluations += evals;
    step(t, h);
  }
}

void advance(const Ode& ode, Matrix& x, IntegratorState& st, double t_end,
             const IntegratorOptions& o) {
  o.validate();
  require(t_end >= st.t, "integrate", "t_end", t_end, fmt::format(">= current time {}", st.t));
  const double eps_t = kArrivalSlack * o.dt;
  if (o.method != Method::dopri5) {
    fixed_steps(st, t_end, o, [&](double t, double h) {
      fixed_step(ode, x, t, h, o.method);
      if (o.method == Method::residual && ode.layer && ode.layer_finite)
        check_state(x, st, ode.layer_finite());
      else
        check_state(x, st);
    });
    return;
  }
  Matrix k[7];
  for (auto& ki : k) ki.resize(x.rows(), x.cols());
  Matrix xnew;
  double h = st.dt_next > 0.0 ? st.dt_next : o.dt;
  while (t_end - st.t > eps_t) {
    if (st.steps + st.rejected >= o.max_steps)
      throw std::runtime_error(fmt::format("integrate: max_steps = {} reached at t = {}", o.max_steps, st.t));
    const double hs = std::min(h, t_end - st.t);
    const double err = dopri_trial(ode, x, st.t, hs, xnew, o, k);
    st.evaluations += 7;
    // Standard controller: safety 0.9, growth clamped to [0.2, 5].
    const double factor =
        err == 0.0 ? 5.0 : std::clamp(0.9 * std::pow(err, -0.2), 0.2, 5.0);
    if (err <= 1.0 && std::isfinite(err)) {
      x = xnew;
      retract(ode, x);
      st.t = (t_end - (st.t + hs) <= eps_t) ? t_end : st.t + hs;
      ++st.steps;
      check_state(x, st);
      // Keep the proposed step when this one was shortened only to land on t_end.
      h = hs < h ? std::max(h, hs * factor) : hs * factor;
    } else {
      ++st.rejected;
      h = hs * (std::isfinite(err) ? factor : 0.2);
      if (h < o.dt_min)
        throw std::runtime_error(fmt::format(
            "integrate: dopri5 step {} fell below dt_min = {} at t = {} (stiff or non-finite field)",
            h, o.dt_min, st.t));
    }
  }
  st.dt_next = h;
}

}  // namespace attnflow
