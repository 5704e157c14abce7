// Normalization schemes (scheme.hpp, docs/math.md section 5) as wrappers of an average field on
// the state [theta | r] (n, d + 1).
#include "attnflow/flow/scheme.hpp"

#include <cctype>
#include <cmath>

#include "attnflow/base/error.hpp"

namespace attnflow {

namespace {
constexpr const char* kSchemeCtx = "flow";
}

Scheme parse_scheme(std::string_view name, std::string_view context, std::string_view field) {
  std::string s(name);
  for (char& c : s) c = c == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (s == "none") return Scheme::none;
  if (s == "post_ln" || s == "post") return Scheme::post_ln;
  if (s == "pre_ln" || s == "pre") return Scheme::pre_ln;
  if (s == "mix_ln" || s == "mix") return Scheme::mix_ln;
  if (s == "peri_ln" || s == "peri") return Scheme::peri_ln;
  if (s == "ngpt") return Scheme::ngpt;
  if (s == "sqrt" || s == "sqrt_scaling") return Scheme::sqrt_scaling;
  throw_invalid(context, field, fmt::format("\"{}\"", name),
                "one of none, post_ln, pre_ln, mix_ln, peri_ln, ngpt, sqrt");
}

std::string to_string(Scheme scheme) {
  switch (scheme) {
    case Scheme::none: return "none";
    case Scheme::post_ln: return "post_ln";
    case Scheme::pre_ln: return "pre_ln";
    case Scheme::mix_ln: return "mix_ln";
    case Scheme::peri_ln: return "peri_ln";
    case Scheme::ngpt: return "ngpt";
    case Scheme::sqrt_scaling: return "sqrt";
  }
  return "?";
}

void SchemeOptions::validate() const {
  require(tau >= 0.0 && std::isfinite(tau), kSchemeCtx, "scheme.tau", tau, ">= 0");
  require(alpha > 0.0 && std::isfinite(alpha), kSchemeCtx, "scheme.alpha", alpha, "> 0");
}

void scheme_rates(const SchemeOptions& o, double t, const Matrix& theta, const Vector& r,
                  const Matrix& a, Matrix& dtheta, Vector& dr) {
  const Index n = theta.rows();
  dtheta.resize(n, theta.cols());
  dr.resize(n);
  Scheme s = o.scheme;
  if (s == Scheme::mix_ln) s = t < o.tau ? Scheme::post_ln : Scheme::pre_ln;
  for (Index i = 0; i < n; ++i) {
    const double ta = theta.row(i).dot(a.row(i));  // <theta, A>
    const double na = a.row(i).norm();             // |A|
    auto pa = dtheta.row(i);
    pa = a.row(i) - ta * theta.row(i);  // P_theta A
    switch (s) {
      case Scheme::none:
      case Scheme::post_ln: dr[i] = 0.0; break;
      case Scheme::pre_ln:
        pa /= r[i];
        dr[i] = ta;
        break;
      case Scheme::peri_ln:
        if (na > 0.0) {
          pa /= r[i] * na;
          dr[i] = ta / na;
        } else {
          pa.setZero();
          dr[i] = 0.0;
        }
        break;
      case Scheme::ngpt:
        if (na > 0.0) pa *= o.alpha / na;
        else pa.setZero();
        dr[i] = 0.0;
        break;
      case Scheme::sqrt_scaling:
        pa /= std::sqrt(t + 1.0);
        dr[i] = 0.0;
        break;
      case Scheme::mix_ln: break;  // resolved above
    }
  }
}

void scheme_field(const SchemeOptions& o, const AverageField& average, double t,
                  const Matrix& state, Matrix& dxdt) {
  const Index d = state.cols() - 1;
  const Matrix theta = state.leftCols(d);
  const Vector r = state.col(d);
  Matrix a(state.rows(), d), dtheta;
  Vector dr;
  average(t, theta, a);
  scheme_rates(o, t, theta, r, a, dtheta, dr);
  dxdt.resize(state.rows(), state.cols());
  dxdt.leftCols(d) = dtheta;
  dxdt.col(d) = dr;
}

void scheme_layer(const SchemeOptions& o, const AverageField& average, double t, double h,
                  Matrix& state) {
  const Index n = state.rows(), d = state.cols() - 1;
  const Matrix theta = state.leftCols(d);
  Matrix a(n, d);
  average(t, theta, a);
  Scheme s = o.scheme;
  if (s == Scheme::mix_ln) s = t < o.tau ? Scheme::post_ln : Scheme::pre_ln;
  Eigen::RowVectorXd y(d);
  for (Index i = 0; i < n; ++i) {
    const double r = state(i, d);
    const double na = a.row(i).norm();
    bool radial = false;  // the layer acts on x = r theta (the radius changes)
    switch (s) {
      case Scheme::none:
      case Scheme::post_ln: y = theta.row(i) + h * a.row(i); break;
      case Scheme::pre_ln:
        y = r * theta.row(i) + h * a.row(i);
        radial = true;
        break;
      case Scheme::peri_ln:
        y = r * theta.row(i);
        if (na > 0.0) y += (h / na) * a.row(i);
        radial = true;
        break;
      case Scheme::ngpt:
        y = theta.row(i);
        if (na > 0.0) y += (o.alpha * h) * (a.row(i) / na - theta.row(i));
        break;
      case Scheme::sqrt_scaling: y = theta.row(i) + (h / std::sqrt(t + 1.0)) * a.row(i); break;
      case Scheme::mix_ln: break;  // resolved above
    }
    const double ny = y.norm();
    if (ny > 0.0) state.row(i).head(d) = y / ny;
    if (radial) state(i, d) = ny;
  }
}

void scheme_retract(Matrix& state) {
  const Index d = state.cols() - 1;
  for (Index i = 0; i < state.rows(); ++i) {
    const double nt = state.row(i).head(d).norm();
    if (nt > 0.0) state.row(i).head(d) /= nt;
  }
}

Ode scheme_ode(AverageField average, const SchemeOptions& options) {
  options.validate();
  return Ode{[average, options](double t, const Matrix& x, Matrix& dx) {
               scheme_field(options, average, t, x, dx);
             },
             [](Matrix& x) { scheme_retract(x); },
             [average, options](double t, double h, Matrix& x) {
               scheme_layer(options, average, t, h, x);
             }};
}

Matrix scheme_state(const Matrix& x) {
  Matrix s(x.rows(), x.cols() + 1);
  for (Index i = 0; i < x.rows(); ++i) {
    const double r = x.row(i).norm();
    if (!(r > 0.0))
      throw std::invalid_argument(fmt::format(
          "{}: initial state row {} has |x| = {}, must be > 0 (x = r theta)", kSchemeCtx, i, r));
    s.row(i).head(x.cols()) = x.row(i) / r;
    s(i, x.cols()) = r;
  }
  return s;
}

Matrix scheme_positions(const Matrix& state) {
  const Index d = state.cols() - 1;
  Matrix x(state.rows(), d);
  for (Index i = 0; i < state.rows(); ++i) x.row(i) = state(i, d) * state.row(i).head(d);
  return x;
}

}  // namespace attnflow
