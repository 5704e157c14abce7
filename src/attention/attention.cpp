#include "attnflow/attention/attention.hpp"

#include <cmath>

#include "attnflow/base/collective.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"

namespace attnflow {

namespace {

constexpr const char* kCtx = "attention";

// Checks an optional head matrix: empty (identity) or rows x cols with `cols` fixed.
void check_head_matrix(const Matrix& a, std::string_view name, Index h, Index cols) {
  if (a.rows() == 0 && a.cols() == 0) return;  // default-constructed: the identity
  if (a.size() == 0)  // (0, 3) or (20, 0) is a mistake, never the identity
    throw std::invalid_argument(fmt::format(
        "{}: heads[{}].{} has shape ({}, {}), must have >= 1 row and column (or be empty "
        "(0, 0) for the identity)", kCtx, h, name, a.rows(), a.cols()));
  if (a.cols() != cols)
    throw std::invalid_argument(fmt::format("{}: heads[{}].{} has {} columns, must be {}", kCtx,
                                            h, name, a.cols(), cols));
  require_finite(kCtx, fmt::format("heads[{}].{}", h, name), a);
}

Matrix apply_right(const Matrix& x, const Matrix& m) {  // rows of x times m^T (identity if empty)
  if (m.size() == 0) return x;
  return x * m.transpose();
}

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
  require(std::isfinite(beta), kCtx, "beta", beta, "finite");
  if (d_query != d_key)
    throw std::invalid_argument(fmt::format(
        "{}: queries have dimension {} and keys {}, must be equal", kCtx, d_query, d_key));
  sinkhorn.validate(kCtx, "sinkhorn.");
  Index dout = -1;
  for (size_t h = 0; h < heads.size(); ++h) {
    const AttentionHead& hd = heads[h];
    check_head_matrix(hd.q, "q", h, d_query);
    check_head_matrix(hd.k, "k", h, d_key);
    const Index dq = hd.q.size() ? hd.q.rows() : d_query;
    const Index dk = hd.k.size() ? hd.k.rows() : d_key;
    if (dq != dk)
      throw std::invalid_argument(fmt::format(
          "{}: heads[{}] q has {} rows and k has {}, must be equal", kCtx, h, dq, dk));
    check_head_matrix(hd.v, "v", h, p);
    const Index ph = hd.v.size() ? hd.v.rows() : p;
    check_head_matrix(hd.w, "w", h, ph);
    const Index dh = hd.w.size() ? hd.w.rows() : ph;
    if (dout >= 0 && dh != dout)
      throw std::invalid_argument(fmt::format(
          "{}: heads[{}] output dimension = {}, must equal heads[0]'s ({})", kCtx, h, dh, dout));
    dout = dh;
  }
}

AttentionResult attention(const Measure& queries, const Measure& keys,
                          const std::optional<Matrix>& values, const AttentionOptions& options) {
  const Matrix& vals = values ? *values : keys.points();
  if (values) {
    if (values->rows() != keys.size())
      throw std::invalid_argument(fmt::format(
          "{}: values have {} rows, must equal the number of keys ({})", kCtx, values->rows(),
          keys.size()));
    if (values->cols() == 0) throw_message(kCtx, "values have 0 columns, must have >= 1");
    require_finite(kCtx, "values", *values);
  }
  options.validate(queries.dim(), keys.dim(), vals.cols());

  std::vector<AttentionHead> heads = options.heads;
  if (heads.empty()) heads.push_back(AttentionHead{{}, {}, {}, {}, options.normalization});

  AttentionResult res;
  for (size_t h = 0; h < heads.size(); ++h) {
    const AttentionHead& hd = heads[h];
    // u = beta Q x_i (beta folded into the queries), v = K y_j: s_ij = <u_i, v_j>.
    const Matrix u = options.beta * apply_right(queries.points(), hd.q);
    const Matrix v = apply_right(keys.points(), hd.k);
    const Matrix hv = apply_right(vals, hd.v);
    NormalizationStatus status;
    const Collective* comm = options.comm && options.comm->size() > 1 ? options.comm : nullptr;
    const Vector col = normalization_offsets(hd.normalization, u, v, queries.weights(),
                                             keys.weights(), options.sinkhorn, status, comm);
    Vector lse;
    Matrix out;
    if (!comm) {
      lse_reduce(u, v, col, hv, lse, out);
    } else {
      // This rank's query rows (kernel_row_parts: equal to those rows of one pass), then all.
      const std::vector<Range> parts = kernel_row_parts(u.rows(), comm->size());
      const Range r = parts[static_cast<std::size_t>(comm->rank())];
      Vector my_lse;
      Matrix my_out(0, hv.cols());
      if (r.count > 0) lse_reduce(u.middleRows(r.first, r.count), v, col, hv, my_lse, my_out);
      const std::vector<double> all_lse = allgather_rows(*comm, parts, my_lse.data());
      const std::vector<double> all_out = allgather_rows(*comm, parts, my_out.data(), hv.cols());
      lse = Eigen::Map<const Vector>(all_lse.data(), u.rows());
      out = Eigen::Map<const Matrix>(all_out.data(), u.rows(), hv.cols());
    }
    if (hd.normalization == Normalization::none) {
      // Unnormalized: sum_j b_j k_ij v_j = exp(lse_i) * (softmax average).
      for (Index i = 0; i < out.rows(); ++i) out.row(i) *= std::exp(lse[i]);
    }
    Matrix contrib = apply_right(out, hd.w);
    if (h == 0) res.out = std::move(contrib);
    else res.out += contrib;
    res.lse.push_back(std::move(lse));
    res.status.push_back(std::move(status));
  }
  require_output_finite(kCtx, "out", res.out.data(), res.out.size(), res.out.cols(),
                        overflow_cause(heads, options.beta));
  res.device = device_name(current_device().device);
  return res;
}

AttentionResult self_attention(const Measure& mu, const AttentionOptions& options) {
  return attention(mu, mu, std::nullopt, options);
}

}  // namespace attnflow
