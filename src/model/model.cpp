#include "attnflow/model/model.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <numeric>

#include "attnflow/base/error.hpp"
#include "head.hpp"

namespace attnflow {

void Model::validate() const {
  require(dim >= 1, "model", "dim", dim, ">= 1");
  require(!layers.empty(), "model", "layers", layers.size(), ">= 1");
  for (size_t l = 0; l < layers.size(); ++l) {
    const std::string ctx = fmt::format("model: layers[{}] ({})", l, layer_kind(layers[l]));
    std::visit([&](const auto& layer) { layer.validate(dim, ctx); }, layers[l]);
  }
}

Index Model::parameter_count() const {
  Index c = 0;
  for (const Layer& l : layers) c += attnflow::parameter_count(l);
  return c;
}

void ModelSpec::validate() const {
  constexpr const char* ctx = "model";
  require(dim >= 1, ctx, "dim", dim, ">= 1");
  require(depth >= 1, ctx, "depth", depth, ">= 1");
  require(heads >= 1, ctx, "heads", heads, ">= 1");
  require(head_dim >= 0, ctx, "head_dim", head_dim, ">= 0");
  require(mlp_hidden >= 0, ctx, "mlp_hidden", mlp_hidden, ">= 0");
  require(std::isfinite(beta), ctx, "beta", beta, "finite");
  require(std::isfinite(step), ctx, "step", step, "finite");
  require(std::isfinite(init_scale) && init_scale >= 0.0, ctx, "init_scale", init_scale,
          "finite and >= 0");
  sinkhorn.validate(ctx, "sinkhorn.");
}

namespace {
Matrix gaussian(Index rows, Index cols, double sd, Rng& rng) {
  Matrix m(rows, cols);
  rng.fill_normal(m);
  return m * sd;
}
}  // namespace

Model random_model(const ModelSpec& spec, Rng& rng) {
  spec.validate();
  Model model;
  model.dim = spec.dim;
  const Index d = spec.dim, dk = spec.head_dim > 0 ? spec.head_dim : spec.dim;
  const double s = spec.init_scale;
  for (Index l = 0; l < spec.depth; ++l) {
    AttentionLayer a;
    a.normalization = spec.normalization;
    a.beta = spec.beta;
    a.step = spec.step > 0.0 ? spec.step : 1.0 / static_cast<double>(spec.depth);
    a.sinkhorn = spec.sinkhorn;
    const auto sd_d = s / std::sqrt(static_cast<double>(d));
    const auto sd_k = s / std::sqrt(static_cast<double>(dk));
    // Drawn group by group (every q, then every k, v, w): the order of for_each_parameter.
    a.heads.resize(static_cast<size_t>(spec.heads));
    for (Head& h : a.heads) h.q = gaussian(dk, d, sd_d, rng);
    for (Head& h : a.heads) h.k = gaussian(dk, d, sd_d, rng);
    for (Head& h : a.heads) h.v = gaussian(dk, d, sd_d, rng);
    for (Head& h : a.heads) h.w = gaussian(d, dk, sd_k, rng);
    model.layers.emplace_back(std::move(a));
    if (spec.mlp_hidden > 0) {
      MlpLayer m;
      const Index hid = spec.mlp_hidden;
      m.w1 = gaussian(hid, d, s / std::sqrt(static_cast<double>(d)), rng);
      m.b1 = Vector::Zero(hid);
      m.w2 = gaussian(d, hid, s / std::sqrt(static_cast<double>(hid)), rng);
      m.b2 = Vector::Zero(d);
      model.layers.emplace_back(std::move(m));
    }
  }
  return model;
}

namespace {
void check_input(const Model& model, const Measure& mu, const char* what) {
  model.validate();
  if (mu.dim() != model.dim)
    throw std::invalid_argument(fmt::format("model: {} has dimension {}, must equal the model's ({})",
                                            what, mu.dim(), model.dim));
}
}  // namespace

Matrix evaluate(const Model& model, const Measure& mu, const Matrix& queries,
                SinkhornStats* stats) {
  check_input(model, mu, "measure");
  if (queries.cols() != model.dim)
    throw std::invalid_argument(fmt::format("model: queries have dimension {}, must equal the model's ({})",
                                            queries.cols(), model.dim));
  require_finite("model", "queries", queries);
  Measure context = mu;
  Matrix z = queries;
  for (const Layer& layer : model.layers) {
    // (G2 o G1)(mu, z) = G2(G1(mu, .)#mu, G1(mu, z)): both move with the same layer.
    // The context's own normalization is the one the queries use: counted once.
    Matrix next = apply_layer(layer, context, context.points(), stats);
    z = apply_layer(layer, context, z);
    context = Measure(std::move(next), context.weights(), "pushed-forward measure");
  }
  return z;
}

Matrix transport(const Model& model, const Measure& mu, SinkhornStats* stats) {
  check_input(model, mu, "measure");
  Measure context = mu;
  for (const Layer& layer : model.layers)
    context = Measure(apply_layer(layer, context, context.points(), stats), context.weights(),
                      "pushed-forward measure");
  return context.points();
}

Measure merge_atoms(const Matrix& x, const Vector& w, double tol) {
  require(std::isfinite(tol) && tol >= 0.0, "merge_atoms", "tol", tol, "finite and >= 0");
  const Vector wn = normalized_weights(w, x.rows(), "merge_atoms: weights");
  require_finite("merge_atoms", "points", x);
  std::vector<Index> order(static_cast<size_t>(x.rows()));
  std::iota(order.begin(), order.end(), Index{0});
  // Lexicographic order of rows; ties keep row order so the representative is the first row.
  std::stable_sort(order.begin(), order.end(), [&](Index a, Index b) {
    for (Index t = 0; t < x.cols(); ++t)
      if (x(a, t) != x(b, t)) return x(a, t) < x(b, t);
    return false;
  });
  std::vector<Index> rep_of(static_cast<size_t>(x.rows()), -1);
  Index rep = -1;
  for (Index r : order) {
    const bool same = rep >= 0 && (x.row(r) - x.row(rep)).cwiseAbs().maxCoeff() <= tol;
    if (!same) rep = r;
    rep_of[static_cast<size_t>(r)] = rep;
  }
  // Output atoms in order of their first member's row index (stable, independent of sorting).
  std::vector<Index> slot(static_cast<size_t>(x.rows()), -1);
  std::vector<Index> reps;
  for (Index i = 0; i < x.rows(); ++i) {
    const Index rp = rep_of[static_cast<size_t>(i)];
    if (slot[static_cast<size_t>(rp)] < 0) {
      slot[static_cast<size_t>(rp)] = static_cast<Index>(reps.size());
      reps.push_back(rp);
    }
  }
  Matrix px(static_cast<Index>(reps.size()), x.cols());
  Vector pw = Vector::Zero(static_cast<Index>(reps.size()));
  for (size_t s = 0; s < reps.size(); ++s) px.row(static_cast<Index>(s)) = x.row(reps[s]);
  for (Index i = 0; i < x.rows(); ++i)
    pw[slot[static_cast<size_t>(rep_of[static_cast<size_t>(i)])]] += wn[i];
  return Measure(std::move(px), std::move(pw), "merged measure");
}

Measure push_forward(const Model& model, const Measure& mu, double merge_tol,
                     SinkhornStats* stats) {
  const Measure merged = merge_atoms(mu.points(), mu.weights(), 0.0);
  const Matrix moved = transport(model, merged, stats);
  return merge_atoms(moved, merged.weights(), merge_tol);
}

std::vector<Measure> push_forward_batch(const Model& model, const std::vector<Measure>& mus,
                                        double merge_tol) {
  model.validate();
  std::vector<Measure> out(mus.size());
  std::vector<std::exception_ptr> errors(mus.size());
  const long count = static_cast<long>(mus.size());
  // One measure per iteration; each is computed by the same code whatever the thread count.
#pragma omp parallel for schedule(dynamic, 1) num_threads(detail::batch_threads(count))
  for (long b = 0; b < count; ++b) {
    try {
      out[static_cast<size_t>(b)] = push_forward(model, mus[static_cast<size_t>(b)], merge_tol);
    } catch (...) {
      errors[static_cast<size_t>(b)] = std::current_exception();
    }
  }
  for (const auto& e : errors)  // the first failing measure, in batch order
    if (e) std::rethrow_exception(e);
  return out;
}

std::vector<Matrix> evaluate_batch(const Model& model, const std::vector<Measure>& mus,
                                   const std::vector<Matrix>& queries) {
  if (queries.size() != mus.size())
    throw std::invalid_argument(fmt::format("model: queries has {} entries, must equal the batch size ({})",
                                            queries.size(), mus.size()));
  model.validate();
  std::vector<Matrix> out(mus.size());
  std::vector<std::exception_ptr> errors(mus.size());
  const long count = static_cast<long>(mus.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(detail::batch_threads(count))
  for (long b = 0; b < count; ++b) {
    try {
      out[static_cast<size_t>(b)] =
          evaluate(model, mus[static_cast<size_t>(b)], queries[static_cast<size_t>(b)]);
    } catch (...) {
      errors[static_cast<size_t>(b)] = std::current_exception();
    }
  }
  for (const auto& e : errors)  // the first failing measure, in batch order
    if (e) std::rethrow_exception(e);
  return out;
}

}  // namespace attnflow
