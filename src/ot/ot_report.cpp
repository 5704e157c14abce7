// solve_ot: the OT report behind `attnflow ot` and attnflow.solve_ot (see
// include/attnflow/ot/ot_report.hpp).
#include "attnflow/ot/ot_report.hpp"

#include <fmt/format.h>

#include <chrono>

#include "attnflow/base/collective.hpp"
#include "attnflow/ot/divergence.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/ot/exact_ot.hpp"

namespace attnflow {

namespace {
constexpr const char* kOtReportCtx = "ot";
}  // namespace

void OtRequest::validate() const {
  if (exact) {
    require(sinkhorn.eps == 0.0, kOtReportCtx, names.eps, sinkhorn.eps,
            fmt::format("0 with {} (exact OT has no regularization)", names.exact));
  } else {
    require(sinkhorn.eps > 0.0, kOtReportCtx, names.eps, sinkhorn.eps,
            fmt::format("> 0 (or use {})", names.exact));
  }
  if (cost != "sqeuclidean" && cost != "euclidean")
    throw_invalid(kOtReportCtx, names.cost, fmt::format("\"{}\"", cost), "sqeuclidean or euclidean");
  if (!exact) {
    if (cost != "sqeuclidean")
      throw_invalid(kOtReportCtx, names.cost, fmt::format("\"{}\"", cost),
                    fmt::format("sqeuclidean with {} (euclidean is available with {})", names.eps,
                                names.exact));
    sinkhorn.validate();
  }
}

void OtRequest::check_measures(const Measure& mu, const Measure& nu) const {
  if (mu.dim() != nu.dim())
    throw std::invalid_argument(fmt::format("{}: {} has dimension {} and {} has dimension {}, must be equal",
                                            kOtReportCtx, names.x, mu.dim(), names.y, nu.dim()));
  // Refuse an oversized plan before spending minutes on the solve.
  const double entries = static_cast<double>(mu.size()) * static_cast<double>(nu.size());
  if (plan && entries > static_cast<double>(kMaxPlanEntries))
    throw std::invalid_argument(fmt::format(
        "{}: {} with n * m = {} * {} = {}, must be <= {} (dense plan; drop {})", kOtReportCtx,
        names.plan, mu.size(), nu.size(), entries, kMaxPlanEntries, names.plan));
}

namespace {

// Exact OT: sqeuclidean (W2^2) or euclidean (W1) cost, dense (size-limited).
void solve_exact(const Measure& mu, const Measure& nu, const OtRequest& request, OtReport& r) {
  r.method = "exact";
  r.p = request.cost == "euclidean" ? 1 : 2;
  ExactOtResult e;
  r.wasserstein = wasserstein(mu, nu, r.p, &e);
  r.cost = e.cost;
  r.objective = e.cost;
  r.marginal_error = e.marginal_error;
  r.converged = e.converged;
  r.message = e.message;
  r.f = e.f;
  r.g = e.g;
  if (request.plan) r.plan = e.dense_plan();
}

void solve_sinkhorn(const TransportCost& cost, const Vector& a, const Vector& b, const OtRequest& request,
                    OtReport& r) {
  r.method = "sinkhorn";
  const SinkhornOptions& opt = request.sinkhorn;
  const SinkhornResult s = sinkhorn(a, b, cost, opt);
  r.cost = s.cost;
  r.objective = s.objective;
  r.iterations = s.iterations;
  r.stages = s.stages;
  r.marginal_error = s.marginal_error;
  r.converged = s.converged;
  r.eps = s.eps;
  r.tol = opt.tol;
  r.eps_scaling = opt.eps_scaling ? opt.scaling : 0.0;
  r.overrelax = opt.overrelax;
  r.max_cost_bound = cost.scale();
  r.message = s.message;
  r.interrupted = s.interrupted;
  r.f = s.f;
  r.g = s.g;
  if (request.plan && !s.interrupted) r.plan = transport_plan(cost, s);
}

}  // namespace

OtReport solve_ot(const Measure& mu, const Measure& nu, const OtRequest& request) {
  request.validate();
  request.check_measures(mu, nu);
  OtReport r;
  r.cost_type = request.cost;
  r.n = mu.size();
  r.m = nu.size();
  r.dim = mu.dim();
  r.has_plan = request.plan;
  const auto t0 = std::chrono::steady_clock::now();
  if (request.exact)
    solve_exact(mu, nu, request, r);
  else
    solve_sinkhorn(TransportCost::sqeuclidean(mu.points(), nu.points()), mu.weights(), nu.weights(), request, r);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

OtReport solve_ot_split(const Matrix& x_part, const Matrix& y_part, Index n, Index m, const Vector& a,
                          const Vector& b, const OtRequest& request, const Collective& comm) {
  request.validate();
  if (request.exact || request.plan)
    throw std::invalid_argument(fmt::format("{}: {} with points split across processes, must be an entropic solve "
                                            "without {} (those hold every point)", kOtReportCtx,
                                            request.exact ? request.names.exact : request.names.plan,
                                            request.names.plan));
  if (request.sinkhorn.comm != &comm)
    throw std::invalid_argument(fmt::format("{}: sinkhorn.comm must be the Collective the points are split across",
                                            kOtReportCtx));
  if (x_part.cols() != y_part.cols())
    throw std::invalid_argument(fmt::format("{}: {} has dimension {} and {} has dimension {}, must be equal",
                                            kOtReportCtx, request.names.x, x_part.cols(), request.names.y,
                                            y_part.cols()));
  OtReport r;
  r.cost_type = request.cost;
  r.n = n;
  r.m = m;
  r.dim = x_part.cols();
  r.points_split = comm.size() > 1;
  // Checked and normalized as Measure does (then normalized again by sinkhorn, as in solve_ot).
  const std::string source = fmt::format("{}: source ({})", kOtReportCtx, request.names.x);
  const std::string target = fmt::format("{}: target ({})", kOtReportCtx, request.names.y);
  const Range mx = kernel_row_parts(n, comm.size())[static_cast<std::size_t>(comm.rank())];
  const Range my = kernel_row_parts(m, comm.size())[static_cast<std::size_t>(comm.rank())];
  require_finite(source, "points", x_part, mx.first);
  require_finite(target, "points", y_part, my.first);
  const Vector wa = normalized_weights(a, n, source);
  const Vector wb = normalized_weights(b, m, target);
  const auto t0 = std::chrono::steady_clock::now();
  solve_sinkhorn(TransportCost::sqeuclidean_split(x_part, y_part, n, m, comm), wa, wb, request, r);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace attnflow
