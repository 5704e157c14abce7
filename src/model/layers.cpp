#include "attnflow/model/layers.hpp"

#include <cmath>
#include <limits>

#include "attnflow/base/error.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "head.hpp"

namespace attnflow {

namespace {

void check_shape(const Matrix& m, Index rows, Index cols, const std::string& ctx,
                 const std::string& name) {
  if (m.rows() != rows || m.cols() != cols)
    throw std::invalid_argument(fmt::format("{}: {} has shape ({}, {}), must be ({}, {})", ctx,
                                            name, m.rows(), m.cols(), rows, cols));
  require_finite(ctx, name, m);
}

}  // namespace

void AttentionLayer::validate(Index d, const std::string& ctx) const {
  require(std::isfinite(beta), ctx, "beta", beta, "finite");
  require(std::isfinite(step), ctx, "step", step, "finite");
  require(head_count() >= 1, ctx, "heads", head_count(), ">= 1");
  sinkhorn.validate(ctx, "sinkhorn.");
  // heads[0] sets dk and dv; every other head must share them.
  HeadShape shape{.d_query = d, .d_key = d, .d_value = d, .d_out = d, .identity = false};
  const HeadDims dims = validate_head(heads[0], shape, ctx, "heads[0]");
  shape.dk = dims.dk;
  shape.dv = dims.dv;
  shape.dims_from = "heads[0] (the heads of a layer share d_k and d_v)";
  for (Index h = 1; h < head_count(); ++h)
    validate_head(heads[static_cast<size_t>(h)], shape, ctx, fmt::format("heads[{}]", h));
}

void MlpLayer::validate(Index d, const std::string& ctx) const {
  const Index h = w1.rows();
  require(h >= 1, ctx, "hidden", h, ">= 1");
  check_shape(w1, h, d, ctx, "w1");
  check_shape(w2, d, h, ctx, "w2");
  if (b1.size() != h || b2.size() != d)
    throw std::invalid_argument(fmt::format("{}: b1, b2 have sizes {}, {}, must be {}, {}", ctx,
                                            b1.size(), b2.size(), h, d));
  require_finite(ctx, "b1", b1);
  require_finite(ctx, "b2", b2);
}

std::string layer_kind(const Layer& layer) {
  return std::holds_alternative<AttentionLayer>(layer) ? "attention" : "mlp";
}

Index parameter_count(const Layer& layer) {
  Index count = 0;
  Layer copy = layer;  // for_each_parameter takes a mutable layer; sizes only are read
  for_each_parameter(copy, [&](double*, Index size) { count += size; });
  return count;
}

namespace detail {

NormalizationStatus sinkhorn_trace(const Matrix& u, const Matrix& kk, const Vector& w,
                                   const Vector& logw, const SinkhornNormalizationOptions& opt,
                                   SinkhornTrace& trace, Vector& col) {
  trace.f.clear();
  trace.g.clear();
  SinkhornLoop loop;
  loop.measure = SinkhornLoop::Measure::columns;
  loop.final_check = false;  // no extra pass per training step (see SinkhornLoop)
  loop.context = "sinkhorn normalization";
  loop.observer = [&trace](const SinkhornIterate& it) {
    trace.g.push_back(it.g);
    trace.f.push_back(it.f);
  };
  SinkhornRun run = sinkhorn_loop(affinity_half_steps(u, kk, logw, logw), w, w, opt, loop);
  col = logw + run.g;
  return run.status;
}

HeadForward head_forward(const AttentionLayer& layer, Index h, const Matrix& x, const Vector& w,
                         const Matrix& z, bool self, bool record_trace) {
  HeadForward hf;
  const Head& hd = layer.heads[static_cast<size_t>(h)];
  hf.u = layer.beta * (z * hd.q.transpose());
  hf.kk = x * hd.k.transpose();
  hf.vv = x * hd.v.transpose();
  const Vector logw = log_weights(w);
  if (layer.normalization == Normalization::sinkhorn) {
    const Matrix u_ctx = self ? Matrix() : Matrix(layer.beta * (x * hd.q.transpose()));
    const Matrix& uc = self ? hf.u : u_ctx;
    if (record_trace) {
      hf.status = sinkhorn_trace(uc, hf.kk, w, logw, layer.sinkhorn, hf.trace, hf.col);
    } else {
      hf.col = normalization_offsets(Normalization::sinkhorn, uc, hf.kk, w, w, layer.sinkhorn,
                                     hf.status);
    }
  } else {
    hf.col = logw;
  }
  lse_reduce(hf.u, hf.kk, hf.col, hf.vv, hf.lse, hf.a);
  if (layer.normalization == Normalization::none)
    for (Index i = 0; i < hf.a.rows(); ++i) hf.a.row(i) *= std::exp(hf.lse[i]);
  return hf;
}

}  // namespace detail

Matrix apply_layer(const Layer& layer, const Measure& mu, const Matrix& queries,
                   SinkhornStats* stats) {
  if (queries.cols() != mu.dim())
    throw std::invalid_argument(fmt::format(
        "layer: queries have dimension {}, must equal the measure's ({})", queries.cols(),
        mu.dim()));
  if (const auto* m = std::get_if<MlpLayer>(&layer)) {
    Matrix hidden = (queries * m->w1.transpose()).rowwise() + m->b1.transpose();
    hidden = hidden.cwiseMax(0.0);
    Matrix out = queries + hidden * m->w2.transpose();
    out.rowwise() += m->b2.transpose();
    return out;
  }
  const auto& a = std::get<AttentionLayer>(layer);
  Matrix out = queries;
  for (Index h = 0; h < a.head_count(); ++h) {
    const detail::HeadForward hf =
        detail::head_forward(a, h, mu.points(), mu.weights(), queries, false, false);
    out.noalias() += a.step * (hf.a * a.heads[static_cast<size_t>(h)].w.transpose());
    if (stats && a.normalization == Normalization::sinkhorn) stats->add(hf.status);
  }
  require_output_finite(
      "attention layer", "out", out.data(), out.size(), out.cols(),
      a.normalization == Normalization::none
          ? std::string("for normalization 'none' exp(beta <q, k>) overflows when beta |q||k| > 709")
          : fmt::format("for normalization '{}' the scores beta <q, k> (beta = {:g}) or the values "
                        "overflow double precision: reduce beta or rescale the points",
                        to_string(a.normalization), a.beta));
  return out;
}

}  // namespace attnflow
