// Backward pass of attention on measures (attention_grad.hpp). Every sum over pairs is one
// lse_reduce whose value columns carry what the gradient needs, so nothing is O(n m).
#include "attnflow/attention/attention_grad.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

#include "attnflow/base/error.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "pair_reduce.hpp"

namespace attnflow {

namespace {

constexpr const char* kAttentionGradCtx = "attention_gradient";

using detail::outer_rows;
using detail::reduce;
using detail::Reduction;

// The potentials of the Sinkhorn normalization replayed for `iterations` f-updates, with the
// operations of normalization_offsets: g[0] = 0, f[t] = -LSE_j(log b_j + g[t-1]_j + s_ij),
// g[t] = -LSE_i(log a_i + f[t]_i + s_ij); the output uses col = log b + g[T-1].
struct Trace {
  std::vector<Vector> f, g;  // f[1..T-1] (f[0] unused), g[0..T-1]
};
Trace sinkhorn_replay(const Matrix& u, const Matrix& kk, const Vector& loga, const Vector& logb,
                      int iterations) {
  Trace tr;
  const Matrix none(0, 0);
  Matrix unused;
  Vector lse;
  tr.g.push_back(Vector::Zero(kk.rows()));
  tr.f.push_back(Vector());
  for (int t = 1; t < iterations; ++t) {
    const Vector colg = logb + tr.g.back();
    lse_reduce(u, kk, colg, none, lse, unused);
    tr.f.push_back(-lse);
    const Vector colf = loga + tr.f.back();
    lse_reduce(kk, u, colf, none, lse, unused);
    tr.g.push_back(-lse);
  }
  return tr;
}

struct HeadGrad {
  Matrix du, dkk, dhv;
  Vector da, db;  // dL/d weights (normalized), without the 1/w factor problems at w = 0
};

// Reverses the replayed Sinkhorn iterations; gbar = dL/dg[T-1] in, contributions out.
void sinkhorn_backward(const Matrix& u, const Matrix& kk, const Vector& loga, const Vector& logb,
                       const Trace& tr, Vector gbar, HeadGrad& hg) {
  const Index n = u.rows(), m = kk.rows(), k = u.cols();
  for (size_t t = tr.f.size() - 1; t >= 1; --t) {
    const Vector& ft = tr.f[t];
    const Vector& gt = tr.g[t];
    const Vector& gprev = tr.g[t - 1];
    Vector fbar(n);
    {  // g-step t: g_j = -LSE_i(log a_i + f_i + s_ij); Pc_ij = exp(log a_i + f_i + s_ij + g_j).
      const Reduction col = reduce(kk, u, loga + ft, u);
      for (Index j = 0; j < m; ++j) {
        const double fac = std::exp(col.lse[j] + gt[j]);
        if (fac != 0.0 && gbar[j] != 0.0) hg.dkk.row(j) -= gbar[j] * fac * col.avg.row(j);
      }
      Matrix vals(m, k + 1);
      vals.leftCols(k) = kk.array().colwise() * gbar.array();
      vals.col(k) = gbar;
      const Reduction row = reduce(u, kk, gt, vals);
      for (Index i = 0; i < n; ++i) {
        const double unit = std::exp(ft[i] + row.lse[i]);  // without the factor a_i
        const double fac = std::exp(loga[i] + ft[i] + row.lse[i]);
        fbar[i] = fac != 0.0 ? -fac * row.avg(i, k) : 0.0;
        if (fac != 0.0) hg.du.row(i) -= fac * row.avg.row(i).head(k);
        if (unit != 0.0) hg.da[i] -= unit * row.avg(i, k);
      }
    }
    {  // f-step t: f_i = -LSE_j(log b_j + g'_j + s_ij), g' = g[t-1]; Pr_ij = exp(... + f_i).
      const Reduction row = reduce(u, kk, logb + gprev, kk);
      for (Index i = 0; i < n; ++i) {
        const double fac = std::exp(row.lse[i] + ft[i]);
        if (fac != 0.0 && fbar[i] != 0.0) hg.du.row(i) -= fbar[i] * fac * row.avg.row(i);
      }
      Matrix vals(n, k + 1);
      vals.leftCols(k) = u.array().colwise() * fbar.array();
      vals.col(k) = fbar;
      const Reduction col = reduce(kk, u, ft, vals);
      for (Index j = 0; j < m; ++j) {
        const double unit = std::exp(gprev[j] + col.lse[j]);  // without the factor b_j
        const double fac = std::exp(logb[j] + gprev[j] + col.lse[j]);
        gbar[j] = fac != 0.0 ? -fac * col.avg(j, k) : 0.0;
        if (fac != 0.0) hg.dkk.row(j) -= fac * col.avg.row(j).head(k);
        if (unit != 0.0) hg.db[j] -= unit * col.avg(j, k);
      }
    }
  }
}

// Backward of one head's normalized average a = P hv given gA = dL/da (n, p_h).
HeadGrad head_backward(Normalization norm, const Matrix& u, const Matrix& kk, const Matrix& hv,
                       const Vector& col, const Vector& gcol, const Vector& lse, const Matrix& avg,
                       const Matrix& ga) {
  const Index n = u.rows(), m = kk.rows(), dk = u.cols(), dv = hv.cols();
  const bool normalized = norm != Normalization::none;
  const Vector r = normalized ? Vector(-lse) : Vector(Vector::Zero(n));
  const Vector dsum =
      normalized ? Vector(ga.cwiseProduct(avg).rowwise().sum()) : Vector(Vector::Zero(n));
  HeadGrad g{Matrix::Zero(n, dk), Matrix::Zero(m, dk), Matrix::Zero(m, dv), Vector::Zero(n),
             Vector::Zero(m)};
  {  // Row reduction: values [kk_j | kk_j hv_j^T].
    Matrix vals(m, dk + dk * dv);
    vals.leftCols(dk) = kk;
    vals.rightCols(dk * dv) = outer_rows(kk, hv);
    const Reduction row = reduce(u, kk, col, vals);
    for (Index i = 0; i < n; ++i) {
      const double fac = std::exp(row.lse[i] + r[i]);
      if (fac == 0.0) continue;
      for (Index a = 0; a < dk; ++a) {
        double s = 0.0;
        for (Index b = 0; b < dv; ++b) s += row.avg(i, dk + a * dv + b) * ga(i, b);
        g.du(i, a) = fac * (s - dsum[i] * row.avg(i, a));
      }
    }
  }
  {  // Column reduction: values [gA_i | u_i gA_i^T | D_i u_i | D_i].
    const Index p = dv + dk * dv + dk + 1;
    Matrix vals(n, p);
    vals.leftCols(dv) = ga;
    vals.middleCols(dv, dk * dv) = outer_rows(u, ga);
    vals.middleCols(dv + dk * dv, dk) = u.array().colwise() * dsum.array();
    vals.col(p - 1) = dsum;
    const Reduction c = reduce(kk, u, r, vals);
    for (Index j = 0; j < m; ++j) {
      const double unit = std::exp(gcol[j] + c.lse[j]);  // P's factor without b_j
      const double fac = std::exp(col[j] + c.lse[j]);
      const double dcol_unit = c.avg.row(j).head(dv).dot(hv.row(j)) - c.avg(j, p - 1);
      if (unit != 0.0) g.db[j] = unit * dcol_unit;
      if (fac == 0.0) continue;  // zero-weight key: no influence on any output
      g.dhv.row(j) = fac * c.avg.row(j).head(dv);
      for (Index a = 0; a < dk; ++a) {
        double s = 0.0;  // (sum_i P_ij u_i gA_i^T) hv_j
        for (Index b = 0; b < dv; ++b) s += c.avg(j, dv + a * dv + b) * hv(j, b);
        g.dkk(j, a) = fac * (s - c.avg(j, dv + dk * dv + a));
      }
    }
  }
  return g;
}

}  // namespace

AttentionGradient attention_gradient(const Measure& queries, const Measure& keys,
                                     const std::optional<Matrix>& values,
                                     const AttentionOptions& options, const Matrix& grad_out) {
  AttentionGradient out;
  out.result = attention(queries, keys, values, options);  // validates everything
  if (grad_out.rows() != out.result.out.rows() || grad_out.cols() != out.result.out.cols())
    throw std::invalid_argument(fmt::format(
        "{}: grad_out has shape ({}, {}), must be the output's ({}, {})", kAttentionGradCtx, grad_out.rows(),
        grad_out.cols(), out.result.out.rows(), out.result.out.cols()));
  require_finite(kAttentionGradCtx, "grad_out", grad_out);

  const Matrix& x = queries.points();
  const Matrix& y = keys.points();
  const Matrix& vals = values ? *values : y;
  std::vector<AttentionHead> heads = options.heads;
  if (heads.empty()) heads.push_back(AttentionHead{{}, {}, {}, {}, options.normalization});
  const Vector loga = queries.log_weights(), logb = keys.log_weights();

  out.dx = Matrix::Zero(x.rows(), x.cols());
  out.dy = Matrix::Zero(y.rows(), y.cols());
  Matrix dvals = Matrix::Zero(vals.rows(), vals.cols());
  out.dwx = Vector::Zero(x.rows());
  out.dwy = Vector::Zero(y.rows());
  for (size_t h = 0; h < heads.size(); ++h) {
    const AttentionHead& hd = heads[h];
    // The forward of attention(): u = beta Q x_i, kk = K y_j, hv = V v_j.
    const Matrix u0 = apply_map(x, hd.q);
    const Matrix u = options.beta * u0;
    const Matrix kk = apply_map(y, hd.k);
    const Matrix hv = apply_map(vals, hd.v);
    Trace trace;
    Vector g = Vector::Zero(y.rows());
    if (hd.normalization == Normalization::sinkhorn) {
      trace = sinkhorn_replay(u, kk, loga, logb, out.result.status[h].iterations);
      g = trace.g.back();
    }
    const Vector col = logb + g;
    Vector lse;
    Matrix avg;
    lse_reduce(u, kk, col, hv, lse, avg);
    // The replay must be attention()'s forward exactly (the same operations); a difference
    // means normalize.cpp changed without sinkhorn_replay: never return a wrong gradient.
    if (lse != out.result.lse[h])
      throw std::logic_error(fmt::format(
          "{}: heads[{}]: the replayed forward pass differs from attention() (the Sinkhorn "
          "normalization changed without attention_grad.cpp)", kAttentionGradCtx, h));
    Matrix head_out = avg;
    if (hd.normalization == Normalization::none)
      for (Index i = 0; i < head_out.rows(); ++i) head_out.row(i) *= std::exp(lse[i]);

    // Through W: contrib = head_out W^T.
    Matrix gh = grad_out;  // dL/d head_out
    if (hd.w.size()) {
      out.dw.push_back(grad_out.transpose() * head_out);
      gh = grad_out * hd.w;
    } else {
      out.dw.emplace_back();
    }
    // For `none`, head_out_i = exp(lse_i) avg_i = sum_j P_ij hv_j with P unnormalized.
    HeadGrad hg = head_backward(hd.normalization, u, kk, hv, col, g, lse, avg, gh);
    if (hd.normalization == Normalization::sinkhorn) {
      // dL/dg[T-1] = dL/dcol; the b-part of col (log b) was accumulated in hg.db above.
      Vector gbar(y.rows());
      for (Index j = 0; j < y.rows(); ++j) gbar[j] = keys.weights()[j] * hg.db[j];
      sinkhorn_backward(u, kk, loga, logb, trace, gbar, hg);
    }
    out.dwx += hg.da;
    out.dwy += hg.db;
    // Through the projections.
    out.dbeta += hg.du.cwiseProduct(u0).sum();
    const Matrix du0 = options.beta * hg.du;  // dL/du0
    if (hd.q.size()) {
      out.dq.push_back(du0.transpose() * x);
      out.dx.noalias() += du0 * hd.q;
    } else {
      out.dq.emplace_back();
      out.dx += du0;
    }
    if (hd.k.size()) {
      out.dk.push_back(hg.dkk.transpose() * y);
      out.dy.noalias() += hg.dkk * hd.k;
    } else {
      out.dk.emplace_back();
      out.dy += hg.dkk;
    }
    if (hd.v.size()) {
      out.dv.push_back(hg.dhv.transpose() * vals);
      dvals.noalias() += hg.dhv * hd.v;
    } else {
      out.dv.emplace_back();
      dvals += hg.dhv;
    }
  }
  if (values) out.dvalues = std::move(dvals);
  else out.dy += dvals;
  return out;
}

}  // namespace attnflow
