// The Sinkhorn engine (sinkhorn.hpp): iteration order, eps-scaling, symmetric update,
// marginal error, stopping rule, observer and status, for every Sinkhorn solve in attnflow.
#include <algorithm>
#include <cmath>
#include <limits>

#include "attnflow/base/collective.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "attnflow/ot/sinkhorn.hpp"

namespace attnflow {

void SinkhornControl::validate(std::string_view context, std::string_view prefix) const {
  require(iterations >= 0, context, fmt::format("{}iterations", prefix), iterations,
          ">= 0 (0 = to tol)");
  require(tol > 0.0 && std::isfinite(tol), context, fmt::format("{}tol", prefix), tol,
          "> 0 and finite");
  require(max_iterations >= 1 && max_iterations <= kMaxSinkhornIterations, context,
          fmt::format("{}max_iterations", prefix), max_iterations, "in [1, 1e8]");
}

void SinkhornStats::add(const SinkhornStatus& status) {
  ++solves;
  max_iterations = std::max(max_iterations, status.iterations);
  if (std::isfinite(status.marginal_error))
    max_marginal_error = std::max(max_marginal_error, status.marginal_error);
  if (!status.converged) {
    if (not_converged == 0) message = status.message;
    ++not_converged;
  }
}

void SinkhornStats::merge(const SinkhornStats& other) {
  if (not_converged == 0 && other.not_converged > 0) message = other.message;
  solves += other.solves;
  not_converged += other.not_converged;
  max_iterations = std::max(max_iterations, other.max_iterations);
  max_marginal_error = std::max(max_marginal_error, other.max_marginal_error);
}

namespace {

// sum_i |w_i exp((p_i - p_new_i) / eps) - w_i|: the violation of the marginal whose half-step
// moves p to p_new, since that half-step rescales atom i's mass by exactly that factor.
// Fills mass_i = w_i exp((p_i - p_new_i) / eps) (0 for zero weights).
double violation(const Vector& w, const Vector& p, const Vector& p_new, double eps, Vector& mass) {
  mass.resize(w.size());
  double err = 0.0;
  for (Index i = 0; i < w.size(); ++i) {
    mass[i] = w[i] == 0.0 ? 0.0 : w[i] * std::exp((p[i] - p_new[i]) / eps);
    err += std::abs(mass[i] - w[i]);
  }
  return err;
}

}  // namespace

std::string sinkhorn_not_converged_message(std::string_view context, int iterations, double marginal_error,
                                           double tol) {
  return fmt::format("{}: not converged after {} iterations (marginal error {:.3g} > tol {:.3g})", context,
                     iterations, marginal_error, tol);
}

SinkhornRun sinkhorn_loop(const SinkhornHalfStep& softmin, const Vector& a, const Vector& b,
                          const SinkhornControl& control, const SinkhornLoop& loop,
                          const Vector* g0) {
  if (loop.eps.empty()) throw std::invalid_argument("sinkhorn_loop: empty eps schedule");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const int stages = static_cast<int>(loop.eps.size());
  const double eps = loop.eps.back();
  const bool fixed = control.iterations > 0;
  const int max_it = fixed ? control.iterations : control.max_iterations;
  const bool rows = loop.measure == SinkhornLoop::Measure::rows;
  const Vector& w = rows ? a : b;  // weights of the measured side

  SinkhornRun run;
  SinkhornStatus& st = run.status;
  st = SinkhornStatus{};
  bool measured = false, stopped = false;
  // Accepts a measurement; true when the run stops here (tol reached or non-finite error).
  auto measure = [&](const Vector& p, const Vector& p_new) {
    st.marginal_error = violation(w, p, p_new, eps, run.mass);
    measured = true;
    if (loop.stop_if_not_finite && !std::isfinite(st.marginal_error)) {
      st.converged = false;
      st.message = fmt::format("{}: non-finite marginal error after {} iterations", loop.context,
                               st.iterations);
      return true;
    }
    if (!fixed && st.marginal_error <= control.tol) {
      st.converged = true;
      return true;
    }
    return false;
  };
  auto observe = [&](int it, double e, const Vector& f, const Vector& g, double err, bool relaxed = false) {
    if (loop.observer) loop.observer(SinkhornIterate{it, e, f, g, err, relaxed});
  };

  if (loop.resume && (loop.symmetric || !rows))
    throw std::invalid_argument("sinkhorn_loop: resume is for alternating updates with the rows measured");
  const double omega = loop.omega;
  if (omega != 1.0 && (loop.symmetric || !rows))
    throw std::invalid_argument(fmt::format(
        "sinkhorn_loop: omega = {}, must be 1 unless the updates alternate with the rows measured", omega));
  // Offers the iterate to stop_after; true: the run ends here, interrupted.
  auto interrupt = [&](int it, double e, const Vector& f, const Vector& g, double err, bool relaxed = false) {
    if (!loop.stop_after || !loop.stop_after(SinkhornIterate{it, e, f, g, err, relaxed})) return false;
    run.interrupted = true;
    return true;
  };

  if (loop.symmetric) {
    Vector& f = run.f;
    f = g0 ? *g0 : Vector::Zero(a.size());
    for (int it = 1; it <= max_it && !stopped; ++it) {
      const double e = loop.eps[static_cast<size_t>(std::min(it, stages) - 1)];
      const Vector f_alt = softmin(false, f, e);
      double err = nan;
      if (it > stages) {
        stopped = measure(f, f_alt);
        err = st.marginal_error;
        if (stopped) break;
      }
      f = 0.5 * (f + f_alt);
      st.iterations = it;
      observe(it, e, f, f, err);
      if (interrupt(it, e, f, f, err)) break;
    }
    if (!stopped && !run.interrupted && (!fixed || loop.final_check)) measure(f, softmin(false, f, eps));
    run.g = f;
  } else {
    Vector& f = run.f;
    Vector& g = run.g;
    g = g0 ? *g0 : Vector::Zero(b.size());
    bool have_f = false;
    bool relaxed = false;  // g is over-relaxed: the columns of (f, g) are not exact
    int first = 1;
    if (loop.resume) {
      if (loop.resume->f.size() != a.size() || loop.resume->g.size() != b.size() || loop.resume->iteration < 1)
        throw std::invalid_argument(fmt::format(
            "sinkhorn_loop: resume point of {} iterations with f ({}), g ({}), must be >= 1 with f ({}), g ({})",
            loop.resume->iteration, loop.resume->f.size(), loop.resume->g.size(), a.size(), b.size()));
      f = loop.resume->f;
      g = loop.resume->g;
      relaxed = loop.resume->relaxed;
      have_f = true;
      first = loop.resume->iteration + 1;
      st.iterations = loop.resume->iteration;
    }
    for (int it = first; it <= max_it && !stopped; ++it) {
      const double e = loop.eps[static_cast<size_t>(std::min(it, stages) - 1)];
      double err = nan;
      if (rows) {
        // F (measured from the second target iteration on), then G; over-relaxed from the
        // first measured iteration on, except one whose rows are within tol after a relaxed g.
        Vector f_new = softmin(false, g, e);
        bool relax = false;
        if (have_f && it > stages) {
          stopped = measure(f, f_new);
          err = st.marginal_error;
          if (stopped && relaxed && st.converged) stopped = false;  // columns inexact: one plain iteration
          else relax = omega != 1.0;
          if (stopped) break;
        }
        if (relax) {
          f = (1.0 - omega) * f + omega * f_new;
          g = (1.0 - omega) * g + omega * softmin(true, f, e);
        } else {
          f = std::move(f_new);
          g = softmin(true, f, e);
        }
        have_f = true;
        relaxed = relax;
      } else {
        // G (measured; none in iteration 1), then F.
        if (have_f) {
          Vector g_new = softmin(true, f, e);
          if (it > stages) {
            stopped = measure(g, g_new);
            err = st.marginal_error;
            if (stopped) break;
          }
          g = std::move(g_new);
        }
        f = softmin(false, g, e);
        have_f = true;
      }
      st.iterations = it;
      observe(it, e, f, g, err, relaxed);
      if (interrupt(it, e, f, g, err, relaxed)) break;
    }
    if (!stopped && !run.interrupted && have_f && (!fixed || loop.final_check)) {
      if (relaxed) g = softmin(true, f, eps);  // exact columns for the plan returned
      if (rows) measure(f, softmin(false, g, eps));
      else measure(g, softmin(true, f, eps));
    }
  }
  if (run.interrupted) {
    st.converged = false;
    st.message = fmt::format("{}: interrupted after {} iterations", loop.context, st.iterations);
    return run;
  }
  if (!measured) st.marginal_error = nan;
  if (!stopped) st.converged = fixed || (measured && st.marginal_error <= control.tol);
  if (!st.converged && st.message.empty())
    st.message = sinkhorn_not_converged_message(loop.context, st.iterations, st.marginal_error, control.tol);
  return run;
}

SinkhornHalfStep affinity_half_steps(const MatrixRef& u, const MatrixRef& v, const Vector& loga,
                                     const Vector& logb, const SplitRows& split) {
  // Copies of this process's rows: each is the key table of the other side's half-steps.
  return [u = Matrix(u), v = Matrix(v), &loga, &logb, split](bool transpose, const Vector& h, double) {
    const Matrix& q = transpose ? v : u;
    const Matrix& table = transpose ? u : v;
    const Vector col_all = (transpose ? loga : logb) + h;
    const std::vector<Range>& query_parts = transpose ? split.key_parts : split.query_parts;
    const KeyBlockForm form = [&](Range r, const Matrix&, Vector& col, Matrix&) {
      col = col_all.segment(r.first, r.count);
    };
    Vector lse;
    Matrix unused;
    lse_reduce_split_keys(q, table, q.cols(), 0, transpose ? split.query_parts : split.key_parts, form, *split.comm,
                          lse, unused);
    const std::vector<double> all = allgather_rows(*split.comm, query_parts, lse.data());
    return Vector(-Eigen::Map<const Vector>(all.data(), static_cast<Index>(all.size())));
  };
}

SinkhornHalfStep affinity_half_steps(const MatrixRef& u, const MatrixRef& v, const Vector& loga,
                                     const Vector& logb, const Collective* comm) {
  // Views of the data, not the references: a Matrix argument binds u to a temporary Ref.
  using View = Eigen::Map<const Matrix, 0, Eigen::OuterStride<>>;
  const View uv(u.data(), u.rows(), u.cols(), Eigen::OuterStride<>(u.outerStride()));
  const View vv(v.data(), v.rows(), v.cols(), Eigen::OuterStride<>(v.outerStride()));
  return [u = uv, v = vv, &loga, &logb, comm](bool transpose, const Vector& h, double) {
    static const Matrix none(0, 0);
    Vector lse;
    Matrix unused;
    if (comm && comm->size() > 1) {
      // This rank's rows of the half-step (kernel_row_parts: equal to those of one pass), then
      // all of them in rank order.
      const View& q = transpose ? v : u;
      const View& k = transpose ? u : v;
      const Vector col = (transpose ? loga : logb) + h;
      const std::vector<Range> parts = kernel_row_parts(q.rows(), comm->size());
      const Range r = parts[static_cast<std::size_t>(comm->rank())];
      if (r.count > 0) lse_reduce(q.middleRows(r.first, r.count), k, col, none, lse, unused);
      const std::vector<double> all = allgather_rows(*comm, parts, lse.data());
      return Vector(-Eigen::Map<const Vector>(all.data(), q.rows()));
    }
    if (transpose) {
      const Vector col = loga + h;
      lse_reduce(v, u, col, none, lse, unused);
    } else {
      const Vector col = logb + h;
      lse_reduce(u, v, col, none, lse, unused);
    }
    return Vector(-lse);
  };
}

}  // namespace attnflow
