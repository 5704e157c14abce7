#include "attnflow/attention/attention.hpp"

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

AttentionResult attention(const Measure& queries, const Measure& keys,
                          const std::optional<Matrix>& values, const AttentionOptions& options) {
  const Matrix& vals = values ? *values : keys.points();
  if (values) {
    if (values->rows() != keys.size())
      throw std::invalid_argument(fmt::format(
          "{}: values have {} rows, must equal the number of keys ({})", kAttentionCtx, values->rows(),
          keys.size()));
    if (values->cols() == 0) throw_message(kAttentionCtx, "values have 0 columns, must have >= 1");
    require_finite(kAttentionCtx, "values", *values);
  }
  options.validate(queries.dim(), keys.dim(), vals.cols());

  std::vector<AttentionHead> heads = options.heads;
  if (heads.empty()) heads.push_back(AttentionHead{{}, {}, {}, {}, options.normalization});

  AttentionResult res;
  for (size_t h = 0; h < heads.size(); ++h) {
    const AttentionHead& hd = heads[h];
    // u = beta Q x_i (beta folded into the queries), v = K y_j: s_ij = <u_i, v_j>.
    const Matrix u = options.beta * apply_map(queries.points(), hd.q);
    const Matrix v = apply_map(keys.points(), hd.k);
    const Matrix hv = apply_map(vals, hd.v);
    NormalizationStatus status;
    const Collective* comm = options.comm && options.comm->size() > 1 ? options.comm : nullptr;
    const Vector col = normalization_offsets(hd.normalization, u, v, queries.weights(),
                                             keys.weights(), options.sinkhorn, status, comm);
    Vector lse;
    Matrix out;
    lse_reduce(u, v, col, hv, lse, out, comm);  // with comm: query rows across the processes
    if (hd.normalization == Normalization::none) {
      // Unnormalized: sum_j b_j k_ij v_j = exp(lse_i) * (softmax average).
      for (Index i = 0; i < out.rows(); ++i) out.row(i) *= std::exp(lse[i]);
    }
    Matrix contrib = apply_map(out, hd.w);
    if (h == 0) res.out = std::move(contrib);
    else res.out += contrib;
    res.lse.push_back(std::move(lse));
    res.status.push_back(std::move(status));
  }
  require_output_finite(kAttentionCtx, "out", res.out.data(), res.out.size(), res.out.cols(),
                        overflow_cause(heads, options.beta));
  res.device = device_name(current_device().device);
  return res;
}

AttentionResult self_attention(const Measure& mu, const AttentionOptions& options) {
  return attention(mu, mu, std::nullopt, options);
}

}  // namespace attnflow
