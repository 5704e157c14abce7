// Small-system batch kernels: W = batch_width() independent systems of the same
// (n, d) side by side in the lanes of one SIMD vector (8 doubles with AVX-512), so that every
// operation of the per-system algorithm is one vector operation for W systems, whatever n and
// d (no horizontal sums, no tail loops). Used by Ensemble (ensemble.hpp) for the attention
// average of SA / USA with one identity head and for the fused ensemble observables.
//
// Layout "lanes": entry (i, k) of system l at data[batch_entry(i, k, n, d) * W + l]: the
// coordinates in blocks of kBatchCoordinateBlock (8; the last block shorter), each block's
// rows contiguous, so a block of coordinates of all n tokens is one contiguous slice (for
// d <= 8, simply (i * d + k)). Per-token scalars at [i * W + l]; per-system scalars at [l].
// Lanes never interact: a system's result does not depend on which lane or block it is in,
// nor on the thread count.
//
// The symmetric form (Q = K): with D_i = |x_i|^2 and D* = max_i D_i (per lane),
//   w_j e^{beta <x_i, x_j>} = K_ij u_j e^{beta (D_i + D*) / 2},
//   K_ij = e^{beta (<x_i, x_j> - (D_i + D_j) / 2)} = e^{-beta |x_i - x_j|^2 / 2} <= 1 (= K_ji),
//   u_j = w_j e^{beta (D_j - D*) / 2} <= w_j,
// so one exponential per unordered pair serves (i, j) and (j, i), and nothing overflows.
#pragma once

#include <cmath>

#include "attnflow/base/types.hpp"

namespace attnflow {

// log(2 beta) of the interaction energy E_beta = (1/(2 beta)) sum_ij w_i w_j e^{beta <x_i, x_j>}
// (docs/math.md), without overflowing 2 beta for beta near 1e308 (same bits otherwise). Both
// log-energies (this batched kernel's and observe's log_energy, which cluster theory's
// log_interaction_energy calls) subtract this one.
inline double log_two_beta(double beta) {
  return std::isfinite(2.0 * beta) ? std::log(2.0 * beta) : std::log(2.0) + std::log(beta);
}

// Systems per SIMD vector (lanes): 8 with AVX-512, 4 with AVX2, 2 otherwise (batch_width(),
// the double kernels); the float kernels (the ensemble's float32 precision) have twice as many:
// batch_lanes<float>() = 16 with AVX-512. Every kernel has a double and a float version, the
// same algorithm in the same order (the Sinkhorn normalization only in double).
Index batch_width();
template <class S>
Index batch_lanes();

constexpr Index kBatchCoordinateBlock = 8;
// The entry of (i, k) among the n d of one lane (the layout above): block b = k / 8 starts at
// 8 b n and holds its rows of width min(8, d - 8 b) one after the other.
inline Index batch_entry(Index i, Index k, Index n, Index d) {
  const Index k0 = k / kBatchCoordinateBlock * kBatchCoordinateBlock;
  const Index width = d - k0 < kBatchCoordinateBlock ? d - k0 : kBatchCoordinateBlock;
  return k0 * n + i * width + (k - k0);
}

template <class S>
struct BasicBatchAttentionInput {
  const S* x = nullptr;      // (n, d) per lane: the points (theta under a scheme)
  const S* log_w = nullptr;  // (n) per lane: log weights (-inf allowed)
  const S* beta = nullptr;   // per lane
  const S* w = nullptr;      // (n) per lane: the weights (observables; null: e^{log_w})
  Index n = 0, d = 0;
  // Optional: the pair kernel at these points and betas from batch_pair_observables
  // (BatchPairObservables::kernel). batch_attention_average then skips its Gram pass (or the
  // Gram entries of its one pass, d <= 8) and exponentials: the same values, so the same bits.
  const S* kernel = nullptr;
};
using BatchAttentionInput = BasicBatchAttentionInput<double>;
using BatchAttentionInputF = BasicBatchAttentionInput<float>;  // the single-precision path

// Entries (of S) of a pair-kernel buffer: K_ij for i < j (the row-by-row upper triangle), then
// D_i = |x_i|^2, batch_lanes<S>() lanes each.
template <class S = double>
Index batch_pair_kernel_size(Index n);

// a (n, d) per lane: the softmax average sum_j softmax_j(beta <x_i, x_j> + log w_j) x_j,
// and lse (n) per lane: log sum_j w_j e^{beta <x_i, x_j>} (callers scale a by e^{lse - shift}
// for USA). Work: n (n - 1) / 2 exponentials and 3 d n (n - 1) / 2 vector FMAs per W systems.
void batch_attention_average(const BatchAttentionInput& in, double* a, double* lse);
void batch_attention_average(const BatchAttentionInputF& in, float* a, float* lse);

// The Sinkhorn normalization of the same affinity (docs/math.md section 1.3: a = b = the
// weights, iteration 1 the softmax, then g- and f-updates; the column violation measured
// before each g-update; a fixed count, or until tol or max_iterations), per lane, in its
// scaling form on the pair kernel K (matrix-vector products, no exponential per iteration),
// and a (n, d) per lane the average under its attention weights. Lanes that stop early keep
// their scalings while the others iterate. Equal to the per-system normalization to rounding.
struct BatchSinkhornControl {
  int iterations = 0;  // > 0: exactly this many
  double tol = 1e-9;
  int max_iterations = 10000;
};
struct BatchSinkhornStatus {  // W entries each
  double* marginal_error = nullptr;
  int* iterations = nullptr;
  unsigned char* converged = nullptr;
};
void batch_sinkhorn_average(const BatchAttentionInput& in, const BatchSinkhornControl& control, double* a,
                            const BatchSinkhornStatus& status);

// In lanes: a_i <- a_i - <x_i, a_i> x_i (the tangent projection, x_i unit), and
// x_i <- x_i / |x_i| for |x_i| > 0 (the sphere retraction; zero rows stay).
void batch_project_tangent(const double* x, double* a, Index n, Index d);
void batch_project_tangent(const float* x, float* a, Index n, Index d);
void batch_normalize_rows(double* x, Index n, Index d);
void batch_normalize_rows(float* x, Index n, Index d);
// The residual layer on the sphere in one pass per row: x_i <- y_i / |y_i|, y_i = x_i + h a_i
// (zero rows stay): the update, batch_normalize_rows' squared norm (coordinates ascending) and
// the scaling while the row is in L1. Returns whether every |y_i|^2 is finite, which implies
// that every entry of the new x is (the integrator's finiteness check without a pass over the
// state); false also where y is finite but |y|^2 overflows (x would be 0 there).
bool batch_residual_layer(double* x, const double* a, double h, Index n, Index d);
bool batch_residual_layer(float* x, const float* a, double h, Index n, Index d);

template <class S>
struct BasicBatchPairObservables {
  double* log_energy = nullptr;  // per lane: log((1 / (2 beta)) sum_ij w_i w_j e^{beta <x_i, x_j>})
  double* min_cosine = nullptr;  // per lane: min over i < j of <x_i, x_j> / (|x_i| |x_j|)
  double* clustered = nullptr;   // per lane: number of pairs i < j with <x_i, x_j> > 1 - delta
  double* order = nullptr;       // per lane: |sum_i w_i x_i|
  double* mean_dir = nullptr;    // per lane: |sum_i w_i x_i / |x_i||^2
  // Optional: receives the pair kernel K_ij = e^{beta (<x_i, x_j> - (D_i + D_j) / 2)} and D_i
  // (batch_pair_kernel_size<S>(n) entries), which batch_attention_average at the same points
  // and betas takes as its input.
  S* kernel = nullptr;
  // Optional: called for each linked pair (i, j) with the lanes' bit mask (cluster counts).
  void (*on_link)(void* ctx, Index i, Index j, unsigned lanes) = nullptr;
  void* ctx = nullptr;
};
using BatchPairObservables = BasicBatchPairObservables<double>;
using BatchPairObservablesF = BasicBatchPairObservables<float>;

// One fused pass over the pairs of W systems: energy, min cosine, clustered pairs (and the
// O(n d) order parameter and mean direction). Work: n (n - 1) / 2 exponentials and
// d n (n - 1) / 2 vector FMAs (about a third of a field evaluation).
void batch_pair_observables(const BatchAttentionInput& in, double delta, const BatchPairObservables& out);
void batch_pair_observables(const BatchAttentionInputF& in, double delta, const BatchPairObservablesF& out);

}  // namespace attnflow
