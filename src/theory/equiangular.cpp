// Equiangular ODEs (docs/math.md section 6) for SA/USA under each normalization scheme.
// State (1, 2): [u = 1 - rho, r]. Writing q = e^{-beta u}, both models share
//   a = s, b = s q   (attention weight on itself / on each other token),
//   s = 1 / (1 + (n - 1) q) (SA),  s = e^beta / n (USA),
// so that with primed quantities free of the scale s (no overflow for large beta):
//   post-LN drho/dt = s base',  base' = 2 q u (1 + (n - 1) rho)
//   <theta, A> = s (1 + (n - 1) q rho),  |A| = s sqrt(1 + (n-1) q^2 + (n-1) rho (2 q + (n-2) q^2)).
#include "attnflow/theory/equiangular.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "attnflow/theory/cluster_theory.hpp"  // kUsaBetaMax
#include "attnflow/base/error.hpp"
#include "attnflow/flow/integrate.hpp"

namespace attnflow {

namespace {
constexpr const char* kEquiangularCtx = "theory equiangular";

std::string normalized_name(std::string_view name) {
  std::string s(name);
  std::replace(s.begin(), s.end(), '_', '-');
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Scale s of the attention weights at u (see the file comment).
double weight_scale(const EquiangularOptions& o, double q) {
  if (o.model == TheoryModel::sa) return 1.0 / (1.0 + static_cast<double>(o.n - 1) * q);
  return std::exp(o.beta - std::log(static_cast<double>(o.n)));
}
}  // namespace

TheoryModel parse_theory_model(std::string_view name, std::string_view context) {
  const std::string s = normalized_name(name);
  if (s == "sa") return TheoryModel::sa;
  if (s == "usa") return TheoryModel::usa;
  throw_invalid(context, "model", std::string(name), "one of sa, usa");
}

std::string to_string(TheoryModel m) { return m == TheoryModel::sa ? "sa" : "usa"; }

std::string to_string(DecayKind k) {
  switch (k) {
    case DecayKind::exponential: return "exponential";
    case DecayKind::power: return "power";
    case DecayKind::stretched: return "stretched";
  }
  return "?";
}

void EquiangularOptions::validate() const {
  require(n >= 2, kEquiangularCtx, "n", n, ">= 2");
  require(std::isfinite(beta) && beta > 0.0, kEquiangularCtx, "beta", beta, "> 0 and finite");
  const double rho_min = -1.0 / static_cast<double>(n - 1);
  require(std::isfinite(rho0) && rho0 >= rho_min && rho0 <= 1.0, kEquiangularCtx, "rho0", rho0,
          fmt::format("in [-1/(n-1), 1] = [{}, 1] (a Gram matrix must be PSD)", rho_min));
  require(std::isfinite(r0) && r0 > 0.0, kEquiangularCtx, "r0", r0, "> 0");
  require(std::isfinite(tau) && tau >= 0.0, kEquiangularCtx, "tau", tau, ">= 0");
  require(std::isfinite(alpha) && alpha > 0.0, kEquiangularCtx, "alpha", alpha, "> 0");
  require(std::isfinite(rtol) && rtol > 0.0, kEquiangularCtx, "rtol", rtol, "> 0");
  require(scheme != Scheme::none, kEquiangularCtx, "scheme", "\"none\"",
          "a normalization scheme (the equiangular reduction is on the sphere)");
  require(std::isfinite(atol) && atol > 0.0, kEquiangularCtx, "atol", atol, "> 0");
}

namespace {
// `pre_phase` selects pre-LN for mix-LN (after tau); other schemes ignore it.
EquiangularRates rates_impl(const EquiangularOptions& o, double t, double u, double r,
                                   bool pre_phase) {
  const double rho = 1.0 - u;
  const double nm1 = static_cast<double>(o.n - 1);
  const double q = std::exp(-o.beta * u);
  const double s = weight_scale(o, q);
  const double base = 2.0 * q * u * (1.0 + nm1 * rho);
  const double theta_a = 1.0 + nm1 * q * rho;
  const double norm_a =
      std::sqrt(1.0 + nm1 * q * q + nm1 * rho * (2.0 * q + (nm1 - 1.0) * q * q));
  switch (o.scheme) {
    case Scheme::post_ln: return {-s * base, 0.0};
    case Scheme::pre_ln: return {-s * base / r, s * theta_a};
    case Scheme::mix_ln:
      return pre_phase ? EquiangularRates{-s * base / r, s * theta_a} : EquiangularRates{-s * base, 0.0};
    case Scheme::peri_ln: return {-base / (r * norm_a), theta_a / norm_a};
    case Scheme::ngpt: return {-o.alpha * base / norm_a, 0.0};
    case Scheme::sqrt_scaling: return {-s * base / std::sqrt(t + 1.0), 0.0};
    case Scheme::none: break;  // refused by validate()
  }
  return {0.0, 0.0};
}
}  // namespace

EquiangularRates equiangular_rates(const EquiangularOptions& o, double t, double u, double r) {
  return rates_impl(o, t, u, r, o.scheme == Scheme::mix_ln && t >= o.tau);
}

EquiangularSolution solve_equiangular(const EquiangularOptions& o, const Vector& times) {
  o.validate();
  require(times.size() >= 1, kEquiangularCtx, "times.size()", times.size(), ">= 1");
  require_finite(kEquiangularCtx, "times", times);
  require(times[0] >= 0.0, kEquiangularCtx, "times[0]", times[0], ">= 0");
  for (Index i = 1; i < times.size(); ++i)
    require(times[i] >= times[i - 1], kEquiangularCtx, fmt::format("times[{}]", i), times[i],
            fmt::format(">= times[{}] = {}", i - 1, times[i - 1]));

  // Two phases so that mix-LN's switch at tau is a step boundary, never inside a step.
  auto make_ode = [&o](bool pre_phase) {
    return Ode{[&o, pre_phase](double t, const Matrix& x, Matrix& dx) {
                 const EquiangularRates r = rates_impl(o, t, x(0, 0), x(0, 1), pre_phase);
                 dx(0, 0) = r.du;
                 dx(0, 1) = r.dr;
               },
               nullptr};
  };
  const Ode post_ode = make_ode(false), pre_ode = make_ode(true);
  const bool mix = o.scheme == Scheme::mix_ln;

  IntegratorOptions io;
  io.method = Method::dopri5;
  io.rtol = o.rtol;
  io.atol = o.atol;
  // First trial step: a small fraction of the fastest time scale 1/lambda0 (dopri5 adapts).
  io.dt = std::min(1e-2, 1e-2 / (o.model == TheoryModel::usa ? std::exp(std::min(o.beta, kUsaBetaMax)) : 1.0));
  io.dt_min = 1e-300;

  Matrix x(1, 2);
  x << 1.0 - o.rho0, o.r0;
  IntegratorState st;
  EquiangularSolution sol;
  const Index m = times.size();
  sol.t = times;
  sol.rho.resize(m);
  sol.one_minus_rho.resize(m);
  sol.r.resize(m);
  for (Index i = 0; i < m; ++i) {
    const double target = times[i];
    if (mix && st.t < o.tau && target > o.tau) advance(post_ode, x, st, o.tau, io);
    const bool pre_phase = mix && st.t >= o.tau;
    if (target > st.t) advance(pre_phase ? pre_ode : post_ode, x, st, target, io);
    sol.one_minus_rho[i] = x(0, 0);
    sol.rho[i] = 1.0 - x(0, 0);
    sol.r[i] = x(0, 1);
  }
  sol.steps = st.steps;
  sol.rejected = st.rejected;
  sol.evaluations = st.evaluations;
  check_output_finite(kEquiangularCtx, "rho", sol.rho.data(), m, 1,
                      "USA speed e^beta overflowed (beta too large for the unnormalized model)");
  check_output_finite(kEquiangularCtx, "r", sol.r.data(), m, 1, "the radius overflowed");
  return sol;
}

DecayLaw linearized_law(const EquiangularOptions& o) {
  o.validate();
  // lambda0: the post-LN rate at rho = 1, 2 s(u = 0) n: 2 for SA, 2 e^beta for USA.
  const bool sa = o.model == TheoryModel::sa;
  const double lambda0 = sa ? 2.0 : 2.0 * std::exp(o.beta);
  const std::string lam = sa ? "2" : fmt::format("2 e^beta = {:.6g}", lambda0);
  switch (o.scheme) {
    case Scheme::post_ln:
      return {DecayKind::exponential, lambda0, fmt::format("1 - rho ~ C exp(-{} t)", lam)};
    case Scheme::pre_ln:
    case Scheme::mix_ln:
    case Scheme::peri_ln:
      return {DecayKind::power, 2.0, "1 - rho ~ C r^-2 ~ C' t^-2 (r grows linearly in t)"};
    case Scheme::ngpt:
      return {DecayKind::exponential, 2.0 * o.alpha,
              fmt::format("1 - rho ~ C exp(-2 alpha t), alpha = {:.6g}", o.alpha)};
    case Scheme::sqrt_scaling:
      return {DecayKind::stretched, 2.0 * lambda0,
              fmt::format("1 - rho ~ C exp(-2 ({}) sqrt(t + 1))", lam)};
    case Scheme::none: break;  // refused by validate()
  }
  return {};
}

double decay_variable(DecayKind kind, double t, double r) {
  switch (kind) {
    case DecayKind::exponential: return t;
    case DecayKind::power: return std::log(r);
    case DecayKind::stretched: return std::sqrt(t + 1.0);
  }
  return t;
}

}  // namespace attnflow
