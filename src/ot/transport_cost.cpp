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

namespace {
// Points are summed in blocks of this many rows (block b: rows [b kSumBlock, (b + 1) kSumBlock)),
// each block row by row, then the blocks in order: the same sum whether one process holds
// every point or each holds some blocks (kernel_row_parts cuts at multiples of 256).
constexpr Index kSumBlock = 256;

// The sums of the blocks of `points`, whose first row is row `first` (a multiple of kSumBlock)
// of the whole: (blocks, d) row-major.
std::vector<double> block_sums(const Matrix& points, Index first) {
  std::vector<double> sums;
  const Index d = points.cols();
  for (Index i = 0; i < points.rows(); ++i) {
    if ((first + i) % kSumBlock == 0 || i == 0) sums.resize(sums.size() + static_cast<std::size_t>(d), 0.0);
    double* s = sums.data() + sums.size() - d;
    for (Index t = 0; t < d; ++t) s[t] += points(i, t);
  }
  return sums;
}

Eigen::RowVectorXd sum_blocks(const std::vector<double>& sums, Index d) {
  Eigen::RowVectorXd total = Eigen::RowVectorXd::Zero(d);
  for (std::size_t b = 0; b < sums.size(); b += static_cast<std::size_t>(d))
    for (Index t = 0; t < d; ++t) total[t] += sums[b + static_cast<std::size_t>(t)];
  return total;
}

// The factored form of |x - y|^2 for (parts of) x and y centered at `mean`, and the corners
// of their bounding box (+inf / -inf where both parts are empty).
struct Factors {
  Matrix u, v;
  Vector r, c;
  Eigen::RowVectorXd lo, hi;
};
Factors sqeuclidean_factors(const Matrix& x, const Matrix& y, const Eigen::RowVectorXd& mean) {
  Factors f;
  const Matrix xc = x.rowwise() - mean, yc = y.rowwise() - mean;
  f.u = 2.0 * xc;
  f.v = yc;
  f.r = -xc.rowwise().squaredNorm();
  f.c = -yc.rowwise().squaredNorm();
  f.lo = Eigen::RowVectorXd::Constant(mean.size(), std::numeric_limits<double>::infinity());
  f.hi = -f.lo;
  for (const Matrix* p : {&xc, &yc}) {
    if (p->rows() == 0) continue;
    f.lo = f.lo.cwiseMin(p->colwise().minCoeff());
    f.hi = f.hi.cwiseMax(p->colwise().maxCoeff());
  }
  return f;
}

}  // namespace

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
  const Index d = x.cols();
  const Eigen::RowVectorXd mean =
      (sum_blocks(block_sums(x, 0), d) + sum_blocks(block_sums(y, 0), d)) / static_cast<double>(t.n_ + t.m_);
  Factors f = sqeuclidean_factors(x, y, mean);
  t.scale_ = (f.hi - f.lo).squaredNorm();  // squared diameter of the bounding box >= max C
  t.u_ = std::move(f.u);
  t.v_ = std::move(f.v);
  t.r_ = std::move(f.r);
  t.c_ = std::move(f.c);
  return t;
}

bool TransportCost::splittable(Index n, Index m, Index d) {
  return n >= 5 && m >= 5 && LseStream::supports(n, d, d + 1);
}

TransportCost TransportCost::sqeuclidean_split(const Matrix& x_part, const Matrix& y_part, Index n, Index m,
                                                 const Collective& comm) {
  const Index d = x_part.cols();
  if (!splittable(n, m, d))
    throw std::invalid_argument(fmt::format("{}: points split across processes with n = {}, m = {}, d = {}, must "
                                            "have n, m >= 5 and 1 <= d <= 15", kTransportCostCtx, n, m, d));
  const int P = comm.size(), rank = comm.rank();
  const std::vector<Range> xp = kernel_row_parts(n, P), yp = kernel_row_parts(m, P);
  const Range mx = xp[static_cast<std::size_t>(rank)], my = yp[static_cast<std::size_t>(rank)];
  if (x_part.rows() != mx.count || y_part.rows() != my.count || y_part.cols() != d)
    throw std::invalid_argument(fmt::format(
        "{}: process {} of {} holds x ({}, {}) and y ({}, {}), must hold rows [{}, {}) of x and [{}, {}) of y "
        "(kernel_row_parts), both of dimension {}", kTransportCostCtx, rank, P, x_part.rows(), x_part.cols(),
        y_part.rows(), y_part.cols(), mx.first, mx.first + mx.count, my.first, my.first + my.count, d));
  if (P == 1) return sqeuclidean(x_part, y_part);
  // Each process checks its own points (the failure agreement reports the lowest failing rank's).
  require_finite(kTransportCostCtx, "x", x_part, mx.first);
  require_finite(kTransportCostCtx, "y", y_part, my.first);
  // Block sums of every process in rank order = the blocks in order.
  auto counts = [&](const std::vector<Range>& parts) {
    std::vector<Index> c;
    for (const Range& r : parts) c.push_back((r.count + kSumBlock - 1) / kSumBlock * d);
    return c;
  };
  const Eigen::RowVectorXd sx = sum_blocks(comm.allgatherv(block_sums(x_part, mx.first).data(), counts(xp)), d);
  const Eigen::RowVectorXd sy = sum_blocks(comm.allgatherv(block_sums(y_part, my.first).data(), counts(yp)), d);
  TransportCost t;
  t.type_ = CostType::sqeuclidean;
  t.n_ = n;
  t.m_ = m;
  Factors f = sqeuclidean_factors(x_part, y_part, (sx + sy) / static_cast<double>(n + m));
  // Bounding box: every process's corners (-hi, so that one min gathers both), then min and max.
  std::vector<double> box(static_cast<std::size_t>(2 * d));
  for (Index j = 0; j < d; ++j) {
    box[static_cast<std::size_t>(j)] = f.lo[j];
    box[static_cast<std::size_t>(d + j)] = -f.hi[j];
  }
  const std::vector<double> boxes = comm.allgatherv(box.data(), std::vector<Index>(static_cast<std::size_t>(P), 2 * d));
  Eigen::RowVectorXd lo = Eigen::RowVectorXd::Constant(d, std::numeric_limits<double>::infinity()), hi = -lo;
  for (std::size_t p = 0; p < static_cast<std::size_t>(P); ++p)
    for (Index j = 0; j < d; ++j) {
      lo[j] = std::min(lo[j], boxes[p * static_cast<std::size_t>(2 * d) + static_cast<std::size_t>(j)]);
      hi[j] = std::max(hi[j], -boxes[p * static_cast<std::size_t>(2 * d) + static_cast<std::size_t>(d + j)]);
    }
  t.scale_ = (hi - lo).squaredNorm();
  t.u_ = std::move(f.u);
  t.v_ = std::move(f.v);
  t.r_ = std::move(f.r);
  t.c_ = std::move(f.c);
  t.comm_ = &comm;
  t.x_parts_ = xp;
  t.y_parts_ = yp;
  return t;
}

void TransportCost::require_whole(const char* what) const {
  if (comm_)
    throw std::invalid_argument(fmt::format("{}: {} of a cost whose points are split across {} processes, must be "
                                            "a cost held whole (TransportCost::sqeuclidean)", kTransportCostCtx,
                                            what, comm_->size()));
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
  require_whole("an entry");
  if (type_ == CostType::dense) return dense_(i, j);
  return -(u_.row(i).dot(v_.row(j)) + r_[i] + c_[j]);
}

double TransportCost::max_cost() const {
  require_whole("max_cost");
  if (type_ == CostType::dense) return dense_.maxCoeff();
  double best = -std::numeric_limits<double>::infinity();
#pragma omp parallel for reduction(max : best) num_threads(num_threads())
  for (Index i = 0; i < n_; ++i)
    for (Index j = 0; j < m_; ++j) best = std::max(best, (*this)(i, j));
  return best;
}

Matrix TransportCost::to_dense(Index max_entries) const {
  require_whole("the dense matrix");
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
  require_whole("a whole half-step (gibbs; use gibbs_rows with this process's rows)");
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
  if (comm_) {
    const Range mine = (transpose ? y_parts_ : x_parts_)[static_cast<std::size_t>(comm_->rank())];
    if (first != mine.first || count != mine.count)
      throw std::invalid_argument(fmt::format("{}: gibbs rows [{}, {}) of a split cost, must be this process's "
                                              "rows [{}, {})", kTransportCostCtx, first, first + count, mine.first,
                                              mine.first + mine.count));
  }
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
  // A split cost holds this process's rows only (gibbs_rows checked that they are these).
  const Index at = comm_ ? 0 : first;
  const Matrix& u_all = transpose ? v_ : u_;
  const auto u = u_all.middleRows(at, count);
  const Matrix& v = transpose ? u_ : v_;
  const Vector& r_all = transpose ? c_ : r_;
  const auto r = r_all.segment(at, count);
  const Vector& c = transpose ? r_ : c_;
  const Index k = u.cols(), p = vals ? vals->cols() : 0;
  const Matrix ue = u / eps;
  Vector lse;
  Matrix out;
  if (comm_) {
    reduce_split(transpose, ue, h, logw, eps, want_cost, vals, lse, out);
  } else {
    // c_j + h_j first: for sqeuclidean the two nearly cancel at the optimum (g_j ~ |y_j|^2).
    const Vector col = logw + (c + h) / eps;
    lse_reduce(ue, v, col, key_values(v, c, want_cost, vals, 0), lse, out);
  }
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

// The values of the expectations, for the keys [first, first + v.rows()): [v_j | c_j | vals_j]
// (k + 1 + p columns; [vals_j] without want_cost).
Matrix TransportCost::key_values(const MatrixRef& v, const VectorRef& c, bool want_cost, const Matrix* vals,
                                 Index first) {
  const Index k = v.cols(), p = vals ? vals->cols() : 0;
  Matrix kv(v.rows(), (want_cost ? k + 1 : 0) + p);
  if (want_cost) {
    kv.leftCols(k) = v;
    kv.col(k) = c;
  }
  if (p) kv.rightCols(p) = vals->middleRows(first, v.rows());
  return kv;
}

// A split cost's half-step for this process's rows (queries ue): the other side's points
// and offsets, [v_j | c_j], part by part from their owners in rank order, streamed through the
// kernel (lse_reduce_split_keys). Each part's column offsets and values are formed exactly as
// gibbs_factored forms them for all keys, so the result is that of one pass bit for bit.
void TransportCost::reduce_split(bool transpose, const Matrix& ue, const Vector& h, const Vector& logw,
                                   double eps, bool want_cost, const Matrix* vals, Vector& lse, Matrix& out) const {
  const Matrix& mine_v = transpose ? u_ : v_;
  const Vector& mine_c = transpose ? r_ : c_;
  const Index k = mine_v.cols(), p = (want_cost ? k + 1 : 0) + (vals ? vals->cols() : 0);
  Matrix mine(mine_v.rows(), k + 1);
  mine << mine_v, mine_c;
  const KeyBlockForm form = [&](Range r, const Matrix& rows, Vector& col, Matrix& kv) {
    const Vector c = rows.col(k);
    // c_j + h_j first: for sqeuclidean the two nearly cancel at the optimum (g_j ~ |y_j|^2).
    col = logw.segment(r.first, r.count) + (c + h.segment(r.first, r.count)) / eps;
    kv = key_values(rows.leftCols(k), c, want_cost, vals, r.first);
  };
  lse_reduce_split_keys(ue, mine, k, p, transpose ? x_parts_ : y_parts_, form, *comm_, lse, out);
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
