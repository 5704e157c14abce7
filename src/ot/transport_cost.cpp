// Transport costs in the kernel form C_ij = -(<u_i, v_j> + r_i + c_j), and the Gibbs soft-min
// half-step that every Sinkhorn iteration, cost evaluation and barycentric map runs through
// lse_reduce (docs/math.md sections 1-3).
#include <algorithm>
#include <cmath>
#include <limits>

#include "attnflow/base/error.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "attnflow/ot/ot.hpp"
#include "attnflow/base/parallel.hpp"

namespace attnflow {

namespace {
constexpr const char* kTransportCostCtx = "ot";

void require_points(const Matrix& p, std::string_view name) {
  if (p.rows() == 0) throw_message(kTransportCostCtx, fmt::format("{} is empty (0 points), must have >= 1", name));
  if (p.cols() == 0) throw_message(kTransportCostCtx, fmt::format("{} has dimension 0, must be >= 1", name));
  require_finite(kTransportCostCtx, name, p);
}

void require_same_dim(const Matrix& x, const Matrix& y) {
  if (x.cols() != y.cols())
    throw std::invalid_argument(fmt::format(
        "{}: x has dimension {} and y has dimension {}, must be equal", kTransportCostCtx, x.cols(), y.cols()));
}
}  // namespace

CostType parse_cost_type(std::string_view name, std::string_view context) {
  if (name == "sqeuclidean") return CostType::sqeuclidean;
  if (name == "bilinear") return CostType::bilinear;
  if (name == "dense") return CostType::dense;
  throw_invalid(context, "cost", fmt::format("\"{}\"", name), "one of sqeuclidean, bilinear, dense");
}

std::string to_string(CostType type) {
  switch (type) {
    case CostType::sqeuclidean: return "sqeuclidean";
    case CostType::bilinear: return "bilinear";
    case CostType::dense: return "dense";
  }
  return "?";
}

TransportCost TransportCost::sqeuclidean(const Matrix& x, const Matrix& y) {
  require_points(x, "x");
  require_points(y, "y");
  require_same_dim(x, y);
  TransportCost t;
  t.type_ = CostType::sqeuclidean;
  t.n_ = x.rows();
  t.m_ = y.rows();
  // Common mean of all points: |x - y|^2 is translation invariant, and centering keeps
  // |x|^2 + |y|^2 - 2<x, y> from cancelling catastrophically for clouds far from 0.
  const Eigen::RowVectorXd mean =
      (x.colwise().sum() + y.colwise().sum()) / static_cast<double>(t.n_ + t.m_);
  const Matrix xc = x.rowwise() - mean, yc = y.rowwise() - mean;
  t.u_ = 2.0 * xc;
  t.v_ = yc;
  t.r_ = -xc.rowwise().squaredNorm();
  t.c_ = -yc.rowwise().squaredNorm();
  const Eigen::RowVectorXd lo = xc.colwise().minCoeff().cwiseMin(yc.colwise().minCoeff());
  const Eigen::RowVectorXd hi = xc.colwise().maxCoeff().cwiseMax(yc.colwise().maxCoeff());
  t.scale_ = (hi - lo).squaredNorm();  // squared diameter of the bounding box >= max C
  return t;
}

TransportCost TransportCost::bilinear(const Matrix& x, const Matrix& y, double beta,
                                      const Matrix& q, const Matrix& k) {
  require_points(x, "x");
  require_points(y, "y");
  require_same_dim(x, y);
  require(std::isfinite(beta), kTransportCostCtx, "beta", beta, "finite");
  for (const auto& [mat, name] : {std::pair{&q, "q"}, std::pair{&k, "k"}}) {
    if (mat->size() == 0) continue;
    if (mat->cols() != x.cols())
      throw std::invalid_argument(fmt::format("{}: {} has {} columns, must equal the dimension {}",
                                              kTransportCostCtx, name, mat->cols(), x.cols()));
    require_finite(kTransportCostCtx, name, *mat);
  }
  const Matrix qx = q.size() ? Matrix(x * q.transpose()) : x;
  const Matrix ky = k.size() ? Matrix(y * k.transpose()) : y;
  if (qx.cols() != ky.cols())
    throw std::invalid_argument(fmt::format("{}: q has {} rows and k has {}, must be equal", kTransportCostCtx,
                                            qx.cols(), ky.cols()));
  TransportCost t;
  t.type_ = CostType::bilinear;
  t.n_ = x.rows();
  t.m_ = y.rows();
  t.u_ = beta * qx;
  t.v_ = ky;
  t.r_ = Vector::Zero(t.n_);
  t.c_ = Vector::Zero(t.m_);
  // Cauchy-Schwarz: |C_ij| <= |beta| max|Qx| max|Ky|, so the range is at most twice that.
  t.scale_ = 2.0 * std::abs(beta) * qx.rowwise().norm().maxCoeff() * ky.rowwise().norm().maxCoeff();
  if (!(t.scale_ > 0.0)) t.scale_ = 1.0;
  return t;
}

TransportCost TransportCost::dense(Matrix c) {
  if (c.rows() == 0 || c.cols() == 0)
    throw_message(kTransportCostCtx, fmt::format("cost matrix is {} x {}, must be non-empty", c.rows(), c.cols()));
  require_finite(kTransportCostCtx, "cost", c);
  TransportCost t;
  t.type_ = CostType::dense;
  t.n_ = c.rows();
  t.m_ = c.cols();
  t.scale_ = c.maxCoeff() - c.minCoeff();
  if (!(t.scale_ > 0.0)) t.scale_ = std::max(1.0, std::abs(c(0, 0)));
  t.dense_ = std::move(c);
  return t;
}

double TransportCost::operator()(Index i, Index j) const {
  if (type_ == CostType::dense) return dense_(i, j);
  return -(u_.row(i).dot(v_.row(j)) + r_[i] + c_[j]);
}

double TransportCost::max_cost() const {
  if (type_ == CostType::dense) return dense_.maxCoeff();
  double best = -std::numeric_limits<double>::infinity();
#pragma omp parallel for reduction(max : best) num_threads(num_threads())
  for (Index i = 0; i < n_; ++i)
    for (Index j = 0; j < m_; ++j) best = std::max(best, (*this)(i, j));
  return best;
}

Matrix TransportCost::to_dense(Index max_entries) const {
  if (static_cast<double>(n_) * static_cast<double>(m_) > static_cast<double>(max_entries))
    throw std::invalid_argument(fmt::format(
        "{}: dense cost n * m = {} * {} = {}, must be <= {} (an n x m matrix of doubles)", kTransportCostCtx,
        n_, m_, static_cast<double>(n_) * static_cast<double>(m_), max_entries));
  if (type_ == CostType::dense) return dense_;
  Matrix c(n_, m_);
  for (Index i = 0; i < n_; ++i)
    for (Index j = 0; j < m_; ++j) c(i, j) = (*this)(i, j);
  return c;
}

TransportCost::Gibbs TransportCost::gibbs(bool transpose, const Vector& h, const Vector& logw,
                                          double eps, bool want_cost, const Matrix* vals) const {
  const Index len = transpose ? n_ : m_;
  if (h.size() != len || logw.size() != len || (vals && vals->rows() != len))
    throw std::invalid_argument(fmt::format(
        "{}: gibbs half-step sizes h = {}, logw = {}, must equal {}", kTransportCostCtx, h.size(), logw.size(), len));
  const Index rows = transpose ? m_ : n_;
  return type_ == CostType::dense ? gibbs_dense(transpose, 0, rows, h, logw, eps, want_cost, vals)
                                  : gibbs_factored(transpose, 0, rows, h, logw, eps, want_cost, vals);
}

TransportCost::Gibbs TransportCost::gibbs_rows(bool transpose, Index first, Index count, const Vector& h,
                                               const Vector& logw, double eps, bool want_cost,
                                               const Matrix* vals) const {
  const Index len = transpose ? n_ : m_, rows = transpose ? m_ : n_;
  if (h.size() != len || logw.size() != len || (vals && vals->rows() != len))
    throw std::invalid_argument(fmt::format(
        "{}: gibbs half-step sizes h = {}, logw = {}, must equal {}", kTransportCostCtx, h.size(), logw.size(), len));
  if (first < 0 || count < 0 || first + count > rows)
    throw std::invalid_argument(fmt::format("{}: gibbs rows [{}, {}), must lie in [0, {})", kTransportCostCtx, first,
                                            first + count, rows));
  return type_ == CostType::dense ? gibbs_dense(transpose, first, count, h, logw, eps, want_cost, vals)
                                  : gibbs_factored(transpose, first, count, h, logw, eps, want_cost, vals);
}

// Factored costs: one lse_reduce call. Queries u_i / eps (rows, k), keys v_j (len, k), column
// offsets logw_j + (c_j + h_j) / eps; r_i / eps only shifts lse_i and is added afterwards.
// Values, when wanted, are [v_j | c_j | vals_j] (len, k + 1 + p): the conditional expectation
// of C_ij = -(<u_i, v_j> + r_i + c_j) is then linear in them.
TransportCost::Gibbs TransportCost::gibbs_factored(bool transpose, Index first, Index count,
                                                   const Vector& h, const Vector& logw, double eps,
                                                   bool want_cost, const Matrix* vals) const {
  const Matrix& u_all = transpose ? v_ : u_;
  const auto u = u_all.middleRows(first, count);
  const Matrix& v = transpose ? u_ : v_;
  const Vector& r_all = transpose ? c_ : r_;
  const auto r = r_all.segment(first, count);
  const Vector& c = transpose ? r_ : c_;
  const Index k = u.cols(), p = vals ? vals->cols() : 0;
  const Matrix ue = u / eps;
  // c_j + h_j first: for sqeuclidean the two nearly cancel at the optimum (g_j ~ |y_j|^2).
  const Vector col = logw + (c + h) / eps;
  Matrix kv(v.rows(), (want_cost ? k + 1 : 0) + p);
  if (want_cost) {
    kv.leftCols(k) = v;
    kv.col(k) = c;
  }
  if (p) kv.rightCols(p) = *vals;
  Vector lse;
  Matrix out;
  lse_reduce(ue, v, col, kv, lse, out);
  Gibbs res;
  res.softmin = -eps * lse - r;
  if (want_cost) {
    res.ecost.resize(u.rows());
    for (Index i = 0; i < u.rows(); ++i)
      res.ecost[i] = -(u.row(i).dot(out.row(i).head(k)) + r[i] + out(i, k));
  }
  res.evals = p ? Matrix(out.rightCols(p)) : Matrix(u.rows(), 0);
  return res;
}

// Dense costs (small problems): row i of C enters the kernel as column offsets
// logw_j + (h_j - C_ij) / eps against a zero-dimensional affinity (k = 1, u = v = 0), so the
// sum of exponentials still runs through lse_reduce. Rows are split over threads; each row's
// reduction is sequential, so the result does not depend on the thread count.
TransportCost::Gibbs TransportCost::gibbs_dense(bool transpose, Index first, Index count, const Vector& h,
                                                const Vector& logw, double eps, bool want_cost,
                                                const Matrix* vals) const {
  const Index rows = count, len = transpose ? n_ : m_;
  const Index p = vals ? vals->cols() : 0, q = (want_cost ? 1 : 0) + p;
  Gibbs res;
  res.softmin.resize(rows);
  if (want_cost) res.ecost.resize(rows);
  res.evals.resize(rows, p);
  ParallelErrors errors;  // allocations and lse_reduce may throw: never out of the region
#pragma omp parallel num_threads(num_threads())
  {
    Matrix zero_u, zero_v, kv, out;
    Vector col, lse;
    bool ready = false;
    errors.run(-1, [&] {
      zero_u = Matrix::Zero(1, 1);
      zero_v = Matrix::Zero(len, 1);
      col.resize(len);
      kv.resize(len, q);
      if (p) kv.rightCols(p) = *vals;
      ready = true;
    });
#pragma omp for schedule(static)
    for (Index i = 0; i < rows; ++i) {
      if (!ready) continue;
      errors.run(i, [&] {
        for (Index j = 0; j < len; ++j) {
          const double cij = transpose ? dense_(j, first + i) : dense_(first + i, j);
          col[j] = logw[j] + (h[j] - cij) / eps;
          if (want_cost) kv(j, 0) = cij;
        }
        lse_reduce(zero_u, zero_v, col, kv, lse, out);
        res.softmin[i] = -eps * lse[0];
        if (want_cost) res.ecost[i] = out(0, 0);
        if (p) res.evals.row(i) = out.row(0).tail(p);
      });
    }
  }
  errors.rethrow();
  return res;
}

}  // namespace attnflow
