// Attention flows (flow.hpp): option validation, state conversions, the fields and the
// (noisy) advance. Every sum of exponentials is one lse_reduce pass per head.
#include "attnflow/flow/flow.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

#include "attnflow/base/collective.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "attnflow/measure/measure.hpp"
#include "attnflow/base/parallel.hpp"

namespace attnflow {

namespace {

constexpr const char* kFlowCtx = "flow";
// Largest argument whose exp is a finite double.
constexpr double kMaxExpArg = 709.78;

bool is_attention(FieldKind k) {
  return k == FieldKind::sa || k == FieldKind::usa || k == FieldKind::sinkhorn;
}

// Equal as linear maps (an empty matrix stands for the identity).
bool same_matrix(const Matrix& a, const Matrix& b) {
  if (a.size() == 0 || b.size() == 0) return a.size() == b.size();
  return a.rows() == b.rows() && a.cols() == b.cols() && a == b;
}

bool identity_heads(const std::vector<Head>& heads) {
  if (heads.size() > 1) return false;
  return heads.empty() || is_identity(heads[0]);
}

}  // namespace

FieldKind parse_field_kind(std::string_view name, std::string_view context, std::string_view field) {
  if (name == "sa") return FieldKind::sa;
  if (name == "usa") return FieldKind::usa;
  if (name == "sinkhorn") return FieldKind::sinkhorn;
  if (name == "kuramoto") return FieldKind::kuramoto;
  if (name == "meanshift") return FieldKind::meanshift;
  if (name == "hardmax") return FieldKind::hardmax;
  if (name == "vlasov") return FieldKind::vlasov;
  throw_invalid(context, field, fmt::format("\"{}\"", name),
                "one of sa, usa, sinkhorn, kuramoto, meanshift, hardmax, vlasov");
}

std::string to_string(FieldKind kind) {
  switch (kind) {
    case FieldKind::sa: return "sa";
    case FieldKind::usa: return "usa";
    case FieldKind::sinkhorn: return "sinkhorn";
    case FieldKind::kuramoto: return "kuramoto";
    case FieldKind::meanshift: return "meanshift";
    case FieldKind::hardmax: return "hardmax";
    case FieldKind::vlasov: return "vlasov";
  }
  return "?";
}

Interaction parse_interaction(std::string_view name, std::string_view context, std::string_view field) {
  if (name == "gaussian" || name == "aggregation") return Interaction::gaussian;
  if (name == "power") return Interaction::power;
  if (name == "custom") return Interaction::custom;
  throw_invalid(context, field, fmt::format("\"{}\"", name),
                "one of gaussian (aggregation), power, custom");
}

std::string to_string(Interaction interaction) {
  switch (interaction) {
    case Interaction::gaussian: return "gaussian";
    case Interaction::power: return "power";
    case Interaction::custom: return "custom";
  }
  return "?";
}

void check_qkv(std::string_view qkv, std::string_view context, std::string_view field) {
  if (qkv != "identity" && qkv != "gaussian" && qkv != "goe")
    throw_invalid(context, field, fmt::format("\"{}\"", qkv), "one of identity, gaussian, goe");
}

std::vector<Head> make_heads(int count, Index d, std::string_view qkv, std::uint64_t seed) {
  require(count >= 1, kFlowCtx, "heads", count, ">= 1");
  require(d >= 1, kFlowCtx, "d", d, ">= 1");
  std::vector<Head> heads(static_cast<size_t>(count));
  check_qkv(qkv);
  if (qkv == "identity") return heads;
  const bool gaussian = qkv == "gaussian";
  const double dd = static_cast<double>(d);
  for (int h = 0; h < count; ++h) {
    // Stream 3h + m for matrix m of head h: adding heads never changes the earlier ones.
    const auto draw = [&](int m) {
      Rng rng(seed, static_cast<std::uint64_t>(3 * h + m));
      Matrix g(d, d);
      rng.fill_normal(g);
      return g;
    };
    Head& hd = heads[static_cast<size_t>(h)];
    if (gaussian) {
      hd.q = draw(0) / std::sqrt(dd);
      hd.k = draw(1) / std::sqrt(dd);
      hd.v = draw(2) / std::sqrt(dd);
    } else {
      const Matrix gk = draw(1), gv = draw(2);
      hd.k = (gk + gk.transpose()) / std::sqrt(2.0 * dd);
      hd.v = (gv + gv.transpose()) / std::sqrt(2.0 * dd);
    }
  }
  return heads;
}

void FlowOptions::validate(Index n, Index d) const {
  require(n >= 1, kFlowCtx, "n", n, ">= 1");
  require(d >= 1, kFlowCtx, "d", d, ">= 1");
  require(std::isfinite(beta) && beta >= 0.0, kFlowCtx, "beta", beta, "finite and >= 0");
  if (weights.size()) normalized_weights(weights, n, kFlowCtx);
  for (size_t i = 0; i < heads.size(); ++i)
    validate_head(heads[i], {.d_query = d, .d_key = d, .d_value = d, .d_out = d}, kFlowCtx,
                  fmt::format("heads[{}]", i));
  require(kappa >= 0.0, kFlowCtx, "kappa", kappa, ">= 0 (0 or inf: no noise)");
  require(std::isfinite(usa_log_shift), kFlowCtx, "usa_log_shift", usa_log_shift, "finite");
  sinkhorn.validate(kFlowCtx, "sinkhorn.");
  scheme.validate();
  const std::string k = to_string(kind);
  if (!is_attention(kind) && !identity_heads(heads))
    throw_invalid(kFlowCtx, "heads", heads.size(),
                  fmt::format("one identity head (empty q, k, v, w) for kind {}", k));
  if (scheme.scheme != Scheme::none) {
    if (!is_attention(kind))
      throw_invalid(kFlowCtx, "scheme", to_string(scheme.scheme),
                    fmt::format("none for kind {} (schemes wrap sa, usa, sinkhorn)", k));
    require(sphere, kFlowCtx, "sphere", sphere ? "true" : "false",
            fmt::format("true under scheme {} (theta lives on the sphere)", to_string(scheme.scheme)));
    require(!(kappa > 0.0 && std::isfinite(kappa)), kFlowCtx, "kappa", kappa,
            "0 (no noise) under a normalization scheme");
  }
  if (kind == FieldKind::kuramoto) {
    require(d == 2, kFlowCtx, "d", d, "2 for kind kuramoto (the state is the angle on the circle)");
    require(kuramoto_normalization != Normalization::sinkhorn, kFlowCtx, "kuramoto_normalization",
            to_string(kuramoto_normalization), "softmax (SA form) or none (USA form)");
  }
  if (kind == FieldKind::hardmax) require(n >= 2, kFlowCtx, "n", n, ">= 2 for kind hardmax");
  if (kind == FieldKind::meanshift)
    require(beta > 0.0, kFlowCtx, "beta", beta, "> 0 for kind meanshift");
  if (kind == FieldKind::vlasov) {
    const VlasovOptions& v = vlasov;
    if (v.interaction == Interaction::gaussian)
      require(v.sigma > 0.0 && std::isfinite(v.sigma), kFlowCtx, "vlasov.sigma", v.sigma, "> 0");
    if (v.interaction == Interaction::power) {
      require(v.b >= 1.0 && std::isfinite(v.b), kFlowCtx, "vlasov.b", v.b, ">= 1");
      require(v.a > v.b && std::isfinite(v.a), kFlowCtx, "vlasov.a", v.a, fmt::format("> b = {}", v.b));
    }
    if (v.interaction == Interaction::custom && !v.kernel)
      throw_message(kFlowCtx, "vlasov.kernel is empty, must be set for interaction custom");
  }
}

std::string flow_split_refusal(const FlowOptions& o, Index n, Index d, int processes) {
  if (o.kind != FieldKind::sa && o.kind != FieldKind::usa)
    return fmt::format("model.kind = \"{}\", must be sa or usa", to_string(o.kind));
  if (o.kappa > 0.0 && std::isfinite(o.kappa)) return fmt::format("model.kappa = {}, must be 0 (no noise)", o.kappa);
  const std::vector<Head> one(1);
  for (const Head& h : o.heads.empty() ? one : o.heads) {
    const Index k = h.k.size() ? h.k.rows() : d, p = h.v.size() ? h.v.rows() : d;
    if (k > 16 || p > 16)
      return fmt::format("a head's key dimension {} and value dimension {}, must be <= 16", k, p);
  }
  const Index tiles = (n + 511) / 512;
  if (!symmetric_splittable(n, 1, 0) || tiles < 2 * static_cast<Index>(processes))
    return fmt::format("measure.n = {}, must be >= 32768 and >= 1024 per process ({} processes)", n, processes);
  return "";
}

Flow::Flow(FlowOptions options, Index n, Index d) : options_(std::move(options)), n_(n), d_(d), rows_(n) {
  options_.validate(n, d);
  options_.weights = normalized_weights(options_.weights, n, kFlowCtx);
  log_w_ = log_weights(options_.weights);
  if (const SplitRows* sp = options_.split) {
    const int p = sp->comm ? sp->comm->size() : 0;
    if (!sp->comm || options_.comm || sp->query_parts != symmetric_row_parts(n, p) || sp->key_parts != sp->query_parts)
      throw std::invalid_argument(fmt::format(
          "{}: split tokens over {} parts, must be symmetric_row_parts(n = {}, processes) for queries and keys, "
          "without comm", kFlowCtx, sp->query_parts.size(), n));
    if (const std::string why = flow_split_refusal(options_, n, d, p); !why.empty())
      throw std::invalid_argument(fmt::format("{}: the tokens cannot be split across processes: {}", kFlowCtx, why));
    first_ = sp->queries().first;
    rows_ = sp->queries().count;
    log_w_ = Vector(log_w_.segment(first_, rows_));
  }
}

Index Flow::state_cols() const {
  if (options_.kind == FieldKind::kuramoto) return 1;
  if (options_.scheme.scheme != Scheme::none) return d_ + 1;
  return d_;
}

bool Flow::noisy() const { return options_.kappa > 0.0 && std::isfinite(options_.kappa); }

// A_i = sum_h sum_j P^h_ij W_h V_h x_j (sa, usa, sinkhorn; empty W_h: identity); x, a (n, d).
void Flow::record_sinkhorn(const SinkhornStatus& status) const {
  diag_.sinkhorn_marginal_error = status.marginal_error;
  if (!status.converged) {
    ++diag_.sinkhorn_not_converged;
    diag_.message = status.message;
  }
}

void Flow::attention_average(const Matrix& x, Matrix& a) const {
  const std::vector<Head> one(1);
  const std::vector<Head>& heads = options_.heads.empty() ? one : options_.heads;
  a.setZero(x.rows(), x.cols());
  Vector lse;
  Matrix out;
  for (const Head& h : heads) {
    // s_ij = <u_i, v_j> + col_j with beta folded into the queries u.
    const Matrix v = apply_map_rows(x, h.k);
    const Matrix vals = apply_map_rows(x, h.v);
    const bool symmetric = options_.kind != FieldKind::sinkhorn && same_matrix(h.q, h.k);
    const Matrix u = symmetric ? Matrix() : Matrix(options_.beta * apply_map_rows(x, h.q));
    if (const SplitRows* sp = options_.split) {
      // This process's rows; the others' stream through the kernel (sa, usa).
      lse.resize(x.rows());
      out.resize(x.rows(), vals.cols());
      if (symmetric) {
        lse_reduce_symmetric_split({v.data(), log_w_.data(), vals.data(), x.rows(), v.cols(), vals.cols(),
                                    options_.beta},
                                   sp->key_parts, *sp->comm, ReduceOutput{lse.data(), out.data()});
      } else {
        const Index k = v.cols(), p = vals.cols();
        Matrix table(x.rows(), k + 1 + p);
        table << v, log_w_, vals;
        lse_reduce_split_keys(u, table, k, p, sp->key_parts,
                              [&](Range, const Matrix& rows, Vector& col, Matrix& vv) {
                                col = rows.col(k);
                                vv = rows.middleCols(k + 1, p);
                              },
                              *sp->comm, lse, out);
      }
    } else if (options_.kind == FieldKind::sinkhorn) {
      NormalizationStatus status;
      const Vector col = normalization_offsets(Normalization::sinkhorn, u, v, options_.weights,
                                               options_.weights, options_.sinkhorn, status, options_.comm);
      record_sinkhorn(status);
      lse_reduce(u, v, col, vals, lse, out, options_.comm);
    } else if (symmetric) {
      // Q = K: the affinity is symmetric, one exponential serves (i, j) and (j, i).
      lse.resize(x.rows());
      out.resize(x.rows(), vals.cols());
      lse_reduce_symmetric({v.data(), log_w_.data(), vals.data(), x.rows(), v.cols(), vals.cols(),
                            options_.beta, options_.comm},
                           ReduceOutput{lse.data(), out.data()});
    } else {
      lse_reduce(u, v, log_w_, vals, lse, out, options_.comm);
    }
    if (options_.kind == FieldKind::usa) {
      // Unnormalized: sum_j w_j e^{s_ij} V x_j = exp(lse_i) * (softmax average).
      for (Index i = 0; i < out.rows(); ++i) out.row(i) *= usa_scale(options_, first_ + i, lse[i]);
    }
    if (h.w.size() == 0) a += out;
    else a += apply_map_rows(out, h.w);
  }
}

double usa_scale(const FlowOptions& o, Index token, double lse) {
  const double arg = lse - o.usa_log_shift;
  if (arg > kMaxExpArg)
    throw std::runtime_error(fmt::format(
        "flow: usa field overflows at token {}: log sum_j w_j exp(beta <Qx, Kx_j>) = {:.6g} "
        "(beta = {}); set usa_log_shift = beta (rescales time by e^beta) or use sa",
        token, lse, o.beta));
  return std::exp(arg);
}

}  // namespace attnflow
