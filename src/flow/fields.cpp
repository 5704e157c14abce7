// Flow fields other than attention averages (kuramoto, meanshift, hardmax, vlasov), the
// tangent projection and retraction, state conversions, and the (noisy) advance.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "attnflow/base/error.hpp"
#include "attnflow/flow/flow.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "attnflow/base/parallel.hpp"

namespace attnflow {

namespace {

constexpr const char* kFieldsCtx = "flow";
// Pair loops below this size run on one thread (an OpenMP region costs more than the work).
constexpr Index kMinParallelPairs = 65536;

// Kuramoto on angles theta (n, 1): with c_j = (cos t_j, sin t_j) and m_i the softmax average
// of c_j under w_j e^{beta <c_i, c_j>} = w_j e^{beta cos(t_i - t_j)},
// sum_j P_ij sin(t_i - t_j) = sin t_i m_i,x - cos t_i m_i,y; USA multiplies by exp(lse_i).
void kuramoto_field(const FlowOptions& o, const Vector& log_w, const Matrix& theta, Matrix& dt) {
  const Index n = theta.rows();
  Matrix c(n, 2);
  for (Index i = 0; i < n; ++i) {
    c(i, 0) = std::cos(theta(i, 0));
    c(i, 1) = std::sin(theta(i, 0));
  }
  const Matrix u = o.beta * c;
  Vector lse;
  Matrix m;
  lse_reduce(u, c, log_w, c, lse, m);
  const bool usa = o.kuramoto_normalization == Normalization::none;
  for (Index i = 0; i < n; ++i) {
    double v = -(c(i, 1) * m(i, 0) - c(i, 0) * m(i, 1));
    if (usa) v *= std::exp(lse[i] - o.usa_log_shift);
    dt(i, 0) = v;
  }
}

// Blurring mean-shift: beta (m_i - x_i), m_i the average under w_j exp(-beta |x_i - x_j|^2 / 2);
// the factor exp(-beta |x_i|^2 / 2) cancels in the average, so col_j = log w_j - beta |x_j|^2 / 2.
void meanshift_field(const FlowOptions& o, const Vector& log_w, const Matrix& x, Matrix& dx) {
  const Vector col = log_w - 0.5 * o.beta * x.rowwise().squaredNorm();
  const Matrix u = o.beta * x;
  Vector lse;
  Matrix m;
  lse_reduce(u, x, col, x, lse, m);
  dx = o.beta * (m - x);
}

// Hardmax: V x_{j*}, j* = argmax_{j != i} <Q x_i, K x_j> (lowest j on ties), summed over heads.
// O(n^2 d_k) comparisons, no exponentials; rows are independent, so threads split rows.
void hardmax_field(const FlowOptions& o, const Matrix& x, Matrix& dx) {
  const std::vector<Head> one(1);
  const std::vector<Head>& heads = o.heads.empty() ? one : o.heads;
  const Index n = x.rows();
  dx.setZero(n, x.cols());
  for (const Head& h : heads) {
    const Matrix qx = h.q.size() ? Matrix(x * h.q.transpose()) : x;
    const Matrix kx = h.k.size() ? Matrix(x * h.k.transpose()) : x;
    const Matrix vx = h.v.size() ? Matrix(x * h.v.transpose()) : x;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (n * n >= kMinParallelPairs)
    for (Index i = 0; i < n; ++i) {
      Index best = -1;
      double best_s = -std::numeric_limits<double>::infinity();
      for (Index j = 0; j < n; ++j) {
        if (j == i) continue;
        const double s = qx.row(i).dot(kx.row(j));
        if (best < 0 || s > best_s) {
          best = j;
          best_s = s;
        }
      }
      dx.row(i) += vx.row(best);
    }
  }
}

// Gaussian aggregation: sum_j w_j F(x_i, x_j) = -Z_i (x_i - m_i) with
// Z_i = sum_j w_j exp(-|x_i - x_j|^2 / (2 s^2)) = exp(lse_i - |x_i|^2 / (2 s^2)) from the kernel
// pass u = x / s^2, col_j = log w_j - |x_j|^2 / (2 s^2), and m_i the matching average.
void gaussian_aggregation(const VlasovOptions& v, const Vector& log_w, const Matrix& x, Matrix& dx) {
  const double s2 = v.sigma * v.sigma;
  const Vector sq = x.rowwise().squaredNorm();
  const Vector col = log_w - sq / (2.0 * s2);
  const Matrix u = x / s2;
  Vector lse;
  Matrix m;
  lse_reduce(u, x, col, x, lse, m);
  for (Index i = 0; i < x.rows(); ++i)
    dx.row(i) = -std::exp(lse[i] - sq[i] / (2.0 * s2)) * (x.row(i) - m.row(i));
}

// Direct pair sum for the power and custom kernels; rows split across threads, each row's
// sum over j in fixed order (deterministic).
void pair_interaction(const VlasovOptions& v, const Vector& w, const Matrix& x, Matrix& dx) {
  const Index n = x.rows(), d = x.cols();
  dx.setZero(n, d);
  const bool power = v.interaction == Interaction::power;
  // A custom kernel (a Python callback) may throw: no exception may leave the region.
  ParallelErrors errors;
#pragma omp parallel num_threads(num_threads()) if (n * n >= kMinParallelPairs)
  {
    std::vector<double> f, z;
    bool ready = false;
    errors.run(-1, [&] {
      f.resize(static_cast<size_t>(d));
      z.resize(static_cast<size_t>(d));
      ready = true;
    });
#pragma omp for schedule(static)
    for (Index i = 0; i < n; ++i) {
      if (!ready) continue;
      errors.run(i, [&] {
        for (Index j = 0; j < n; ++j) {
          if (w[j] == 0.0) continue;
          std::fill(f.begin(), f.end(), 0.0);
          if (power) {
            double r2 = 0.0;
            for (Index t = 0; t < d; ++t) {
              z[t] = x(i, t) - x(j, t);
              r2 += z[t] * z[t];
            }
            if (r2 == 0.0) continue;  // F(x, x) = 0
            const double r = std::sqrt(r2);
            const double g = std::pow(r, v.a - 2.0) - std::pow(r, v.b - 2.0);
            for (Index t = 0; t < d; ++t) f[t] = -g * z[t];
          } else {
            v.kernel(&x(i, 0), &x(j, 0), d, f.data());
          }
          for (Index t = 0; t < d; ++t) dx(i, t) += w[j] * f[t];
        }
      });
    }
  }
  errors.rethrow();
}

}  // namespace

void project_tangent(const Matrix& x, Matrix& dx) {
  for (Index i = 0; i < x.rows(); ++i) dx.row(i) -= x.row(i).dot(dx.row(i)) * x.row(i);
}

void normalize_rows(Matrix& x) {
  for (Index i = 0; i < x.rows(); ++i) {
    const double r = x.row(i).norm();
    if (r > 0.0) x.row(i) /= r;
  }
}

void Flow::plain_field(double, const Matrix& x, Matrix& dx, bool project) const {
  switch (options_.kind) {
    case FieldKind::sa:
    case FieldKind::usa:
    case FieldKind::sinkhorn: attention_average(x, dx); break;
    case FieldKind::kuramoto: kuramoto_field(options_, log_w_, x, dx); return;  // angles
    case FieldKind::meanshift: meanshift_field(options_, log_w_, x, dx); break;
    case FieldKind::hardmax: hardmax_field(options_, x, dx); break;
    case FieldKind::vlasov:
      if (options_.vlasov.interaction == Interaction::gaussian)
        gaussian_aggregation(options_.vlasov, log_w_, x, dx);
      else
        pair_interaction(options_.vlasov, options_.weights, x, dx);
      break;
  }
  if (options_.sphere && project) project_tangent(x, dx);
}

void Flow::check_shape(const Matrix& state) const {
  if (state.rows() != rows_ || state.cols() != state_cols())
    throw std::invalid_argument(fmt::format("{}: state has shape ({}, {}), must be ({}, {})", kFieldsCtx,
                                            state.rows(), state.cols(), rows_, state_cols()));
}

void Flow::layer(double t, double h, Matrix& state) const {
  check_shape(state);
  ++diag_.evaluations;
  if (options_.scheme.scheme != Scheme::none) {
    const AverageField average = [this](double, const Matrix& theta, Matrix& a) {
      attention_average(theta, a);
    };
    scheme_layer(options_.scheme, average, t, h, state);
    return;
  }
  Matrix dx(state.rows(), state.cols());
  plain_field(t, state, dx, false);  // no tangent projection: the retraction does the rest
  state += h * dx;
  retract(state);
}

void Flow::field(double t, const Matrix& state, Matrix& dxdt) const {
  check_shape(state);
  ++diag_.evaluations;
  if (options_.scheme.scheme != Scheme::none) {
    const AverageField average = [this](double, const Matrix& theta, Matrix& a) {
      attention_average(theta, a);
    };
    scheme_field(options_.scheme, average, t, state, dxdt);
  } else {
    plain_field(t, state, dxdt);
  }
}

void Flow::retract(Matrix& state) const {
  if (options_.scheme.scheme != Scheme::none) scheme_retract(state);
  else if (options_.sphere && options_.kind != FieldKind::kuramoto) normalize_rows(state);
}

Ode Flow::ode() const {
  return Ode{[this](double t, const Matrix& x, Matrix& dx) { field(t, x, dx); },
             [this](Matrix& x) { retract(x); },
             [this](double t, double h, Matrix& x) { layer(t, h, x); }};
}

Matrix Flow::initial_state(const Matrix& points) const {
  if (points.rows() != rows_ || points.cols() != d_)
    throw std::invalid_argument(fmt::format("{}: initial points have shape ({}, {}), must be ({}, {})",
                                            kFieldsCtx, points.rows(), points.cols(), rows_, d_));
  require_finite(kFieldsCtx, "initial points", points);
  if (options_.scheme.scheme != Scheme::none) return scheme_state(points);
  if (options_.sphere) {
    for (Index i = 0; i < rows_; ++i)
      if (points.row(i).norm() == 0.0)
        throw std::invalid_argument(fmt::format(
            "{}: initial points row {} is zero, must be non-zero on the sphere", kFieldsCtx, first_ + i));
  }
  if (options_.kind == FieldKind::kuramoto) {
    Matrix theta(rows_, 1);
    for (Index i = 0; i < rows_; ++i) theta(i, 0) = std::atan2(points(i, 1), points(i, 0));
    return theta;
  }
  Matrix x = points;
  if (options_.sphere) normalize_rows(x);
  return x;
}

Matrix Flow::positions(const Matrix& state) const {
  if (options_.scheme.scheme != Scheme::none) return scheme_positions(state);
  if (options_.kind == FieldKind::kuramoto) {
    Matrix x(state.rows(), 2);
    for (Index i = 0; i < state.rows(); ++i) {
      x(i, 0) = std::cos(state(i, 0));
      x(i, 1) = std::sin(state(i, 0));
    }
    return x;
  }
  return state;
}

FlowState Flow::initial_flow_state(double t0) const {
  FlowState st;
  st.integrator.t = t0;
  st.integrator.grid_origin = t0;
  st.noise = Rng(options_.noise_seed, options_.noise_stream).state();
  return st;
}

void Flow::advance(Matrix& state, FlowState& st, double t_end, const IntegratorOptions& o) const {
  if (!noisy()) {
    attnflow::advance(ode(), state, st.integrator, t_end, o);
    return;
  }
  o.validate();
  require(o.method == Method::euler, kFieldsCtx, "method", to_string(o.method),
          "euler when kappa > 0 (Euler-Maruyama)");
  IntegratorState& it = st.integrator;
  require(t_end >= it.t, kFieldsCtx, "t_end", t_end, fmt::format(">= current time {}", it.t));
  Rng rng(options_.noise_seed, options_.noise_stream);
  rng.set_state(st.noise);
  const double eps_t = kArrivalSlack * o.dt;  // as in attnflow::advance
  Matrix k(state.rows(), state.cols()), xi(state.rows(), state.cols());
  while (t_end - it.t > eps_t) {
    if (it.steps >= o.max_steps)
      throw std::runtime_error(fmt::format("{}: max_steps = {} reached at t = {}", kFieldsCtx, o.max_steps, it.t));
    const double t = it.grid_origin + static_cast<double>(it.grid_steps) * o.dt;
    const double next = it.grid_origin + static_cast<double>(it.grid_steps + 1) * o.dt;
    const bool full = next <= t_end + eps_t;
    const double h = full ? o.dt : t_end - t;
    // X <- R(X + h drift + sqrt(2 h / kappa) xi): ambient noise then retraction, which on the
    // sphere has the Ito drift -(d - 1)/kappa x of spherical Brownian motion built in.
    field(t, state, k);
    rng.fill_normal(xi);  // row by row from one stream: independent of the thread count
    state += h * k + std::sqrt(2.0 * h / options_.kappa) * xi;
    retract(state);
    if (full) {
      ++it.grid_steps;
      it.t = std::abs(next - t_end) <= eps_t ? t_end : next;
    } else {
      it.grid_origin = t_end;
      it.grid_steps = 0;
      it.t = t_end;
    }
    ++it.steps;
    ++it.evaluations;
    if (!state.allFinite())
      throw std::runtime_error(fmt::format(
          "{}: state is not finite after step {} (t = {}): dt too large for this beta/kappa",
          kFieldsCtx, it.steps, it.t));
  }
  st.noise = rng.state();
}

}  // namespace attnflow
