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
// From kWavefrontTiles tiles on, the rounds are the waves s = I + J instead (the diagonal
// block (I, I) in wave 2 I): each tile then receives its partners' terms in ascending tile
// order, the order in which a process that holds only its own tiles receives the others'
// points one tile at a time (lse_reduce_symmetric_split). The waves are uneven (1 to T / 2
// blocks), which costs little once there are many tiles per thread.
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
// Tile counts from which the blocks run in waves (see the top): n >= 32768 (tiles of 512).
constexpr Index kWavefrontTiles = 64;
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

// Which sums a block adds: both (one process), or, for a process that holds only one side's
// rows (lse_reduce_symmetric_split), the row sums alone or the column sums alone. Each sum
// receives the same terms in the same order in every mode.
enum class Sums { both, rows, columns };

// Rows i0 .. i0 + R - 1 (R = 1, 2 or 4) against the columns [j0, j0 + tile): row sums into
// acc[t * ld + i], and, off the diagonal, column sums into acc[t * ld + j]. Rows taken
// together share the column loads and stores and give the core independent exp chains.
// The normalizer (t = 0) is a plain add, off the FMA pipes that bound this loop.
template <int K, int P, bool Diagonal, int R, Sums S = Sums::both>
void rows(const Packed& pk, Index i0, Index j0, double* __restrict acc) {
  constexpr bool kRows = S != Sums::columns;
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
    if constexpr (kRows)
      for (int r = 0; r < R; ++r) racc[r][0] = ei::padd(e[r], racc[r][0]);
    if constexpr (Sym) {
      double* c = acc + j0 + j;
      Packet cv = ei::pload<Packet>(c);
      for (int r = 0; r < R; ++r) cv = ei::padd(e[r], cv);
      ei::pstore(c, cv);
    }
    for (Index t = 0; t < p; ++t) {
      if constexpr (kRows) {
        const Packet w = ei::pload<Packet>(wt + t * ld + j0 + j);
        for (int r = 0; r < R; ++r) racc[r][t + 1] = ei::pmadd(e[r], w, racc[r][t + 1]);
      }
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
    for (Index j = 0; j < pk.tile; j += kPacket) columns.template operator()<S != Sums::rows>(j);
  }
  if constexpr (kRows)
    for (int r = 0; r < R; ++r)
      for (Index t = 0; t <= p; ++t) acc[t * ld + i0 + r] += ei::predux(racc[r][t]);
}

// Block (I, J) of tiles starting at i0, j0: rows of I and columns of J; for the diagonal
// block (I = J) each unordered pair once, except within 8-column vectors.
// Off the diagonal, four rows at a time (5% faster than two: fewer column loads and stores
// per pair); the diagonal blocks take two, which never straddle an 8-column vector. The
// sums receive their terms in the same order either way.
// The block's rows end at iend (the tile's end, or n in the last tile).
template <int K, int P, bool Diagonal, Sums S = Sums::both>
void block(const Packed& pk, Index i0, Index iend, Index j0, double* acc) {
  Index i = i0;
  if constexpr (!Diagonal)
    for (; i + 4 <= iend; i += 4) rows<K, P, Diagonal, 4, S>(pk, i, j0, acc);
  for (; i + 2 <= iend; i += 2) rows<K, P, Diagonal, 2, S>(pk, i, j0, acc);
  if (i < iend) rows<K, P, Diagonal, 1, S>(pk, i, j0, acc);
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
    const auto rows_end = [&](Index t) { return std::min((t + 1) * tile, pk.n); };
    if (tiles >= kWavefrontTiles) {
      for (Index s = 0; s + 1 < 2 * tiles; ++s) {  // wave s: the blocks (a, s - a), a <= s - a
#pragma omp for schedule(static)
        for (Index a = std::max<Index>(0, s - tiles + 1); a <= s / 2; ++a) {
          const Index b = s - a;
          if (!(owned(a) || owned(b))) continue;
          if (a == b) block<K, P, true>(pk, a * tile, rows_end(a), a * tile, pk.acc);
          else block<K, P, false>(pk, a * tile, rows_end(a), b * tile, pk.acc);
        }
      }
    } else {
#pragma omp for schedule(static)
      for (Index ti = 0; ti < tiles; ++ti)
        if (owned(ti)) block<K, P, true>(pk, ti * tile, rows_end(ti), ti * tile, pk.acc);
      for (Index round = 0; round + 1 < slots; ++round) {
#pragma omp for schedule(static)
        for (Index i = 0; i < slots / 2; ++i) {
          const auto [a, b] = round_pair(slots, round, i);
          if (a >= tiles || b >= tiles || !(owned(a) || owned(b))) continue;
          block<K, P, false>(pk, a * tile, rows_end(a), b * tile, pk.acc);
        }
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

// Points split (lse_reduce_symmetric_split): this process's tiles at [0, own tiles x tile) of
// the packed buffer, then one tile of another process's (or its own) points at `at`, the
// tile whose blocks with every own tile run next. Rows [at, at + count) of the table
// [y | c | vals] (count, k + 1 + p) go in; the rest of the tile is padding.
void pack_rows(const Packed& pk, Index at, const double* table, Index count, double beta2, double amax) {
  const Index ld = pk.ld, w = pk.k + 1 + pk.p;
  for (Index q = 0; q < pk.tile; ++q) {
    const Index j = at + q;
    const double* row = table + q * w;
    for (Index t = 0; t < pk.k; ++t) {
      pk.yt[t * ld + j] = q < count ? row[t] : 0.0;
      pk.ut[t * ld + j] = q < count ? beta2 * row[t] : 0.0;
    }
    pk.h[j] = q < count ? (row[pk.k] - amax) * kLog2e : kPadLog2;
    for (Index t = 0; t < pk.p; ++t) pk.wt[t * ld + j] = q < count ? row[pk.k + 1 + t] : 0.0;
  }
}

// The blocks of the tile at `at` (global tile J, `count` points) with every own tile (global
// tiles first_tile + i), in the order one process runs them for that own tile: J < I the
// block (J, I)'s column sums, J = I the diagonal block, J > I the block (I, J)'s row sums.
template <int K, int P>
void split_blocks(const Packed& pk, Index own_rows, Index first_tile, Index at, Index J, Index count) {
  const Index tile = pk.tile, own_tiles = (own_rows + tile - 1) / tile;
  const bool parallel = static_cast<double>(own_rows) * static_cast<double>(tile) >= kMinParallelPairs;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (parallel)
  for (Index li = 0; li < own_tiles; ++li) {
    const Index I = first_tile + li, i0 = li * tile, iend = std::min(i0 + tile, own_rows);
    if (J < I) block<K, P, false, Sums::columns>(pk, at, at + count, i0, pk.acc);
    else if (J == I) block<K, P, true>(pk, i0, iend, i0, pk.acc);
    else block<K, P, false, Sums::rows>(pk, i0, iend, at, pk.acc);
  }
}

template <int K>
void split_dispatch_p(const Packed& pk, Index own_rows, Index first_tile, Index at, Index J, Index count) {
  switch (pk.p) {
    case 0: return split_blocks<K, 0>(pk, own_rows, first_tile, at, J, count);
    case 1: return split_blocks<K, 1>(pk, own_rows, first_tile, at, J, count);
    case 2: return split_blocks<K, 2>(pk, own_rows, first_tile, at, J, count);
    case 3: return split_blocks<K, 3>(pk, own_rows, first_tile, at, J, count);
    case 4: return split_blocks<K, 4>(pk, own_rows, first_tile, at, J, count);
    default: return split_blocks<K, -1>(pk, own_rows, first_tile, at, J, count);
  }
}

}  // namespace

std::vector<Range> symmetric_row_parts(Index n, int parts) {
  std::vector<Range> r;
  for (int q = 0; q < parts; ++q) r.push_back(block_range(n, parts, q, tile_size(n)));
  return r;
}

bool symmetric_splittable(Index n, Index k, Index p) {
  const Index tile = tile_size(n);
  return (n + tile - 1) / tile >= kWavefrontTiles && k >= 1 && k <= kMaxSmall && p <= kMaxSmall;
}

void lse_reduce_symmetric_split(const SymmetricReduceInput& in, const std::vector<Range>& parts,
                                const Collective& comm, const ReduceOutput& out) {
  const Index n = parts.empty() ? 0 : parts.back().first + parts.back().count;
  const Range mine = static_cast<int>(parts.size()) == comm.size() ? parts[static_cast<std::size_t>(comm.rank())]
                                                                   : Range{};
  if (static_cast<int>(parts.size()) != comm.size() || in.n != mine.count || parts != symmetric_row_parts(n, comm.size()) ||
      !symmetric_splittable(n, in.k, in.p) || (in.p > 0 && in.vals == nullptr))
    throw std::invalid_argument(fmt::format(
        "lse_reduce_symmetric: split points with {} rows here of n = {}, k = {}, p = {} over {} parts for {} "
        "processes, must be the parts of symmetric_row_parts (whole tiles) with symmetric_splittable(n, k, p)",
        in.n, n, in.k, in.p, parts.size(), comm.size()));
  const Index k = in.k, p = in.p, w = k + 1 + p;
  // This process's table [y | c | vals]: what it sends, tile by tile.
  Matrix table(mine.count, w);
  double local[3] = {kNegInf, std::numeric_limits<double>::infinity(), 0.0};  // max a, min a, any non-finite
  for (Index j = 0; j < mine.count; ++j) {
    double sq = 0.0;
    for (Index t = 0; t < k; ++t) {
      const double y = in.y[j * k + t];
      table(j, t) = y;
      sq += y * y;
    }
    const double c = in.col ? in.col[j] : 0.0;
    table(j, k) = c;
    for (Index t = 0; t < p; ++t) table(j, k + 1 + t) = in.vals[j * p + t];
    const double a = c + 0.5 * in.beta * sq;
    if (!std::isfinite(a)) local[2] = 1.0;
    local[0] = std::max(local[0], a);
    local[1] = std::min(local[1], a);
  }
  const std::vector<double> all = comm.allgatherv(local, std::vector<Index>(parts.size(), 3));
  double amax = kNegInf, amin = std::numeric_limits<double>::infinity();
  bool bad = false;
  for (std::size_t q = 0; q < parts.size(); ++q) {
    if (parts[q].count == 0) continue;
    amax = std::max(amax, all[3 * q]);
    amin = std::min(amin, all[3 * q + 1]);
    bad = bad || all[3 * q + 2] != 0.0;
  }
  if (!(in.beta >= 0.0) || bad || !(amin - amax >= kMinLogWeight)) {
    // The single process's fallback (lse_reduce with queries beta y), keys streamed.
    const Matrix u = in.beta * table.leftCols(k);
    Vector lse;
    Matrix o;
    lse_reduce_split_keys(u, table, k, p, parts,
                          [&](Range, const Matrix& rows, Vector& col, Matrix& vals) {
                            col = rows.col(k);
                            vals = rows.middleCols(k + 1, p);
                          },
                          comm, lse, o);
    for (Index i = 0; i < mine.count; ++i) {
      if (out.lse) out.lse[i] = lse[i];
      if (out.out)
        for (Index t = 0; t < p; ++t) out.out[i * p + t] = o(i, t);
    }
    return;
  }
  Packed pk;
  pk.n = mine.count;
  pk.k = k;
  pk.p = p;
  pk.tile = tile_size(n);
  const Index tile = pk.tile, own_tiles = (mine.count + tile - 1) / tile, at = own_tiles * tile;
  pk.npad = at + tile;
  pk.ld = pk.npad + 8;
  const Index ld = pk.ld, p1 = p + 1;
  AlignedVec buf(static_cast<size_t>((2 * k + p + p1 + 1) * ld), 0.0);
  pk.ut = buf.data();
  pk.yt = pk.ut + k * ld;
  pk.wt = pk.yt + k * ld;
  pk.acc = pk.wt + p * ld;
  pk.h = pk.acc + p1 * ld;
  const double beta2 = in.beta * kLog2e;
  for (Index li = 0; li < own_tiles; ++li)
    pack_rows(pk, li * tile, table.data() + li * tile * w, std::min(tile, mine.count - li * tile), beta2, amax);
  Matrix incoming(tile, w);
  for (int b = 0; b < comm.size(); ++b) {
    const Range part = parts[static_cast<std::size_t>(b)];
    for (Index first = part.first; first < part.first + part.count; first += tile) {
      const Index count = std::min(tile, part.first + part.count - first);
      if (b == comm.rank()) incoming.topRows(count) = table.middleRows(first - mine.first, count);
      comm.broadcast(incoming.data(), count * w, b);
      pack_rows(pk, at, incoming.data(), count, beta2, amax);
      const Index J = first / tile, first_tile = mine.first / tile;
      switch (k) {
        case 1: split_dispatch_p<1>(pk, mine.count, first_tile, at, J, count); break;
        case 2: split_dispatch_p<2>(pk, mine.count, first_tile, at, J, count); break;
        case 3: split_dispatch_p<3>(pk, mine.count, first_tile, at, J, count); break;
        case 4: split_dispatch_p<4>(pk, mine.count, first_tile, at, J, count); break;
        default: split_dispatch_p<-1>(pk, mine.count, first_tile, at, J, count); break;
      }
    }
  }
  for (Index i = 0; i < mine.count; ++i) {
    const double sum = pk.acc[i];
    if (out.lse) out.lse[i] = amax - ((in.col ? in.col[i] : 0.0) - amax) + std::log(sum);
    if (out.out)
      for (Index t = 0; t < p; ++t) out.out[i * p + t] = pk.acc[(t + 1) * ld + i] / sum;
  }
}

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
