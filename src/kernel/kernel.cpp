// Streaming log-sum-exp reduction (docs/math.md section 2). Two code paths, same arithmetic
// contract:
//  - small k and p (points in low dimension, the common case for measures and flows): a
//    fused SIMD loop per query over key tiles (Eigen packets = explicit AVX2 / AVX-512
//    vectors, no -ffast-math) with the division-free vector exp of simd_exp.hpp;
//  - large k or p (d = 64 heads): tiles of Eigen GEMM products for the scores and the
//    weighted values, with the same vector exp in between.
// Both keep, per query, a running maximum M, a running sum l = sum exp(s - M) and a running
// weighted sum acc = sum exp(s - M) vals, rescaled by exp(M_old - M_new) when the maximum
// grows, so beta = 1000 cannot overflow. The fused path works in log2 units: its scores are
// s log2(e) (the factor folded into the packed keys and offsets), so that its exponential is
// 2^x, whose argument reduction needs no multiplies (simd_exp2: three FMAs fewer per 8
// pairs, 10% faster at d = 3), and lse = M ln2 + log(l). (The GEMM path, bound by its
// products, measured no gain and keeps natural units.) Terms with s - M < -708 (below
// 2e-308 relative to the maximal term, which is exactly 1) are flushed to 0, which changes
// no result.
#include "attnflow/kernel/kernel.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <vector>

#include "attnflow/base/collective.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"
#include "kernel_common.hpp"
#include "kernel_cpu.hpp"

namespace attnflow {

namespace {

namespace ei = Eigen::internal;
using detail::kLn2;
using detail::kLog2e;
using detail::kMaxFused;
using detail::kMinParallelPairs;
using detail::kNegInf;
using detail::kPacket;
using detail::Packet;

// Fused path: keys per tile and queries per task. A key tile of vT and valsT (k, p <= 16)
// is at most 2 * 16 * 256 * 8 B = 64 KB and is reused by all queries of the task.
constexpr Index kKeyTile = 256;
static_assert(LseStream::kKeyBlock % kKeyTile == 0, "stream blocks are whole key tiles");
constexpr Index kQueryBlock = 32;

// GEMM path tile sizes: S is (kGemmQueries, kGemmKeys), 64 KB.
constexpr Index kGemmQueries = 32;
constexpr Index kGemmKeys = 256;

// Up to this many queries the GEMM path (no key packing) is used whatever k and p are.
constexpr Index kMaxDirectQueries = 4;

Index round_up(Index x, Index r) { return (x + r - 1) / r * r; }

// Keys, offsets and values transposed and padded to a multiple of the key tile, so that a
// tile row is contiguous and no loop has a tail. Padding keys have offset -inf, value 0.
// Keys and offsets carry the factor log2(e) (see the top).
struct PackedKeys {
  Index mpad = 0;
  // Row stride of vt / valst: mpad + 8 (still 64-byte aligned). With stride mpad, rows are a
  // multiple of 2 KB apart and all map to the same L1 sets: 2.5x slower at m = 1000, p = 11.
  Index ld = 0;
  std::vector<double, Eigen::aligned_allocator<double>> vt, valst, col;
};

PackedKeys pack_keys(const ReduceInput& in) {
  PackedKeys pk;
  pk.mpad = round_up(in.m, kKeyTile);
  pk.ld = pk.mpad + 8;
  pk.vt.assign(static_cast<size_t>(in.k * pk.ld), 0.0);
  pk.valst.assign(static_cast<size_t>(in.p * pk.ld), 0.0);
  pk.col.assign(static_cast<size_t>(pk.mpad), kNegInf);
  for (Index j = 0; j < in.m; ++j) {
    for (Index t = 0; t < in.k; ++t) pk.vt[t * pk.ld + j] = kLog2e * in.v[j * in.k + t];
    for (Index t = 0; t < in.p; ++t) pk.valst[t * pk.ld + j] = in.vals[j * in.p + t];
    pk.col[j] = in.col ? kLog2e * in.col[j] : 0.0;
  }
  return pk;
}

// Per-query running state of the online softmax (the fused path keeps max in log2 units).
using RowState = LseStream::Row;

// One query row against one key tile [j0, j0 + kKeyTile). K, P > 0 are compile-time sizes,
// 0 means "runtime size" (k, p). sbuf holds the tile's scores.
template <int K, int P>
void fused_tile(const double* ui, const PackedKeys& pk, Index j0, Index k_rt, Index p_rt,
                double* sbuf, RowState& st, double* acc) {
  const Index k = K > 0 ? K : k_rt;
  const Index p = P > 0 ? P : (P == 0 ? 0 : p_rt);
  const double* vt = pk.vt.data() + j0;
  const double* valst = pk.valst.data() + j0;
  const double* col = pk.col.data() + j0;
  const Index mpad = pk.ld;  // row stride

  Packet ub[kMaxFused];
  for (Index t = 0; t < k; ++t) ub[t] = ei::pset1<Packet>(ui[t]);

  // Pass 1: scores (log2 units) and their maximum.
  Packet vmax = ei::pset1<Packet>(kNegInf);
  for (Index j = 0; j < kKeyTile; j += kPacket) {
    Packet s = ei::pload<Packet>(col + j);
    for (Index t = 0; t < k; ++t) s = ei::pmadd(ub[t], ei::pload<Packet>(vt + t * mpad + j), s);
    ei::pstore(sbuf + j, s);
    vmax = ei::pmax(vmax, s);
  }
  const double tmax = ei::predux_max(vmax);
  if (tmax == kNegInf) return;  // every key of the tile has weight 0 (or is padding)
  if (tmax > st.max) {
    const double scale = std::exp2(st.max - tmax);  // 2^-inf = 0 on the first tile
    st.sum *= scale;
    for (Index t = 0; t < p; ++t) acc[t] *= scale;
    st.max = tmax;
  }

  // Pass 2: exponentials (max-shifted, so <= 1), their sum, and the weighted values.
  const Packet pmaxv = ei::pset1<Packet>(st.max);
  Packet lsum = ei::pset1<Packet>(0.0);
  Packet pacc[kMaxFused];
  for (Index t = 0; t < p; ++t) pacc[t] = ei::pset1<Packet>(0.0);
  for (Index j = 0; j < kKeyTile; j += kPacket) {
    const Packet e = detail::simd_exp2(ei::psub(ei::pload<Packet>(sbuf + j), pmaxv));
    lsum = ei::padd(lsum, e);
    for (Index t = 0; t < p; ++t)
      pacc[t] = ei::pmadd(e, ei::pload<Packet>(valst + t * mpad + j), pacc[t]);
  }
  st.sum += ei::predux(lsum);
  for (Index t = 0; t < p; ++t) acc[t] += ei::predux(pacc[t]);
}

// Every query of u (n, k) against the packed keys, continuing each query's running state
// (st, acc: n and n * p entries). Query blocks of kQueryBlock rows go to threads; within a
// block, tiles outer and queries inner, so that a key tile stays in L1 while every query of
// the block uses it. Each query sees the tiles in their fixed order, on one thread.
template <int K, int P>
void fused_accumulate(const double* u, Index n, Index k, Index p, const PackedKeys& pk, RowState* st,
                      double* acc) {
  const Index nblocks = (n + kQueryBlock - 1) / kQueryBlock;
  const Index ntiles = pk.mpad / kKeyTile;
  const bool parallel = static_cast<double>(n) * static_cast<double>(pk.mpad) >= kMinParallelPairs;
  ParallelErrors errors;  // the buffer may fail to allocate: never out of the region
#pragma omp parallel num_threads(num_threads()) if (parallel)
  {
    std::vector<double, Eigen::aligned_allocator<double>> sbuf;
    bool ready = false;
    errors.run(-1, [&] {
      sbuf.resize(kKeyTile);
      ready = true;
    });
#pragma omp for schedule(dynamic, 1)
    for (Index b = 0; b < nblocks; ++b) {
      if (!ready) continue;
      const Index i0 = b * kQueryBlock;
      const Index rows = std::min(kQueryBlock, n - i0);
      for (Index tile = 0; tile < ntiles; ++tile)
        for (Index i = i0; i < i0 + rows; ++i)
          fused_tile<K, P>(u + i * k, pk, tile * kKeyTile, k, p, sbuf.data(), st[i], acc + i * p);
    }
  }
  errors.rethrow();
}

// lse and out from the running state of n queries.
void fused_finish(Index n, Index p, const RowState* st, const double* acc, const ReduceOutput& out) {
  for (Index i = 0; i < n; ++i) {
    if (out.lse) out.lse[i] = kLn2 * st[i].max + std::log(st[i].sum);
    const double inv = 1.0 / st[i].sum;
    for (Index t = 0; t < p && out.out; ++t) out.out[i * p + t] = acc[i * p + t] * inv;
  }
}

// k and p as compile-time sizes where they are small (negative: runtime; 0 compiles the
// value loops away), for fused_accumulate.
template <int K>
void dispatch_p(const double* u, Index n, Index k, Index p, const PackedKeys& pk, RowState* st, double* acc) {
  switch (p) {
    case 0: return fused_accumulate<K, 0>(u, n, k, p, pk, st, acc);
    case 1: return fused_accumulate<K, 1>(u, n, k, p, pk, st, acc);
    case 2: return fused_accumulate<K, 2>(u, n, k, p, pk, st, acc);
    case 3: return fused_accumulate<K, 3>(u, n, k, p, pk, st, acc);
    case 4: return fused_accumulate<K, 4>(u, n, k, p, pk, st, acc);
    default: return fused_accumulate<K, -1>(u, n, k, p, pk, st, acc);
  }
}

void fused_dispatch(const double* u, Index n, Index k, Index p, const PackedKeys& pk, RowState* st, double* acc) {
  switch (k) {
    case 1: return dispatch_p<1>(u, n, k, p, pk, st, acc);
    case 2: return dispatch_p<2>(u, n, k, p, pk, st, acc);
    case 3: return dispatch_p<3>(u, n, k, p, pk, st, acc);
    case 4: return dispatch_p<4>(u, n, k, p, pk, st, acc);
    default: return dispatch_p<-1>(u, n, k, p, pk, st, acc);
  }
}

void gemm_reduce(const ReduceInput& in, const ReduceOutput& out) {
  using ConstMap = Eigen::Map<const Matrix>;
  const ConstMap U(in.u, in.n, in.k), V(in.v, in.m, in.k);
  const Index nblocks = (in.n + kGemmQueries - 1) / kGemmQueries;
  const bool parallel = static_cast<double>(in.n) * static_cast<double>(in.m) >= kMinParallelPairs;
  ParallelErrors errors;
#pragma omp parallel num_threads(num_threads()) if (parallel)
  {
    Matrix S, acc;
    std::vector<RowState> st;
    bool ready = false;
    errors.run(-1, [&] {
      S.resize(kGemmQueries, kGemmKeys);
      acc.resize(kGemmQueries, std::max<Index>(in.p, 1));
      st.resize(kGemmQueries);
      ready = true;
    });
#pragma omp for schedule(dynamic, 1)
    for (Index b = 0; b < nblocks; ++b) {
      if (!ready) continue;
      const Index i0 = b * kGemmQueries;
      const Index rows = std::min(kGemmQueries, in.n - i0);
      std::fill(st.begin(), st.end(), RowState{});
      acc.setZero();
      for (Index j0 = 0; j0 < in.m; j0 += kGemmKeys) {
        const Index cols = std::min(kGemmKeys, in.m - j0);
        auto s = S.topLeftCorner(rows, cols);
        s.noalias() = U.middleRows(i0, rows) * V.middleRows(j0, cols).transpose();
        if (in.col) {
          s.rowwise() += Eigen::Map<const Eigen::RowVectorXd>(in.col + j0, cols);
        }
        for (Index r = 0; r < rows; ++r) {
          const double tmax = s.row(r).maxCoeff();
          if (tmax == kNegInf) {
            s.row(r).setZero();
            continue;
          }
          if (tmax > st[r].max) {
            const double scale = std::exp(st[r].max - tmax);
            st[r].sum *= scale;
            if (in.p > 0) acc.row(r) *= scale;
            st[r].max = tmax;
          }
          s.row(r).array() -= st[r].max;
          exp_inplace(s.row(r).data(), cols);  // rows of S are contiguous (row-major)
          st[r].sum += s.row(r).sum();
        }
        if (in.p > 0) {
          const ConstMap vals(in.vals + j0 * in.p, cols, in.p);
          acc.topRows(rows).noalias() += s * vals;
        }
      }
      for (Index r = 0; r < rows; ++r) {
        const Index i = i0 + r;
        if (out.lse) out.lse[i] = st[r].max + std::log(st[r].sum);
        const double inv = 1.0 / st[r].sum;
        for (Index t = 0; t < in.p && out.out; ++t) out.out[i * in.p + t] = acc(r, t) * inv;
      }
    }
  }
  errors.rethrow();
}

}  // namespace

// The process-wide device (set_device, kernel_cuda.hpp) decides where every reduction runs.
void lse_reduce(const ReduceInput& in, const ReduceOutput& out) {
  const DeviceSetting d = current_device();
  if (d.device != Device::cpu) return lse_reduce(in, out, d.device, d.precision);
  detail::lse_reduce_cpu(in, out);
}

void detail::lse_reduce_cpu(const ReduceInput& in, const ReduceOutput& out) {
  if (in.n < 0 || in.m <= 0 || in.k < 0 || in.p < 0)
    throw std::invalid_argument(fmt::format(
        "lse_reduce: shapes n = {}, m = {}, k = {}, p = {}, must be n >= 0, m >= 1, k, p >= 0",
        in.n, in.m, in.k, in.p));
  if (in.n == 0) return;
  if (in.p > 0 && in.vals == nullptr)
    throw std::invalid_argument("lse_reduce: vals = null, must be given when p > 0");
  // A handful of queries (one query per prompt in in-context regression) cannot amortize
  // packing the keys: the GEMM path reads them in place, row-major.
  if (LseStream::supports(in.n, in.k, in.p)) {
    LseStream stream(in.u, in.n, in.k, in.p);
    stream.add(in.v, in.col, in.vals, in.m);
    return stream.finish(out);
  }
  gemm_reduce(in, out);
}

bool LseStream::supports(Index n, Index k, Index p) {
  return k >= 1 && k <= kMaxFused && p >= 0 && p <= kMaxFused && n > kMaxDirectQueries;
}

LseStream::LseStream(const double* u, Index n, Index k, Index p) : u_(u), n_(n), k_(k), p_(p) {
  if (!supports(n, k, p))
    throw std::invalid_argument(fmt::format(
        "lse_reduce: streamed keys with n = {}, k = {}, p = {}, must be n >= {}, 1 <= k <= {}, 0 <= p <= {}", n, k,
        p, kMaxDirectQueries + 1, kMaxFused, kMaxFused));
  rows_.resize(static_cast<std::size_t>(n));
  acc_.assign(static_cast<std::size_t>(n * p), 0.0);
}

void LseStream::add(const double* v, const double* col, const double* vals, Index m) {
  if (m < 1 || (p_ > 0 && vals == nullptr))
    throw std::invalid_argument(fmt::format("lse_reduce: a key block of m = {} keys{}, must be m >= 1 with values",
                                            m, p_ > 0 && vals == nullptr ? " without values" : ""));
  if (keys_ % kKeyBlock != 0)
    throw std::invalid_argument(fmt::format(
        "lse_reduce: a key block after {} keys, must follow a multiple of {} (only the last block may be shorter)",
        keys_, kKeyBlock));
  // Negative template sizes stand for "runtime"; only 0 disables a loop at compile time.
  const PackedKeys pk = pack_keys(ReduceInput{nullptr, v, col, vals, 0, m, k_, p_});
  fused_dispatch(u_, n_, k_, p_, pk, rows_.data(), acc_.data());
  keys_ += m;
}

void LseStream::finish(const ReduceOutput& out) const {
  if (keys_ == 0) throw std::invalid_argument("lse_reduce: no keys (m = 0), must be m >= 1");
  fused_finish(n_, p_, rows_.data(), acc_.data(), out);
}

void lse_reduce(const MatrixRef& u, const MatrixRef& v, const VectorRef& col,
                const MatrixRef& vals, Vector& lse, Matrix& out) {
  if (u.cols() != v.cols())
    throw std::invalid_argument(fmt::format(
        "lse_reduce: u has {} columns and v has {}, must be equal", u.cols(), v.cols()));
  if (col.size() != 0 && col.size() != v.rows())
    throw std::invalid_argument(fmt::format("lse_reduce: col size = {}, must equal m = {}",
                                            col.size(), v.rows()));
  if (vals.cols() > 0 && vals.rows() != v.rows())
    throw std::invalid_argument(fmt::format("lse_reduce: vals rows = {}, must equal m = {}",
                                            vals.rows(), v.rows()));
  // The raw-pointer kernel needs contiguous rows; strided views are copied once.
  Matrix uc, vc, valsc;
  auto contiguous = [](const MatrixRef& a, Matrix& copy) -> const double* {
    if (a.size() == 0) return nullptr;
    if (a.outerStride() == a.cols()) return a.data();
    copy = a;
    return copy.data();
  };
  const double* up = contiguous(u, uc);
  const double* vp = contiguous(v, vc);
  const double* valsp = vals.cols() ? contiguous(vals, valsc) : nullptr;
  lse.resize(u.rows());
  out.resize(u.rows(), vals.cols());
  ReduceInput in{up, vp, col.size() ? col.data() : nullptr, valsp,
                 u.rows(), v.rows(), u.cols(), vals.cols()};
  lse_reduce(in, ReduceOutput{lse.data(), out.size() ? out.data() : nullptr});
}

void lse_reduce(const MatrixRef& u, const MatrixRef& v, const VectorRef& col, const MatrixRef& vals,
                Vector& lse, Matrix& out, const Collective* comm) {
  if (!comm || comm->size() == 1) return lse_reduce(u, v, col, vals, lse, out);
  // This process's query rows (kernel_row_parts: equal to those rows of one pass), then all.
  const std::vector<Range> parts = kernel_row_parts(u.rows(), comm->size());
  const Range r = parts[static_cast<std::size_t>(comm->rank())];
  Vector my_lse;
  Matrix my_out(0, vals.cols());
  if (r.count > 0) lse_reduce(u.middleRows(r.first, r.count), v, col, vals, my_lse, my_out);
  const std::vector<double> all_lse = allgather_rows(*comm, parts, my_lse.data());
  const std::vector<double> all_out = allgather_rows(*comm, parts, my_out.data(), vals.cols());
  lse = Eigen::Map<const Vector>(all_lse.data(), u.rows());
  out = Eigen::Map<const Matrix>(all_out.data(), u.rows(), vals.cols());
}

void lse_reduce_split_keys(const MatrixRef& u, const Matrix& mine, Index k, Index p,
                           const std::vector<Range>& key_parts, const KeyBlockForm& form,
                           const Collective& comm, Vector& lse, Matrix& out) {
  const Index w = mine.cols();
  if (w < k || u.cols() != k || static_cast<int>(key_parts.size()) != comm.size() ||
      mine.rows() != key_parts[static_cast<std::size_t>(comm.rank())].count)
    throw std::invalid_argument(fmt::format(
        "lse_reduce: split keys with u ({}, {}), this process's table ({}, {}) and k = {} over {} parts for {} "
        "processes, must be u (n, k), a table of the rows of this process's part and >= k columns, one part per "
        "process", u.rows(), u.cols(), mine.rows(), w, k, key_parts.size(), comm.size()));
  Matrix uc;
  const double* up = u.data();
  if (u.rows() > 0 && u.outerStride() != u.cols()) {
    uc = u;
    up = uc.data();
  }
  std::optional<LseStream> stream;
  if (u.rows() > 0) stream.emplace(up, u.rows(), k, p);
  Vector col;
  Matrix vals, keys;
  for (std::size_t b = 0; b < key_parts.size(); ++b) {
    const Range r = key_parts[b];
    if (r.count == 0) continue;
    Matrix rows = static_cast<int>(b) == comm.rank() ? mine : Matrix(r.count, w);
    comm.broadcast(rows.data(), rows.size(), static_cast<int>(b));
    if (!stream) continue;
    form(r, rows, col, vals);
    if (col.size() != r.count || (p > 0 && (vals.rows() != r.count || vals.cols() != p)))
      throw std::invalid_argument(fmt::format(
          "lse_reduce: split keys formed {} offsets and values ({}, {}) for {} keys with p = {}, must match",
          col.size(), vals.rows(), vals.cols(), r.count, p));
    keys = rows.leftCols(k);
    stream->add(keys.data(), col.data(), p ? vals.data() : nullptr, r.count);
  }
  lse.resize(u.rows());
  out.resize(u.rows(), p);
  if (stream) stream->finish(ReduceOutput{lse.data(), p ? out.data() : nullptr});
}

void exp_inplace(double* x, Index size) {
  Index j = 0;
  for (; j + kPacket <= size; j += kPacket)
    ei::pstoreu(x + j, detail::simd_exp(ei::ploadu<Packet>(x + j)));
  for (; j < size; ++j) x[j] = std::exp(x[j]);
}

void exp_inplace(float* x, Index size) {
  using detail::PacketF;
  constexpr Index kLanes = ei::unpacket_traits<PacketF>::size;
  Index j = 0;
  for (; j + kLanes <= size; j += kLanes) ei::pstoreu(x + j, detail::simd_exp(ei::ploadu<PacketF>(x + j)));
  if (j == size) return;
  alignas(64) float tail[kLanes] = {};  // the last entries through the same vector code
  std::copy(x + j, x + size, tail);
  ei::pstore(tail, detail::simd_exp(ei::pload<PacketF>(tail)));
  std::copy(tail, tail + (size - j), x + j);
}

void exp2_inplace(double* x, Index size, bool finite_only) {
  Index j = 0;
  for (; j + kPacket <= size; j += kPacket) {
    const Packet v = ei::ploadu<Packet>(x + j);
    ei::pstoreu(x + j, finite_only ? detail::simd_exp2_finite(v) : detail::simd_exp2(v));
  }
  for (; j < size; ++j) x[j] = std::exp2(x[j]);
}

}  // namespace attnflow
