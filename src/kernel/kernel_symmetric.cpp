// The streaming reduction when queries and keys are the same points (self-attention with
// Q = K, the SA / USA flows): s_ij = beta <y_i, y_j> + c_j, beta >= 0. With
//   a_j = c_j + beta |y_j|^2 / 2,   M = max_j a_j,   g_j = c_j - M,
//   s_ij = e_ij - g_i + M,          e_ij = beta <y_i, y_j> + g_i + g_j = e_ji,
// and e_ij <= (a_i - M) + (a_j - M) <= 0 (Cauchy-Schwarz), so one exponential exp(e_ij)
// serves both (i, j) and (j, i): half the exponentials of lse_reduce, no running maximum,
// and no weights left in the sums:
//   lse_i = M - g_i + log sum_j exp(e_ij),   out_i = sum_j exp(e_ij) vals_j / sum_j exp(e_ij).
// Row i's sum is at least exp(e_ii) = exp(2 (a_i - M)); when every a_i >= M - 300 (checked;
// uniform weights on the sphere give a_i = M), the terms below exp(-708) (subnormal or 0) are
// below 1e-40 of their row's sum, as in lse_reduce. Otherwise (zero weights, norms spread
// too far, beta < 0 where e_ij is not bounded above) this falls back to lse_reduce.
// The loop works in log2 units: its inputs carry the factor log2(e) (beta log2(e) y and
// g log2(e)), so exp(e_ij) = 2^(e_ij log2(e)) needs no multiply by 1/ln2 and no two-part
// reduction (three FMAs of about twenty per 8 pairs, in the pipes that bound the loop).
//
// Work split, deterministic on any thread count: tiles of 256 or 512 points (by n alone); the blocks (I, J),
// I < J, are scheduled in rounds of a round-robin tournament (circle method), each round a
// perfect matching of the tiles, so the blocks of a round touch disjoint rows and columns
// and run in parallel into one accumulator without races. Every accumulator entry receives
// its terms in round order, whatever thread computes them: bit-identical results on any
// thread count. The diagonal blocks (I, I) form one more round. Memory O(n (k + p)).
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <stdexcept>
#include <vector>

#include "attnflow/base/collective.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"
#include "kernel_common.hpp"
#include "kernel_cpu.hpp"

namespace attnflow {

namespace {

namespace ei = Eigen::internal;
using detail::kMinParallelPairs;
using detail::kNegInf;
using detail::kPacket;
using detail::Packet;
// Tile size: 512 points from n = 4096 on (fewer rounds and barriers: 5% faster at 4096 and
// 16384 on 2 cores), 256 below. It depends on n only, never on the thread count, since it
// fixes the summation order.
Index tile_size(Index n) { return n >= 4096 ? 512 : 256; }
constexpr Index kMaxSmall = detail::kMaxFused;  // k, p handled here; larger go to lse_reduce
constexpr double kMinLogWeight = -300.0;
using detail::kLog2e;  // the loop works in log2 units
// Padding's g log2(e): finite (the loop's exp2 takes finite arguments) and low enough that
// 2^(h_i + pad) = 0 for every row (h_i = g_i log2(e) <= 0, padding has y = 0).
constexpr double kPadLog2 = -4096.0;

using AlignedVec = std::vector<double, Eigen::aligned_allocator<double>>;

struct Packed {
  Index n = 0, npad = 0, ld = 0, k = 0, p = 0, tile = 256;
  // Rows of one buffer (2 k + p + (p + 1) + 1 rows of stride ld = npad + 8), so that no two
  // rows lie a multiple of 4 KB apart (they would share L1 sets: 2.5x slower at n = 16384):
  double* ut = nullptr;   // (k, ld): beta log2(e) y, transposed
  double* yt = nullptr;   // (k, ld): y, transposed
  double* h = nullptr;    // (ld): g log2(e) = (c - M) log2(e), kPadLog2 on padding
  double* wt = nullptr;   // (p, ld): vals, transposed, 0 on padding
  double* acc = nullptr;  // (p + 1, ld): the sums, row 0 = sum_j exp(e_ij), rows 1.. values
};

// Rows i0 .. i0 + R - 1 (R = 1, 2 or 4) against the columns [j0, j0 + tile): row sums into
// acc[t * ld + i], and, off the diagonal, column sums into acc[t * ld + j]. Rows taken
// together share the column loads and stores and give the core independent exp chains.
// The normalizer (t = 0) is a plain add, off the FMA pipes that bound this loop.
template <int K, int P, bool Diagonal, int R>
void rows(const Packed& pk, Index i0, Index j0, double* __restrict acc) {
  const Index k = K > 0 ? K : pk.k;
  const Index p = P >= 0 ? P : pk.p;
  const Index ld = pk.ld;
  const double* __restrict ut = pk.ut;
  const double* __restrict yt = pk.yt + j0;
  const double* __restrict h = pk.h;
  const double* __restrict wt = pk.wt;
  Packet ub[R][kMaxSmall], wb[R][kMaxSmall], racc[R][kMaxSmall + 1], hb[R];
  for (int r = 0; r < R; ++r) {
    const Index i = i0 + r;
    for (Index t = 0; t < k; ++t) ub[r][t] = ei::pset1<Packet>(ut[t * ld + i]);
    for (Index t = 0; t < p; ++t) wb[r][t] = ei::pset1<Packet>(wt[t * ld + i]);
    for (Index t = 0; t <= p; ++t) racc[r][t] = ei::pset1<Packet>(0.0);
    hb[r] = ei::pset1<Packet>(h[i]);
  }
  // One vector of 8 columns at j: row sums always, column sums when Sym.
  const auto columns = [&]<bool Sym>(Index j) {
    const Packet hj = ei::pload<Packet>(h + j0 + j);
    Packet e[R];
    for (int r = 0; r < R; ++r) {
      Packet s = ei::padd(hb[r], hj);
      for (Index t = 0; t < k; ++t) s = ei::pmadd(ub[r][t], ei::pload<Packet>(yt + t * ld + j), s);
      e[r] = detail::simd_exp2_finite(s);
    }
    for (int r = 0; r < R; ++r) racc[r][0] = ei::padd(e[r], racc[r][0]);
    if constexpr (Sym) {
      double* c = acc + j0 + j;
      Packet cv = ei::pload<Packet>(c);
      for (int r = 0; r < R; ++r) cv = ei::padd(e[r], cv);
      ei::pstore(c, cv);
    }
    for (Index t = 0; t < p; ++t) {
      const Packet w = ei::pload<Packet>(wt + t * ld + j0 + j);
      for (int r = 0; r < R; ++r) racc[r][t + 1] = ei::pmadd(e[r], w, racc[r][t + 1]);
      if constexpr (Sym) {
        double* c = acc + (t + 1) * ld + j0 + j;
        Packet cv = ei::pload<Packet>(c);
        for (int r = 0; r < R; ++r) cv = ei::pmadd(e[r], wb[r][t], cv);
        ei::pstore(c, cv);
      }
    }
  };
  if constexpr (Diagonal) {
    // The tile against itself: the 8-column vector holding rows i0 .. i0 + R - 1 in full
    // (both orders of its pairs are met there), every later vector once, symmetrically;
    // earlier vectors were met by the earlier rows.
    const Index jbeg = (i0 - j0) / kPacket * kPacket;
    columns.template operator()<false>(jbeg);
    for (Index j = jbeg + kPacket; j < pk.tile; j += kPacket) columns.template operator()<true>(j);
  } else {
    for (Index j = 0; j < pk.tile; j += kPacket) columns.template operator()<true>(j);
  }
  for (int r = 0; r < R; ++r)
    for (Index t = 0; t <= p; ++t) acc[t * ld + i0 + r] += ei::predux(racc[r][t]);
}

// Block (I, J) of tiles starting at i0, j0: rows of I and columns of J; for the diagonal
// block (I = J) each unordered pair once, except within 8-column vectors.
// Off the diagonal, four rows at a time (5% faster than two: fewer column loads and stores
// per pair); the diagonal blocks take two, which never straddle an 8-column vector. The
// sums receive their terms in the same order either way.
template <int K, int P, bool Diagonal>
void block(const Packed& pk, Index i0, Index j0, double* acc) {
  const Index iend = std::min(i0 + pk.tile, pk.n);
  Index i = i0;
  if constexpr (!Diagonal)
    for (; i + 4 <= iend; i += 4) rows<K, P, Diagonal, 4>(pk, i, j0, acc);
  for (; i + 2 <= iend; i += 2) rows<K, P, Diagonal, 2>(pk, i, j0, acc);
  if (i < iend) rows<K, P, Diagonal, 1>(pk, i, j0, acc);
}

// Round `round` of the circle method on `slots` (even) tiles: pair `i` of the round
// (0 <= i < slots / 2). Tiles >= tiles (the bye of an odd count) give a pair to skip.
std::pair<Index, Index> round_pair(Index slots, Index round, Index i) {
  const Index ring = slots - 1;
  if (i == 0) return {slots - 1, round};
  return {(round + i) % ring, (round - i + ring) % ring};
}

// The whole reduction in one parallel region: packing, the diagonal round, the off-diagonal
// rounds, the outputs. amax = M = max_j (c_j + beta |y_j|^2 / 2).
// Only the tiles [own.first, own.first + own.count) are wanted (all of them without a
// Collective): their diagonal blocks and every block that touches them run, in the same
// rounds; their rows are written.
template <int K, int P>
void run(const SymmetricReduceInput& in, const Packed& pk, double amax, const ReduceOutput& out, Range own) {
  const Index tiles = pk.npad / pk.tile, tile = pk.tile;
  const Index slots = tiles + (tiles % 2);  // an odd count gets a bye
  const Index ld = pk.ld, p1 = in.p + 1;
  const double beta2 = in.beta * kLog2e;
  const bool parallel =
      static_cast<double>(pk.n) * static_cast<double>(pk.n) >= kMinParallelPairs;
#pragma omp parallel num_threads(num_threads()) if (parallel)
  {
#pragma omp for schedule(static)
    for (Index j = 0; j < pk.npad; ++j) {
      for (Index t = 0; t < p1; ++t) pk.acc[t * ld + j] = 0.0;
      if (j >= in.n) {  // padding: exponent kPadLog2 (terms 0), values 0
        for (Index t = 0; t < in.k; ++t) pk.ut[t * ld + j] = pk.yt[t * ld + j] = 0.0;
        for (Index t = 0; t < in.p; ++t) pk.wt[t * ld + j] = 0.0;
        pk.h[j] = kPadLog2;
        continue;
      }
      for (Index t = 0; t < in.k; ++t) {
        const double y = in.y[j * in.k + t];
        pk.yt[t * ld + j] = y;
        pk.ut[t * ld + j] = beta2 * y;
      }
      pk.h[j] = ((in.col ? in.col[j] : 0.0) - amax) * kLog2e;
      for (Index t = 0; t < in.p; ++t) pk.wt[t * ld + j] = in.vals[j * in.p + t];
    }
    const auto owned = [&](Index t) { return t >= own.first && t < own.first + own.count; };
#pragma omp for schedule(static)
    for (Index ti = 0; ti < tiles; ++ti)
      if (owned(ti)) block<K, P, true>(pk, ti * tile, ti * tile, pk.acc);
    for (Index round = 0; round + 1 < slots; ++round) {
#pragma omp for schedule(static)
      for (Index i = 0; i < slots / 2; ++i) {
        const auto [a, b] = round_pair(slots, round, i);
        if (a >= tiles || b >= tiles || !(owned(a) || owned(b))) continue;
        block<K, P, false>(pk, a * tile, b * tile, pk.acc);
      }
    }
    const Index row_end = std::min(in.n, (own.first + own.count) * tile);
#pragma omp for schedule(static)
    for (Index i = own.first * tile; i < row_end; ++i) {
      const double sum = pk.acc[i];
      if (out.lse) out.lse[i] = amax - ((in.col ? in.col[i] : 0.0) - amax) + std::log(sum);
      if (out.out)
        for (Index t = 0; t < in.p; ++t) out.out[i * in.p + t] = pk.acc[(t + 1) * ld + i] / sum;
    }
  }
}

template <int K>
void dispatch_p(const SymmetricReduceInput& in, const Packed& pk, double amax,
                const ReduceOutput& out, Range own) {
  switch (pk.p) {
    case 0: return run<K, 0>(in, pk, amax, out, own);
    case 1: return run<K, 1>(in, pk, amax, out, own);
    case 2: return run<K, 2>(in, pk, amax, out, own);
    case 3: return run<K, 3>(in, pk, amax, out, own);
    case 4: return run<K, 4>(in, pk, amax, out, own);
    default: return run<K, -1>(in, pk, amax, out, own);
  }
}

// The rows of every process's tiles, from each process's own rows of lse and out into the
// whole arrays on every process (rank order = row order).
void gather_rows(const Collective& comm, const SymmetricReduceInput& in, Index tiles, Index tile,
                 const ReduceOutput& out) {
  std::vector<Range> parts;
  for (int r = 0; r < comm.size(); ++r) {
    const Range t = block_range(tiles, comm.size(), r);
    const Index first = std::min(in.n, t.first * tile);
    parts.push_back({first, std::min(in.n, (t.first + t.count) * tile) - first});
  }
  const Range mine = parts[static_cast<std::size_t>(comm.rank())];
  if (out.lse) {
    const std::vector<double> all = allgather_rows(comm, parts, out.lse + mine.first);
    std::copy(all.begin(), all.end(), out.lse);
  }
  if (out.out && in.p > 0) {
    const std::vector<double> all = allgather_rows(comm, parts, out.out + mine.first * in.p, in.p);
    std::copy(all.begin(), all.end(), out.out);
  }
}

void fallback(const SymmetricReduceInput& in, const ReduceOutput& out) {
  std::vector<double> u(static_cast<size_t>(in.n * in.k));
  for (size_t t = 0; t < u.size(); ++t) u[t] = in.beta * in.y[t];
  detail::lse_reduce_cpu(ReduceInput{u.data(), in.y, in.col, in.vals, in.n, in.n, in.k, in.p}, out);
}

// M = max_j (c_j + beta |y_j|^2 / 2) when the symmetric form is safe (see the top), else NaN.
double safe_log_weight_max(const SymmetricReduceInput& in) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (!(in.beta >= 0.0) || in.k > kMaxSmall || in.p > kMaxSmall || in.n < 1) return nan;
  double amax = kNegInf, amin = std::numeric_limits<double>::infinity();
  for (Index j = 0; j < in.n; ++j) {
    double sq = 0.0;
    for (Index t = 0; t < in.k; ++t) sq += in.y[j * in.k + t] * in.y[j * in.k + t];
    const double a = (in.col ? in.col[j] : 0.0) + 0.5 * in.beta * sq;
    if (!std::isfinite(a)) return nan;
    amax = std::max(amax, a);
    amin = std::min(amin, a);
  }
  return amin - amax >= kMinLogWeight ? amax : nan;
}

}  // namespace

bool symmetric_fast_path(const SymmetricReduceInput& in) {
  return !std::isnan(safe_log_weight_max(in));
}

// The process-wide device (set_device, kernel_cuda.hpp) decides where every reduction runs.
void lse_reduce_symmetric(const SymmetricReduceInput& in, const ReduceOutput& out) {
  const DeviceSetting d = current_device();
  if (d.device != Device::cpu) return lse_reduce_symmetric(in, out, d.device, d.precision);
  detail::lse_reduce_symmetric_cpu(in, out);
}

void detail::lse_reduce_symmetric_cpu(const SymmetricReduceInput& in, const ReduceOutput& out) {
  if (in.n < 0 || in.k < 0 || in.p < 0 || (in.p > 0 && in.vals == nullptr))
    throw std::invalid_argument(fmt::format(
        "lse_reduce_symmetric: n = {}, k = {}, p = {} (vals {}), must be >= 0 with vals given "
        "when p > 0", in.n, in.k, in.p, in.vals ? "given" : "null"));
  if (in.n == 0) return;
  const double amax = safe_log_weight_max(in);
  if (std::isnan(amax)) return fallback(in, out);

  // The packed buffer is kept per thread between calls (a flow calls this every step):
  // no allocation or page faults per call. Every entry is rewritten by run().
  thread_local AlignedVec buf;
  Packed pk;
  pk.n = in.n;
  pk.k = in.k;
  pk.p = in.p;
  pk.tile = tile_size(in.n);
  pk.npad = (in.n + pk.tile - 1) / pk.tile * pk.tile;
  pk.ld = pk.npad + 8;
  const Index ld = pk.ld, p1 = in.p + 1;
  const size_t size = static_cast<size_t>((2 * in.k + in.p + p1 + 1) * ld);
  if (buf.size() < size) buf.resize(size);
  pk.ut = buf.data();
  pk.yt = pk.ut + in.k * ld;
  pk.wt = pk.yt + in.k * ld;
  pk.acc = pk.wt + in.p * ld;
  pk.h = pk.acc + p1 * ld;
  const Index tiles = pk.npad / pk.tile;
  const bool split = in.comm && in.comm->size() > 1;
  const Range own = split ? block_range(tiles, in.comm->size(), in.comm->rank()) : Range{0, tiles};
  switch (in.k) {
    case 1: dispatch_p<1>(in, pk, amax, out, own); break;
    case 2: dispatch_p<2>(in, pk, amax, out, own); break;
    case 3: dispatch_p<3>(in, pk, amax, out, own); break;
    case 4: dispatch_p<4>(in, pk, amax, out, own); break;
    default: dispatch_p<-1>(in, pk, amax, out, own); break;
  }
  if (split) gather_rows(*in.comm, in, tiles, pk.tile, out);
}

}  // namespace attnflow
