// Private pieces of one attention head shared by the forward pass (layers.cpp) and the
// backward pass (model_grad.cpp), so both evaluate exactly the same arithmetic.
#pragma once

#include <algorithm>
#include <vector>

#include "attnflow/model/layers.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow::detail {

// Threads for a loop over `count` independent measures (each one's arithmetic is the same on
// any thread, so results do not depend on this number).
inline int batch_threads(long count) {
  return static_cast<int>(std::max(1L, std::min<long>(num_threads(), count)));
}

// Log-domain Sinkhorn on the self-affinity s_ij = <u_i, kk_j> with marginals (w, w): the
// Sinkhorn engine exactly as normalization_offsets runs it (normalize.cpp), with an observer
// recording every potential so the backward pass can run through the iterations:
//   g[0] = 0; f[t] = -LSE_j(log w_j + g[t]_j + s_ij); g[t] = -LSE_i(log w_i + f[t-1]_i + s_ij)
// (t = 0..T-1, f-update t follows g-update t). Sets col = log w + g[T-1]; no final violation
// pass for a fixed number of iterations (SinkhornLoop::final_check).
struct SinkhornTrace {
  std::vector<Vector> f, g;
};
NormalizationStatus sinkhorn_trace(const Matrix& u, const Matrix& kk, const Vector& w,
                                   const Vector& logw, const SinkhornNormalizationOptions& opt,
                                   SinkhornTrace& trace, Vector& col);

// One head on context points x (n, d) with weights w and queries z (nq, d):
//   u = beta z q^T (nq, dk), kk = x k^T (n, dk), vv = x v^T (n, dv),
//   col = log w (+ g for sinkhorn), lse_i = log sum_j exp(<u_i, kk_j> + col_j),
//   a_i = sum_j P_ij vv_j (nq, dv) with P the layer's normalization.
struct HeadForward {
  Matrix u, kk, vv, a;
  Vector col, lse;
  SinkhornTrace trace;         // sinkhorn only, when requested
  NormalizationStatus status;  // sinkhorn only
};
// self: z is x itself (the measure's own atoms), so sinkhorn reuses u for the self-coupling.
HeadForward head_forward(const AttentionLayer& layer, Index h, const Matrix& x, const Vector& w,
                         const Matrix& z, bool self, bool record_trace);

}  // namespace attnflow::detail
