// Analytic backward passes (model_grad.hpp). Every sum over pairs is an lse_reduce call whose
// value columns carry what the gradient needs (outer products kk_j vv_j^T, u_i gA_i^T, ...),
// so no pass materializes an n x n matrix.
#include "attnflow/model/model_grad.hpp"

#include <cmath>
#include <exception>
#include <limits>

#include "attnflow/base/error.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "attention/pair_reduce.hpp"
#include "head.hpp"

namespace attnflow {

namespace {

using detail::HeadForward;

struct LayerCache {
  Matrix x;                       // (n, d) input of the layer
  std::vector<HeadForward> heads;  // attention
  Matrix hidden;                  // mlp pre-activation (n, h)
};

using detail::outer_rows;
using detail::reduce;
using detail::Reduction;

// (dk, dv) block of row i of an outer-product average, times vector g (dv) -> (dk).
Vector block_times(const Matrix& avg, Index i, Index off, Index dk, Index dv, const Vector& g) {
  Vector r = Vector::Zero(dk);
  for (Index a = 0; a < dk; ++a)
    for (Index b = 0; b < dv; ++b) r[a] += avg(i, off + a * dv + b) * g[b];
  return r;
}

struct HeadGrad {
  Matrix du, dkk, dvv;
};

// Reverses the Sinkhorn iterations (see model_grad.hpp): gbar is dL/dg of the last iterate.
void sinkhorn_backward(const HeadForward& hf, const Vector& logw, Vector gbar, HeadGrad& g) {
  const auto& tr = hf.trace;
  const Index n = hf.u.rows();
  Vector fbar = Vector::Zero(n);
  for (Index t = static_cast<Index>(tr.f.size()) - 1; t >= 0; --t) {
    const Vector& ft = tr.f[static_cast<size_t>(t)];
    const Vector& gt = tr.g[static_cast<size_t>(t)];
    if (t < static_cast<Index>(tr.f.size()) - 1) {
      // f-step t: f_i = -LSE_j(log w_j + g_j + s_ij); Pr_ij = exp(log w_j + g_j + s_ij + f_i).
      gbar.setZero();
      const Reduction row = reduce(hf.u, hf.kk, logw + gt, hf.kk);
      Matrix vals(n, hf.u.cols() + 1);
      vals.leftCols(hf.u.cols()) = hf.u.array().colwise() * fbar.array();
      vals.col(hf.u.cols()) = fbar;
      const Reduction col = reduce(hf.kk, hf.u, ft, vals);
      for (Index i = 0; i < n; ++i)
        g.du.row(i) -= fbar[i] * std::exp(row.lse[i] + ft[i]) * row.avg.row(i);
      for (Index j = 0; j < n; ++j) {
        const double fac = std::exp(logw[j] + gt[j] + col.lse[j]);
        if (fac == 0.0) continue;
        g.dkk.row(j) -= fac * col.avg.row(j).head(hf.u.cols());
        gbar[j] -= fac * col.avg(j, hf.u.cols());
      }
    }
    if (t == 0) break;  // g[0] = 0 is a constant
    // g-step t: g_j = -LSE_i(log w_i + f'_i + s_ij), f' = f[t-1]; Pc_ij = exp(... + g_j).
    const Vector& fp = tr.f[static_cast<size_t>(t - 1)];
    const Vector colf = logw + fp;
    const Reduction col = reduce(hf.kk, hf.u, colf, hf.u);
    for (Index j = 0; j < n; ++j)
      g.dkk.row(j) -= gbar[j] * std::exp(col.lse[j] + gt[j]) * col.avg.row(j);
    Matrix vals(n, hf.kk.cols() + 1);
    vals.leftCols(hf.kk.cols()) = hf.kk.array().colwise() * gbar.array();
    vals.col(hf.kk.cols()) = gbar;
    const Reduction row = reduce(hf.u, hf.kk, gt, vals);
    for (Index i = 0; i < n; ++i) {
      const double fac = std::exp(colf[i] + row.lse[i]);
      if (fac == 0.0) {
        fbar[i] = 0.0;
        continue;
      }
      g.du.row(i) -= fac * row.avg.row(i).head(hf.kk.cols());
      fbar[i] = -fac * row.avg(i, hf.kk.cols());
    }
  }
}

// Backward of one self-attention head given gA = dL/da (n, dv).
HeadGrad head_backward(const AttentionLayer& layer, const HeadForward& hf, const Vector& w,
                       const Matrix& ga) {
  const Index n = hf.u.rows(), dk = hf.u.cols(), dv = hf.vv.cols();
  const bool normalized = layer.normalization != Normalization::none;
  // r_i: P_ij = exp(s_ij + col_j + r_i); D_i = <gA_i, a_i> for normalized weights.
  const Vector r = normalized ? Vector(-hf.lse) : Vector(Vector::Zero(n));
  const Vector dsum = normalized ? Vector((ga.cwiseProduct(hf.a)).rowwise().sum())
                                 : Vector(Vector::Zero(n));
  HeadGrad g{Matrix(n, dk), Matrix(n, dk), Matrix(n, dv)};
  {  // Row reduction: values [kk_j | kk_j vv_j^T].
    Matrix vals(n, dk + dk * dv);
    vals.leftCols(dk) = hf.kk;
    vals.rightCols(dk * dv) = outer_rows(hf.kk, hf.vv);
    const Reduction row = reduce(hf.u, hf.kk, hf.col, vals);
    for (Index i = 0; i < n; ++i) {
      const double fac = std::exp(row.lse[i] + r[i]);
      const Vector gai = ga.row(i).transpose();
      g.du.row(i) = fac * (block_times(row.avg, i, dk, dk, dv, gai) -
                           dsum[i] * row.avg.row(i).head(dk).transpose())
                              .transpose();
    }
  }
  Vector gbar = Vector::Zero(n);
  {  // Column reduction: values [gA_i | u_i gA_i^T | D_i u_i | D_i].
    const Index p = dv + dk * dv + dk + 1;
    Matrix vals(n, p);
    vals.leftCols(dv) = ga;
    vals.middleCols(dv, dk * dv) = outer_rows(hf.u, ga);
    vals.middleCols(dv + dk * dv, dk) = hf.u.array().colwise() * dsum.array();
    vals.col(p - 1) = dsum;
    const Reduction col = reduce(hf.kk, hf.u, r, vals);
    for (Index j = 0; j < n; ++j) {
      const double fac = std::exp(hf.col[j] + col.lse[j]);
      if (fac == 0.0) {  // zero-weight atom: no influence on any output
        g.dvv.row(j).setZero();
        g.dkk.row(j).setZero();
        continue;
      }
      g.dvv.row(j) = fac * col.avg.row(j).head(dv);
      Vector nv = Vector::Zero(dk);  // (sum_i P_ij u_i gA_i^T) vv_j
      for (Index a = 0; a < dk; ++a)
        for (Index b = 0; b < dv; ++b) nv[a] += col.avg(j, dv + a * dv + b) * hf.vv(j, b);
      g.dkk.row(j) = fac * (nv - col.avg.row(j).segment(dv + dk * dv, dk).transpose()).transpose();
      gbar[j] = fac * (col.avg.row(j).head(dv).dot(hf.vv.row(j)) - col.avg(j, p - 1));
    }
  }
  if (layer.normalization == Normalization::sinkhorn)
    sinkhorn_backward(hf, log_weights(w), gbar, g);
  return g;
}

// Forward through the stack keeping what the backward pass needs; returns the output points.
Matrix forward(const Model& model, const Measure& mu, std::vector<LayerCache>& caches,
               SinkhornStats* stats) {
  caches.assign(model.layers.size(), {});
  Matrix x = mu.points();
  for (size_t l = 0; l < model.layers.size(); ++l) {
    LayerCache& c = caches[l];
    c.x = x;
    if (const auto* a = std::get_if<AttentionLayer>(&model.layers[l])) {
      for (Index h = 0; h < a->head_count(); ++h) {
        c.heads.push_back(detail::head_forward(*a, h, c.x, mu.weights(), c.x, true, true));
        const Matrix& wh = a->heads[static_cast<size_t>(h)].w;
        x.noalias() += a->step * (c.heads.back().a * wh.transpose());
        if (stats && a->normalization == Normalization::sinkhorn) stats->add(c.heads.back().status);
      }
    } else {
      const auto& m = std::get<MlpLayer>(model.layers[l]);
      c.hidden = (c.x * m.w1.transpose()).rowwise() + m.b1.transpose();
      x.noalias() += c.hidden.cwiseMax(0.0) * m.w2.transpose();
      x.rowwise() += m.b2.transpose();
    }
  }
  check_output_finite("model", "output", x.data(), x.size(), x.cols(),
                      "an attention layer's scores beta <q, k> or its values overflow double "
                      "precision (for normalization 'none' when beta |q||k| > 709)");
  return x;
}

// Backward through one layer: gy = dL/d(output) in, dL/d(input) out; fills the layer's grad.
Matrix layer_backward(const Layer& layer, const LayerCache& c, const Vector& w, const Matrix& gy,
                      Layer& grad) {
  Matrix gx = gy;
  if (const auto* a = std::get_if<AttentionLayer>(&layer)) {
    auto& ga = std::get<AttentionLayer>(grad);
    for (Index h = 0; h < a->head_count(); ++h) {
      const HeadForward& hf = c.heads[static_cast<size_t>(h)];
      const Head& hd = a->heads[static_cast<size_t>(h)];
      Head& gd = ga.heads[static_cast<size_t>(h)];
      const Matrix gah = a->step * (gy * hd.w);  // dL/da (n, dv)
      gd.w = a->step * (gy.transpose() * hf.a);
      const HeadGrad hg = head_backward(*a, hf, w, gah);
      gd.q = a->beta * (hg.du.transpose() * c.x);
      gd.k = hg.dkk.transpose() * c.x;
      gd.v = hg.dvv.transpose() * c.x;
      gx.noalias() += a->beta * (hg.du * hd.q) + hg.dkk * hd.k + hg.dvv * hd.v;
    }
    return gx;
  }
  const auto& m = std::get<MlpLayer>(layer);
  auto& gm = std::get<MlpLayer>(grad);
  const Matrix relu = c.hidden.cwiseMax(0.0);
  gm.w2 = gy.transpose() * relu;
  gm.b2 = gy.colwise().sum().transpose();
  Matrix gh = gy * m.w2;
  for (Index i = 0; i < gh.rows(); ++i)
    for (Index t = 0; t < gh.cols(); ++t)
      if (!(c.hidden(i, t) > 0.0)) gh(i, t) = 0.0;
  gm.w1 = gh.transpose() * c.x;
  gm.b1 = gh.colwise().sum().transpose();
  gx.noalias() += gh * m.w1;
  return gx;
}

void check_example(const Model& model, const Example& ex) {
  model.validate();
  if (ex.mu.dim() != model.dim || ex.target.rows() != ex.mu.size() || ex.target.cols() != model.dim)
    throw std::invalid_argument(fmt::format(
        "model: example has {} atoms of dimension {} and targets ({}, {}), must be (n, {}) with "
        "targets (n, {})", ex.mu.size(), ex.mu.dim(), ex.target.rows(), ex.target.cols(),
        model.dim, model.dim));
}

}  // namespace

Model zeros_like(const Model& model) {
  Model z = model;
  for (Layer& l : z.layers) for_each_parameter(l, [](double* p, Index n) { std::fill(p, p + n, 0.0); });
  return z;
}

double model_loss(const Model& model, const Example& ex, SinkhornStats* stats) {
  check_example(model, ex);
  const Matrix out = transport(model, ex.mu, stats);
  return ((out - ex.target).rowwise().squaredNorm().transpose() * ex.mu.weights()).value();
}

double loss_and_gradient(const Model& model, const Example& ex, Model& grad, Matrix* dx,
                         SinkhornStats* stats) {
  check_example(model, ex);
  std::vector<LayerCache> caches;
  const Matrix out = forward(model, ex.mu, caches, stats);
  const Matrix res = out - ex.target;
  const Vector& w = ex.mu.weights();
  const double loss = (res.rowwise().squaredNorm().transpose() * w).value();
  Matrix g = 2.0 * (res.array().colwise() * w.array()).matrix();
  grad = zeros_like(model);
  for (size_t l = model.layers.size(); l-- > 0;)
    g = layer_backward(model.layers[l], caches[l], w, g, grad.layers[l]);
  if (dx) *dx = std::move(g);
  return loss;
}

double batch_loss_and_gradient(const Model& model, const std::vector<Example>& data,
                               const std::vector<size_t>& batch, Model& grad,
                               SinkhornStats* stats) {
  require(!batch.empty(), "model", "batch size", batch.size(), ">= 1");
  std::vector<Model> grads(batch.size());
  std::vector<SinkhornStats> tallies(stats ? batch.size() : 0);
  std::vector<double> losses(batch.size());
  std::vector<std::exception_ptr> errors(batch.size());
  const long count = static_cast<long>(batch.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(detail::batch_threads(count))
  for (long b = 0; b < count; ++b) {
    const auto i = static_cast<size_t>(b);
    try {
      if (batch[i] >= data.size())
        throw_invalid("model", "batch index", batch[i], fmt::format("< {}", data.size()));
      losses[i] = loss_and_gradient(model, data[batch[i]], grads[i], nullptr,
                                    stats ? &tallies[i] : nullptr);
    } catch (...) {
      errors[i] = std::current_exception();
    }
  }
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  for (const SinkhornStats& t : tallies) stats->merge(t);
  // Fixed-order sum: the same result on any number of threads.
  grad = zeros_like(model);
  double loss = 0.0;
  const double inv = 1.0 / static_cast<double>(batch.size());
  for (size_t b = 0; b < batch.size(); ++b) {
    loss += losses[b];
    for (size_t l = 0; l < grad.layers.size(); ++l) {
      std::vector<std::pair<double*, Index>> dst;
      for_each_parameter(grad.layers[l], [&](double* p, Index n) { dst.emplace_back(p, n); });
      size_t k = 0;
      for_each_parameter(grads[b].layers[l], [&](double* p, Index n) {
        for (Index t = 0; t < n; ++t) dst[k].first[t] += p[t] * inv;
        ++k;
      });
    }
  }
  return loss * inv;
}

double mean_loss(const Model& model, const std::vector<Example>& data, SinkhornStats* stats) {
  require(!data.empty(), "model", "examples", data.size(), ">= 1");
  std::vector<double> losses(data.size());
  std::vector<SinkhornStats> tallies(stats ? data.size() : 0);
  std::vector<std::exception_ptr> errors(data.size());
  const long count = static_cast<long>(data.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(detail::batch_threads(count))
  for (long b = 0; b < count; ++b) {
    try {
      losses[static_cast<size_t>(b)] = model_loss(model, data[static_cast<size_t>(b)],
                                                  stats ? &tallies[static_cast<size_t>(b)] : nullptr);
    } catch (...) {
      errors[static_cast<size_t>(b)] = std::current_exception();
    }
  }
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  for (const SinkhornStats& t : tallies) stats->merge(t);
  double s = 0.0;
  for (double l : losses) s += l;
  return s / static_cast<double>(data.size());
}

}  // namespace attnflow
