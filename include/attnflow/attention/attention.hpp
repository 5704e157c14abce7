// Attention on measures (docs/math.md section 1): queries mu = (X, a), keys nu = (Y, b), values
// (m, p) (default Y), affinity s_ij = beta <Q x_i, K y_j>, and a normalization of
// k_ij = exp(s_ij):
//   softmax : P_ij = b_j k_ij / sum_l b_l k_il        (conditional distribution)
//   sinkhorn: P_ij = pi_ij / a_i, pi in Pi(a, b)       (coupling; see sinkhorn.hpp)
//   none    : P_ij = b_j k_ij                          (unnormalized, "USA")
// Output out_i = sum_h W_h sum_j P^h_ij V_h v_j. Every sum goes through the kernel.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "attnflow/base/collective.hpp"
#include "attnflow/measure/measure.hpp"
#include "attnflow/attention/head.hpp"
#include "attnflow/attention/normalization.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

// One head (head.hpp: q, k (d_k, d), v (p_h, p), w (d_out, p_h); empty = identity) with its
// own normalization: AttentionHead{q, k, v, w, normalization} or {head, normalization}.
struct AttentionHead : Head {
  Normalization normalization = Normalization::softmax;

  AttentionHead() = default;
  AttentionHead(Matrix q_, Matrix k_ = {}, Matrix v_ = {}, Matrix w_ = {},
                Normalization normalization_ = Normalization::softmax)
      : Head{std::move(q_), std::move(k_), std::move(v_), std::move(w_)},
        normalization(normalization_) {}
  AttentionHead(Head head, Normalization normalization_ = Normalization::softmax)
      : Head(std::move(head)), normalization(normalization_) {}
};

struct AttentionOptions {
  double beta = 1.0;
  // Heads; empty means one head with identity Q, K, V, W and `normalization` below.
  std::vector<AttentionHead> heads;
  Normalization normalization = Normalization::softmax;  // used when heads is empty
  SinkhornNormalizationOptions sinkhorn;                 // used by sinkhorn heads
  // Several processes (collective.hpp; null = this one alone): each computes its part of the
  // query rows of every kernel pass (and of the Sinkhorn half-steps), gathered in rank order:
  // the result is one process's bit for bit. Every process holds all points here
  // (attention_split below holds each process's rows only).
  const Collective* comm = nullptr;

  // Throws std::invalid_argument naming the field (e.g. "attention: beta = nan, must be finite").
  void validate(Index d_query, Index d_key, Index p) const;
};

struct AttentionResult {
  Matrix out;               // (n, d_out)
  std::vector<Vector> lse;  // per head, (n): log sum_j b_j exp(s_ij) (softmax/none); for
                            // sinkhorn, the log-normalizer of the final conditional
  std::vector<NormalizationStatus> status;  // per head (Sinkhorn iterations, convergence)
  std::string device = "cpu";  // where the reductions ran: current_device() (kernel_cuda.hpp)
};

// values: (m, p); pass std::nullopt to use the keys' points.
AttentionResult attention(const Measure& queries, const Measure& keys,
                          const std::optional<Matrix>& values, const AttentionOptions& options);

// attention() with the points split across the processes of split.comm, for problems whose
// points outgrow one machine: this process passes its rows split.queries() of the queries x and
// split.keys() of the keys y and of the values (null: the keys' points), and the whole weights
// a (n) and b (m) (empty: uniform). Every kernel pass reduces this process's query rows against
// the keys streamed from their owners (lse_reduce_split_keys), the Sinkhorn half-steps too
// (affinity_half_steps with SplitRows). Returns this process's rows of out and of each head's
// lse: those rows of attention() on the whole points, bit for bit (the heads' maps multiply
// blocks of 256 rows in both). Requires attention_splittable; CPU only; options.comm unused.
AttentionResult attention_split(const Matrix& x, const Matrix& y, const Matrix* values, const Vector& a,
                                const Vector& b, const AttentionOptions& options, const SplitRows& split);
// Whether attention_split takes these sizes: n, m >= 5, and the heads' key and value
// dimensions <= 16 (the kernel's fused path, LseStream::supports).
bool attention_splittable(Index n, Index m, const AttentionOptions& options, Index d, Index p);

// Self-attention: keys = queries, values = their points.
AttentionResult self_attention(const Measure& mu, const AttentionOptions& options);

}  // namespace attnflow
