#include "attnflow/attention/attention.hpp"

#include <algorithm>
#include <cmath>

#include "attnflow/base/collective.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"

namespace attnflow {

namespace {

constexpr const char* kAttentionCtx = "attention";

// Why an output can be non-finite when every input is finite, naming the heads' real
// normalization (M1): the inputs are too large for double precision.
std::string overflow_cause(const std::vector<AttentionHead>& heads, double beta) {
  for (const AttentionHead& hd : heads)
    if (hd.normalization == Normalization::none)
      return "for normalization 'none' exp(beta <q, k>) overflows when beta |q||k| > 709: use "
             "softmax or the log-normalizers in lse";
  return fmt::format(
      "for normalization '{}' the scores beta <Q x_i, K y_j> (beta = {:g}) or the values "
      "overflow double precision: reduce beta or rescale the points",
      to_string(heads.front().normalization), beta);
}

}  // namespace

void AttentionOptions::validate(Index d_query, Index d_key, Index p) const {
  require(std::isfinite(beta), kAttentionCtx, "beta", beta, "finite");
  if (d_query != d_key)
    throw std::invalid_argument(fmt::format(
        "{}: queries have dimension {} and keys {}, must be equal", kAttentionCtx, d_query, d_key));
  sinkhorn.validate(kAttentionCtx, "sinkhorn.");
  Index dout = -1;
  for (size_t h = 0; h < heads.size(); ++h) {
    const HeadShape shape{.d_query = d_query, .d_key = d_key, .d_value = p};
    const HeadDims dims = validate_head(heads[h], shape, kAttentionCtx, fmt::format("heads[{}]", h));
    if (dout >= 0 && dims.d_out != dout)
      throw std::invalid_argument(fmt::format(
          "{}: heads[{}] output dimension = {}, must equal heads[0]'s ({})", kAttentionCtx, h, dims.d_out,
          dout));
    dout = dims.d_out;
  }
}

namespace {

std::vector<AttentionHead> effective_heads(const AttentionOptions& options) {
  std::vector<AttentionHead> heads = options.heads;
  if (heads.empty()) heads.push_back(AttentionHead{{}, {}, {}, {}, options.normalization});
  return heads;
}

// Every head's passes for queries x (a) against keys y (b) with values vals: the whole points
// (split null; options.comm splits the query rows of each pass), or this process's rows of
// points split across processes.
AttentionResult run_heads(const Matrix& x, const Matrix& y, const Matrix& vals, const Vector& a, const Vector& b,
                          const AttentionOptions& options, const SplitRows* split) {
  const std::vector<AttentionHead> heads = effective_heads(options);
  const Collective* comm = !split && options.comm && options.comm->size() > 1 ? options.comm : nullptr;
  AttentionResult res;
  for (size_t h = 0; h < heads.size(); ++h) {
    const AttentionHead& hd = heads[h];
    // u = beta Q x_i (beta folded into the queries), v = K y_j: s_ij = <u_i, v_j>.
    const Matrix u = options.beta * apply_map_rows(x, hd.q);
    const Matrix v = apply_map_rows(y, hd.k);
    const Matrix hv = apply_map_rows(vals, hd.v);
    NormalizationStatus status;
    const Vector col = normalization_offsets(hd.normalization, u, v, a, b, options.sinkhorn, status, comm, split);
    Vector lse;
    Matrix out;
    if (split) {
      // The keys with their values, [v_j | hv_j], part by part from their owners.
      const Index k = v.cols(), p = hv.cols();
      Matrix table(v.rows(), k + p);
      table << v, hv;
      const KeyBlockForm form = [&](Range r, const Matrix& rows, Vector& c, Matrix& values) {
        c = col.segment(r.first, r.count);
        values = rows.rightCols(p);
      };
      lse_reduce_split_keys(u, table, k, p, split->key_parts, form, *split->comm, lse, out);
    } else {
      lse_reduce(u, v, col, hv, lse, out, comm);  // with comm: query rows across the processes
    }
    if (hd.normalization == Normalization::none) {
      // Unnormalized: sum_j b_j k_ij v_j = exp(lse_i) * (softmax average).
      for (Index i = 0; i < out.rows(); ++i) out.row(i) *= std::exp(lse[i]);
    }
    Matrix contrib = apply_map_rows(out, hd.w);
    if (h == 0) res.out = std::move(contrib);
    else res.out += contrib;
    res.lse.push_back(std::move(lse));
    res.status.push_back(std::move(status));
  }
  require_output_finite(kAttentionCtx, "out", res.out.data(), res.out.size(), res.out.cols(),
                        overflow_cause(heads, options.beta), split ? split->queries().first : 0);
  return res;
}

void require_values(const Matrix& values, Index keys, Index first_row) {
  if (values.rows() != keys)
    throw std::invalid_argument(fmt::format("{}: values have {} rows, must equal the number of keys ({})",
                                            kAttentionCtx, values.rows(), keys));
  if (values.cols() == 0) throw_message(kAttentionCtx, "values have 0 columns, must have >= 1");
  require_finite(kAttentionCtx, "values", values, first_row);
}

}  // namespace

AttentionResult attention(const Measure& queries, const Measure& keys,
                          const std::optional<Matrix>& values, const AttentionOptions& options) {
  const Matrix& vals = values ? *values : keys.points();
  if (values) require_values(*values, keys.size(), 0);
  options.validate(queries.dim(), keys.dim(), vals.cols());
  AttentionResult res = run_heads(queries.points(), keys.points(), vals, queries.weights(), keys.weights(), options,
                                  nullptr);
  res.device = device_name(current_device().device);
  return res;
}

bool attention_splittable(Index n, Index m, const AttentionOptions& options, Index d, Index p) {
  if (n < 5 || m < 5) return false;
  for (const AttentionHead& hd : effective_heads(options)) {
    const Index dk = hd.q.size() ? hd.q.rows() : d, dv = hd.v.size() ? hd.v.rows() : p;
    if (!LseStream::supports(n, dk, dv)) return false;
  }
  return true;
}

AttentionResult attention_split(const Matrix& x, const Matrix& y, const Matrix* values, const Vector& a,
                                const Vector& b, const AttentionOptions& options, const SplitRows& split) {
  const Index n = split.n();
  const Index m = split.m();
  const Range mq = split.queries(), mk = split.keys();
  if (x.rows() != mq.count || y.rows() != mk.count || (values && values->rows() != mk.count))
    throw std::invalid_argument(fmt::format(
        "{}: process {} holds queries ({}, {}), keys ({}, {}){}, must hold rows [{}, {}) of the queries and "
        "[{}, {}) of the keys and values", kAttentionCtx, split.comm->rank(), x.rows(), x.cols(), y.rows(), y.cols(),
        values ? fmt::format(" and values ({}, {})", values->rows(), values->cols()) : "", mq.first,
        mq.first + mq.count, mk.first, mk.first + mk.count));
  const Matrix& vals = values ? *values : y;
  if (values) require_values(*values, mk.count, mk.first);
  options.validate(x.cols(), y.cols(), vals.cols());
  if (!attention_splittable(n, m, options, x.cols(), vals.cols()))
    throw std::invalid_argument(fmt::format("{}: points split across processes with n = {}, m = {}, must have n, "
                                            "m >= 5 and key and value dimensions <= 16", kAttentionCtx, n, m));
  require_finite(kAttentionCtx, "queries", x, mq.first);
  require_finite(kAttentionCtx, "keys", y, mk.first);
  AttentionResult res = run_heads(x, y, vals, normalized_weights(a, n, "queries"), normalized_weights(b, m, "keys"),
                                  options, &split);
  res.device = device_name(Device::cpu);
  return res;
}

AttentionResult self_attention(const Measure& mu, const AttentionOptions& options) {
  return attention(mu, mu, std::nullopt, options);
}

}  // namespace attnflow
