// Log-domain Sinkhorn with eps-scaling (docs/math.md section 3). Potentials are in cost units;
// each half-step is TransportCost::gibbs, one streaming pass of the kernel.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "attnflow/base/collective.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/ot/ot.hpp"

namespace attnflow {

namespace {
constexpr const char* kSinkhornCtx = "sinkhorn";

// The longest eps-scaling schedule accepted (log(eps_start / eps) / -log(scaling) stages):
// longer ones are refused up front, never an unbounded loop or allocation.
constexpr double kMaxStages = 1e6;

// eps_start, eps_start * scaling, ... (all > eps), then eps itself. Checked before it is built:
// a cost that overflows, an eps so small that C / eps overflows and a schedule longer than
// kMaxStages are errors naming the value.
std::vector<double> eps_schedule(const SinkhornOptions& opt, double cost_scale, bool warm) {
  require(std::isfinite(cost_scale), kSinkhornCtx, "cost scale", cost_scale,
          "finite (the cost overflows: coordinates or beta too large; rescale the points)");
  require(std::isfinite(cost_scale / opt.eps), kSinkhornCtx, "eps", opt.eps,
          fmt::format(">= cost scale / 1.8e308 = {:.3g} (a smaller eps overflows C / eps)",
                      cost_scale / std::numeric_limits<double>::max()));
  std::vector<double> eps;
  if (opt.eps_scaling && !warm) {
    const double start = opt.eps_start > 0.0 ? opt.eps_start : cost_scale;
    if (opt.eps_start == 0.0)
      require(std::isfinite(start) && start > 0.0, kSinkhornCtx, "cost scale (eps_start = 0)", start,
              "finite and > 0 (coordinates too large for the squared cost?)");
    const double stages =
        start > opt.eps ? (std::log(start) - std::log(opt.eps)) / -std::log(opt.scaling) : 0.0;
    if (stages > kMaxStages)
      throw std::invalid_argument(fmt::format(
          "{}: eps-scaling stages = log(eps_start / eps) / -log(scaling) = {:.3g}, must be <= "
          "{:g} (eps_start = {:.3g}, eps = {:.3g}, scaling = {}: raise eps or lower scaling)",
          kSinkhornCtx, stages, kMaxStages, start, opt.eps, opt.scaling));
    // eps_k = eps_{k-1} * scaling exactly; stops where rounding makes no progress (a subnormal
    // eps, where e * scaling can round back to e). max_iterations counts the stages too: a
    // longer schedule keeps its last max_iterations - 1 stages (the largest eps are dropped),
    // so every iteration still ends at the target eps.
    const auto keep = static_cast<std::int64_t>(opt.max_iterations) - 1;
    auto visit_stages = [&](auto&& visit) {
      double e = start;
      for (std::int64_t k = 0; e > opt.eps; ++k) {
        visit(k, e);
        const double next = e * opt.scaling;
        if (!(next < e)) break;
        e = next;
      }
    };
    std::int64_t count = 0;
    visit_stages([&](std::int64_t, double) { ++count; });
    visit_stages([&](std::int64_t k, double e) {
      if (k >= count - keep) eps.push_back(e);
    });
  }
  eps.push_back(opt.eps);
  return eps;
}

void require_warm_start(const Vector& init, Index size, const char* name) {
  if (init.size() != size)
    throw std::invalid_argument(
        fmt::format("{}: {} size = {}, must equal {}", kSinkhornCtx, name, init.size(), size));
  require_finite(kSinkhornCtx, name, init);
}

SinkhornLoop ot_loop(const SinkhornOptions& opt, double cost_scale, bool warm, bool symmetric) {
  SinkhornLoop loop;
  loop.eps = eps_schedule(opt, cost_scale, warm);
  loop.measure = SinkhornLoop::Measure::rows;
  loop.symmetric = symmetric;
  loop.stop_if_not_finite = true;
  loop.context = kSinkhornCtx;
  loop.omega = opt.overrelax;
  loop.resume = opt.resume;
  loop.stop_after = opt.on_checkpoint;
  if (opt.on_iteration) {
    // (iterations so far, eps, error of that plan): stages report NaN; at the target eps the
    // error of iteration k is measured during iteration k + 1.
    const int stages = static_cast<int>(loop.eps.size());
    loop.observer = [&cb = opt.on_iteration, stages](const SinkhornIterate& it) {
      if (it.iteration <= stages) cb(it.iteration, it.eps, std::nan(""));
      else cb(it.iteration - 1, it.eps, it.marginal_error);
    };
  }
  return loop;
}

Vector gather_rows(const Collective& comm, Index rows, const std::function<Vector(Range)>& part);

void finish(SinkhornResult& res, SinkhornRun&& run, const TransportCost& cost, bool symmetric,
            const Collective* comm) {
  const double eps = res.eps;
  res.iterations = run.status.iterations;
  res.marginal_error = run.status.marginal_error;
  res.converged = run.status.converged;
  res.message = run.status.message;
  if (!std::isfinite(res.marginal_error) && !res.converged)
    res.message = fmt::format("sinkhorn: non-finite marginal error after {} iterations "
                              "(eps = {:.3g} too small for the cost scale {:.3g}?)",
                              res.iterations, eps, cost.scale());
  // <C, pi> through the column conditionals (columns sum to b_j exactly after a g-update; for
  // the symmetric plan they sum to the row mass), and the primal objective
  // <C, pi> + eps KL(pi | a (x) b) = <f, row mass> + <g, column mass> for a plan of mass 1.
  const Vector loga = log_weights(res.a);
  TransportCost::Gibbs cols;
  if (!comm) cols = cost.gibbs(true, run.f, loga, eps, true);
  else
    cols.ecost = gather_rows(*comm, cost.cols(), [&](Range r) {
      return cost.gibbs_rows(true, r.first, r.count, run.f, loga, eps, true).ecost;
    });
  if (symmetric) {
    res.cost = run.mass.dot(cols.ecost);
    res.objective = 2.0 * run.f.dot(run.mass);
  } else {
    res.cost = res.b.dot(cols.ecost);
    res.objective = run.f.dot(run.mass) + run.g.dot(res.b);
  }
  // Potentials of zero-weight atoms are finite (soft-min over the other side) but unused.
  res.f = std::move(run.f);
  res.g = std::move(run.g);
  check_output_finite(kSinkhornCtx, "f", res.f.data(), res.f.size(), 1, "eps too small for the cost scale");
  check_output_finite(kSinkhornCtx, "g", res.g.data(), res.g.size(), 1, "eps too small for the cost scale");
}

// Several processes: this one's rows of the half-step, then every part in rank order.
Vector gather_rows(const Collective& comm, Index rows, const std::function<Vector(Range)>& part) {
  const std::vector<Range> parts = kernel_row_parts(rows, comm.size());
  const Vector mine = part(parts[static_cast<std::size_t>(comm.rank())]);
  const std::vector<double> all = allgather_rows(comm, parts, mine.data());
  return Eigen::Map<const Vector>(all.data(), rows);
}

SinkhornHalfStep cost_half_steps(const TransportCost& cost, const Vector& loga, const Vector& logb,
                                 const Collective* comm) {
  return [&cost, &loga, &logb, comm](bool transpose, const Vector& h, double eps) {
    const Vector& logw = transpose ? loga : logb;
    if (!comm) return cost.gibbs(transpose, h, logw, eps, false).softmin;
    return gather_rows(*comm, transpose ? cost.cols() : cost.rows(), [&](Range r) {
      return cost.gibbs_rows(transpose, r.first, r.count, h, logw, eps, false).softmin;
    });
  };
}

// The distributing processes of a solve (null: one process).
const Collective* distributed(const SinkhornOptions& opt) {
  return opt.comm && opt.comm->size() > 1 ? opt.comm : nullptr;
}

// A cost whose points are split across processes is solved by those processes together.
void require_cost_processes(const TransportCost& cost, const SinkhornOptions& opt) {
  if (cost.comm() && cost.comm() != distributed(opt))
    throw std::invalid_argument(fmt::format(
        "{}: comm = {}, must be the Collective the cost's points are split across ({} processes)", kSinkhornCtx,
        opt.comm ? "another Collective" : "null", cost.comm()->size()));
}
}  // namespace

void SinkhornOptions::validate() const {
  require(eps > 0.0 && std::isfinite(eps), kSinkhornCtx, "eps", eps, "> 0 and finite");
  SinkhornControl::validate(kSinkhornCtx);
  require(iterations == 0, kSinkhornCtx, "iterations", iterations,
          "0 (entropic OT runs to tol; cap it with max_iterations)");
  require(scaling > 0.0 && scaling < 1.0, kSinkhornCtx, "scaling", scaling, "in (0, 1)");
  require(eps_start >= 0.0 && std::isfinite(eps_start), kSinkhornCtx, "eps_start", eps_start,
          ">= 0 (0 = the cost scale)");
  require(overrelax > 0.0 && overrelax < 2.0, kSinkhornCtx, "overrelax", overrelax,
          "in (0, 2) (1 = plain Sinkhorn)");
}

SinkhornResult sinkhorn(const Vector& a_in, const Vector& b_in, const TransportCost& cost,
                        const SinkhornOptions& opt, const Vector* g_init) {
  opt.validate();
  require_cost_processes(cost, opt);
  SinkhornResult res;
  res.a = normalized_weights(a_in, cost.rows(), "sinkhorn: a");
  res.b = normalized_weights(b_in, cost.cols(), "sinkhorn: b");
  if (g_init) require_warm_start(*g_init, cost.cols(), "g_init");
  if (g_init && opt.resume)
    throw std::invalid_argument("sinkhorn: g_init and resume both given, must be one (a resume point has its own g)");
  const Vector loga = log_weights(res.a), logb = log_weights(res.b);
  const SinkhornLoop loop = ot_loop(opt, cost.scale(), g_init != nullptr, false);
  res.eps = opt.eps;
  res.stages = static_cast<int>(loop.eps.size());
  SinkhornRun run =
      sinkhorn_loop(cost_half_steps(cost, loga, logb, distributed(opt)), res.a, res.b, opt, loop, g_init);
  if (run.interrupted) {
    res.interrupted = true;
    res.iterations = run.status.iterations;
    res.message = run.status.message;
    res.marginal_error = std::nan("");
    res.f = std::move(run.f);
    res.g = std::move(run.g);
    return res;
  }
  finish(res, std::move(run), cost, false, distributed(opt));
  return res;
}

SinkhornResult sinkhorn_symmetric(const Vector& a_in, const TransportCost& cost,
                                  const SinkhornOptions& opt, const Vector* f_init) {
  opt.validate();
  require_cost_processes(cost, opt);
  if (opt.resume || opt.on_checkpoint)
    throw std::invalid_argument("sinkhorn_symmetric: resume and on_checkpoint are for sinkhorn() only");
  require(opt.overrelax == 1.0, "sinkhorn_symmetric", "overrelax", opt.overrelax,
          "1 (the symmetric update is averaged; over-relaxation is for sinkhorn())");
  if (cost.rows() != cost.cols())
    throw std::invalid_argument(fmt::format(
        "{}: symmetric cost is {} x {}, must be square", kSinkhornCtx, cost.rows(), cost.cols()));
  SinkhornResult res;
  res.a = normalized_weights(a_in, cost.rows(), "sinkhorn: a");
  res.b = res.a;
  if (f_init) require_warm_start(*f_init, cost.rows(), "f_init");
  const Vector loga = log_weights(res.a);
  const SinkhornLoop loop = ot_loop(opt, cost.scale(), f_init != nullptr, true);
  res.eps = opt.eps;
  res.stages = static_cast<int>(loop.eps.size());
  finish(res, sinkhorn_loop(cost_half_steps(cost, loga, loga, distributed(opt)), res.a, res.a, opt, loop, f_init),
         cost, true, distributed(opt));
  return res;
}

SinkhornResult sinkhorn(const Measure& mu, const Measure& nu, const SinkhornOptions& options) {
  return sinkhorn(mu.weights(), nu.weights(), TransportCost::sqeuclidean(mu.points(), nu.points()),
                  options);
}

}  // namespace attnflow
