// The OT report: one entropic (log-domain Sinkhorn, eps-scaling) or exact (network simplex)
// transport between two weighted point clouds, with everything `attnflow ot` writes to
// report.json (docs/math.md section 3). The CLI and Python call solve_ot and get the same
// OtReport; its JSON form (keys of report.json) is ot_report_json in run/reports.hpp.
#pragma once

#include <string>

#include "attnflow/measure/measure.hpp"
#include "attnflow/ot/ot.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

struct OtRequest {
  // sqeuclidean: C = |x - y|^2 (entropic or exact, W2^2); euclidean: C = |x - y| (exact only, W1).
  std::string cost = "sqeuclidean";
  bool exact = false;  // network simplex instead of Sinkhorn (sinkhorn.eps must then stay 0)
  bool plan = false;   // also return the dense plan (n * m <= kMaxPlanEntries)
  // The entropic solve: eps (> 0 unless exact), tol, max_iterations, eps_scaling, scaling,
  // on_iteration (progress); defaults are SinkhornOptions'.
  SinkhornOptions sinkhorn;
  // How messages name the request's fields ("ot: eps = 0, must be > 0 (or use exact)"); the
  // CLI names its flags ("--eps", "--exact", ...).
  struct Names {
    std::string eps = "eps", exact = "exact", cost = "cost", plan = "plan", x = "x", y = "y";
  } names;

  // eps / cost / the Sinkhorn options (the rules of the request alone, before any data).
  void validate() const;
  // The rules between the request and the two measures: equal dimensions, plan size.
  void check_measures(const Measure& mu, const Measure& nu) const;
};

struct OtReport {
  std::string method;       // "sinkhorn" | "exact"
  std::string cost_type;    // OtRequest::cost
  double cost = 0.0;        // <C, pi>
  double objective = 0.0;   // entropic objective (exact: = cost)
  int iterations = 0;       // Sinkhorn iterations, scaling stages included (exact: 0)
  int stages = 0;           // eps values visited (exact: 0, not reported)
  double marginal_error = 0.0;
  bool converged = false;   // not converging is a status, never an exception
  double eps = 0.0;         // the target eps (exact: 0)
  double tol = 0.0;         // Sinkhorn only
  double eps_scaling = 0.0; // the scaling factor used, 0 without eps-scaling (Sinkhorn only)
  double overrelax = 0.0;   // SinkhornOptions::overrelax used (Sinkhorn only; 1 = plain)
  double max_cost_bound = 0.0;  // the cost scale max C bound (Sinkhorn only)
  int p = 0;                // exact: 2 for sqeuclidean (W2), 1 for euclidean (W1); 0 otherwise
  double wasserstein = 0.0; // exact: W_p
  std::string message;      // why not converged (empty when converged)
  Index n = 0, m = 0, dim = 0;
  double seconds = 0.0;     // wall time of the solve
  bool has_plan = false;
  bool points_split = false;    // the points were split across processes (solve_ot_split)
  // request.sinkhorn.on_checkpoint stopped the solve: f, g and iterations are a resume point,
  // the rest is not computed (run_ot_job keeps the checkpoint and writes nothing else).
  bool interrupted = false;
  Vector f, g;              // potentials in cost units
  Matrix plan;              // (n, m) when has_plan, else empty
};

// Validates the request and the measures (in that order), then solves. Throws
// std::invalid_argument for bad input; non-convergence is reported in the result.
OtReport solve_ot(const Measure& mu, const Measure& nu, const OtRequest& request);
// The entropic solve (sqeuclidean, no plan) with the points split across the processes of
// `comm` (collective.hpp), for problems whose points outgrow one machine: this process passes
// its parts, rows kernel_row_parts(n, P)[rank] of x and of y (m rows), and the whole weights a
// (n) and b (m) (empty: uniform). Every process gets the report of solve_ot on the whole points,
// bit for bit (seconds aside; `points_split` set). request.sinkhorn.comm must be `comm`. Points per
// process: its parts plus one block of the other side (TransportCost::sqeuclidean_split).
OtReport solve_ot_split(const Matrix& x_part, const Matrix& y_part, Index n, Index m, const Vector& a,
                          const Vector& b, const OtRequest& request, const Collective& comm);

}  // namespace attnflow
