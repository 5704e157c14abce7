// Log-domain Sinkhorn with eps-scaling (SPEC.md section 3). Potentials are in cost units;
// each half-step is TransportCost::gibbs, one streaming pass of the kernel.
#include <cmath>
#include <limits>
#include <vector>

#include "attnflow/error.hpp"
#include "attnflow/ot.hpp"

namespace attnflow {

namespace {
constexpr const char* kCtx = "sinkhorn";

Vector log_of(const Vector& w) {
  Vector lw(w.size());
  for (Index i = 0; i < w.size(); ++i)
    lw[i] = w[i] > 0.0 ? std::log(w[i]) : -std::numeric_limits<double>::infinity();
  return lw;
}

// The longest eps-scaling schedule accepted (log(eps_start / eps) / -log(scaling) stages).
constexpr double kMaxStages = 1e6;

// eps_start, eps_start * scaling, ... (all > eps), then eps itself. Checked before it is
// built (issue 14, H1): a cost that overflows, an eps so small that C / eps overflows and a
// schedule longer than kMaxStages are errors naming the value, never an unbounded loop.
std::vector<double> eps_schedule(const SinkhornOptions& opt, double cost_scale, bool warm) {
  require(std::isfinite(cost_scale), kCtx, "cost scale", cost_scale,
          "finite (the cost overflows: coordinates or beta too large; rescale the points)");
  require(std::isfinite(cost_scale / opt.eps), kCtx, "eps", opt.eps,
          fmt::format(">= cost scale / 1.8e308 = {:.3g} (a smaller eps overflows C / eps)",
                      cost_scale / std::numeric_limits<double>::max()));
  std::vector<double> eps;
  if (opt.eps_scaling && !warm) {
    const double start = opt.eps_start > 0.0 ? opt.eps_start : cost_scale;
    const double stages = std::log(start / opt.eps) / -std::log(opt.scaling);
    if (stages > kMaxStages)
      throw std::invalid_argument(fmt::format(
          "{}: eps-scaling stages = log(eps_start / eps) / -log(scaling) = {:.3g}, must be <= "
          "{:g} (eps_start = {:.3g}, eps = {:.3g}, scaling = {}: raise eps or lower scaling)",
          kCtx, stages, kMaxStages, start, opt.eps, opt.scaling));
    for (double e = start; e > opt.eps; e *= opt.scaling) {
      eps.push_back(e);
      if (!(e * opt.scaling < e)) break;  // rounding stalls among subnormals: stop there
    }
  }
  eps.push_back(opt.eps);
  return eps;
}

// sum_i a_i |exp((f_i - f_new_i) / eps) - 1|: the row-marginal violation of the plan (f, g),
// since the next f-update f_new is exactly what rescales row i by that factor.
double row_violation(const Vector& a, const Vector& f, const Vector& f_new, double eps,
                     Vector& row_mass) {
  row_mass.resize(a.size());
  double err = 0.0;
  for (Index i = 0; i < a.size(); ++i) {
    row_mass[i] = a[i] == 0.0 ? 0.0 : a[i] * std::exp((f[i] - f_new[i]) / eps);
    err += std::abs(row_mass[i] - a[i]);
  }
  return err;
}
void require_warm_start(const Vector& g_init, Index m) {
  if (g_init.size() != m)
    throw std::invalid_argument(
        fmt::format("{}: g_init size = {}, must equal m = {}", kCtx, g_init.size(), m));
  require_finite(kCtx, "g_init", g_init);
}
}  // namespace

void SinkhornOptions::validate() const {
  require(eps > 0.0 && std::isfinite(eps), kCtx, "eps", eps, "> 0 and finite");
  require(tol > 0.0 && std::isfinite(tol), kCtx, "tol", tol, "> 0");
  require(max_iterations >= 1, kCtx, "max_iterations", max_iterations, ">= 1");
  require(scaling > 0.0 && scaling < 1.0, kCtx, "scaling", scaling, "in (0, 1)");
  require(eps_start >= 0.0 && std::isfinite(eps_start), kCtx, "eps_start", eps_start,
          ">= 0 (0 = the cost scale)");
}

SinkhornResult sinkhorn(const Vector& a_in, const Vector& b_in, const TransportCost& cost,
                        const SinkhornOptions& opt, const Vector* g_init) {
  opt.validate();
  SinkhornResult res;
  res.a = normalized_weights(a_in, cost.rows(), "sinkhorn: a");
  res.b = normalized_weights(b_in, cost.cols(), "sinkhorn: b");
  if (g_init) require_warm_start(*g_init, cost.cols());
  const Vector loga = log_of(res.a), logb = log_of(res.b);
  std::vector<double> schedule = eps_schedule(opt, cost.scale(), g_init != nullptr);
  // max_iterations counts the stages too: a longer schedule keeps its last max_iterations
  // stages (the largest eps are dropped), so every iteration still ends at the target eps.
  if (schedule.size() > static_cast<size_t>(opt.max_iterations))
    schedule.erase(schedule.begin(), schedule.end() - opt.max_iterations);
  res.eps = opt.eps;
  res.stages = static_cast<int>(schedule.size());

  Vector g = g_init ? *g_init : Vector::Zero(cost.cols());
  Vector f;
  // One iteration per intermediate eps (warm start of the next stage), then the target eps.
  for (const double e : schedule) {
    f = cost.gibbs(false, g, logb, e, false).softmin;
    g = cost.gibbs(true, f, loga, e, false).softmin;
    ++res.iterations;
    if (opt.on_iteration) opt.on_iteration(res.iterations, e, std::nan(""));
  }
  const double eps = opt.eps;
  Vector row_mass;
  for (;;) {
    // After a g-update the columns of pi sum to b exactly; the next f-update measures rows.
    const Vector f_new = cost.gibbs(false, g, logb, eps, false).softmin;
    res.marginal_error = row_violation(res.a, f, f_new, eps, row_mass);
    if (!std::isfinite(res.marginal_error)) {
      res.message = fmt::format("sinkhorn: non-finite marginal error after {} iterations "
                                "(eps = {:.3g} too small for the cost scale {:.3g}?)",
                                res.iterations, eps, cost.scale());
      break;
    }
    if (res.marginal_error <= opt.tol) {
      res.converged = true;
      break;
    }
    if (res.iterations >= opt.max_iterations) {
      res.message = fmt::format("sinkhorn: not converged after {} iterations (marginal error "
                                "{:.3g} > tol {:.3g})", res.iterations, res.marginal_error, opt.tol);
      break;
    }
    if (opt.on_iteration) opt.on_iteration(res.iterations, eps, res.marginal_error);
    f = f_new;
    g = cost.gibbs(true, f, loga, eps, false).softmin;
    ++res.iterations;
  }
  // <C, pi> through the column conditionals (exact: columns sum to b_j), and the primal
  // objective <C, pi> + eps KL(pi | a (x) b) = <f, row_mass> + <g, b> for a plan of mass 1.
  const TransportCost::Gibbs cols = cost.gibbs(true, f, loga, eps, true);
  res.cost = res.b.dot(cols.ecost);
  res.objective = f.dot(row_mass) + g.dot(res.b);
  // Potentials of zero-weight atoms are finite (soft-min over the other side) but unused.
  res.f = std::move(f);
  res.g = std::move(g);
  check_output_finite(kCtx, "f", res.f.data(), res.f.size(), 1, "eps too small for the cost scale");
  check_output_finite(kCtx, "g", res.g.data(), res.g.size(), 1, "eps too small for the cost scale");
  return res;
}

SinkhornResult sinkhorn(const Measure& mu, const Measure& nu, const SinkhornOptions& options) {
  return sinkhorn(mu.weights(), nu.weights(), TransportCost::sqeuclidean(mu.points(), nu.points()),
                  options);
}

}  // namespace attnflow
