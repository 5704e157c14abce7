// Small-system batch kernels (batch_kernel.hpp): W systems in the lanes of one SIMD vector.
// The attention average, d <= KC: one pass over the unordered pairs (Gram entry, one
// exponential, both rows' sums), no pair buffer. d > KC: (1) the Gram entries <x_i, x_j>,
// i < j, in register tiles, then one exponential each (the symmetric form) in the triangular
// buffer; (2) the weighted sums sum_j K_ij u_j x_j, three query rows and KC coordinates in
// registers at a time. Every sum runs in the same order in both forms (coordinates
// ascending, then j ascending for row i): they give the same bits. A pair kernel kept by an
// observation replaces the Gram entries and exponentials of either form. The Sinkhorn
// normalization: its scaling iterations on the pair kernel, then form (2) with the scalings.
#include "attnflow/kernel/batch_kernel.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "simd_exp.hpp"

namespace attnflow {

namespace {

namespace ei = Eigen::internal;
constexpr Index KC = kBatchCoordinateBlock;  // coordinates per register block and layout block

// Unrolls a loop over a register tile before GCC decides where its arrays live: without it,
// an accumulator array such as gram()'s 4 x 4 tile is kept on the stack and stored back at
// every coordinate (16 stores per 16 FMAs, measured 1.7x slower at d = 32). The arithmetic
// and its order are unchanged.
#if defined(__clang__)
#define ATTNFLOW_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define ATTNFLOW_UNROLL _Pragma("GCC unroll 16")
#else
#define ATTNFLOW_UNROLL
#endif

// Index of the unordered pair i < j in the row-by-row upper triangle (without diagonal).
inline Index tri(Index i, Index j, Index n) { return i * n - i * (i + 1) / 2 + (j - i - 1); }

// Every kernel below, for one scalar type S (double, or float for the single-precision
// ensemble path): W = the lanes of S's SIMD packet (8 doubles or 16 floats with AVX-512).
// The algorithm and its summation orders are the same for both.
template <class S>
struct Lanes {
  using Packet = typename ei::packet_traits<S>::type;
  static constexpr Index W = ei::unpacket_traits<Packet>::size;

  static Packet ld(const S* p) { return ei::ploadu<Packet>(p); }
  static void st(S* p, const Packet& v) { ei::pstoreu(p, v); }
  static Packet bc(double v) { return ei::pset1<Packet>(static_cast<S>(v)); }
  // The pair kernel K_ij = e^{beta <x_i, x_j> - hb_i - hb_j} (hb = beta D / 2) from the Gram
  // entry g = <x_i, x_j>: the one formula of every pass that forms it.
  static Packet pair_kernel(const Packet& beta, const Packet& g, const Packet& hbi, const Packet& hbj) {
    return detail::simd_exp(ei::psub(ei::pmul(beta, g), ei::padd(hbi, hbj)));
  }

  // Calls f(offset) for the coordinates k = 0 .. d - 1 of row i in ascending order, offset the
  // entry's position in the lanes layout (batch_entry(i, k, n, d) * W), block by block.
  template <class F>
  static void for_row(Index i, Index n, Index d, F&& f) {
    for (Index k0 = 0; k0 < d; k0 += KC) {
      const Index width = std::min(KC, d - k0), base = k0 * n + i * width;
      for (Index q = 0; q < width; ++q) f((base + q) * W);
    }
  }

  // out[i] = |x_i|^2 = sum_k x_ik^2 (k ascending) for every row. Four rows at a time: four
  // independent FMA chains instead of one whose latency bounds the loop; each row's sum is
  // formed in the same order as one row at a time.
  static void squared_norms(const S* x, Index n, Index d, S* out) {
    Index i = 0;
    for (; i + 4 <= n; i += 4) {
      Packet s0 = bc(0.0), s1 = bc(0.0), s2 = bc(0.0), s3 = bc(0.0);
      for (Index k0 = 0; k0 < d; k0 += KC) {
        const Index width = std::min(KC, d - k0);
        const S* x0 = x + (k0 * n + i * width) * W;
        for (Index q = 0; q < width; ++q) {
          const Packet v0 = ld(x0 + q * W), v1 = ld(x0 + (width + q) * W), v2 = ld(x0 + (2 * width + q) * W),
                       v3 = ld(x0 + (3 * width + q) * W);
          s0 = ei::pmadd(v0, v0, s0);
          s1 = ei::pmadd(v1, v1, s1);
          s2 = ei::pmadd(v2, v2, s2);
          s3 = ei::pmadd(v3, v3, s3);
        }
      }
      st(out + i * W, s0);
      st(out + (i + 1) * W, s1);
      st(out + (i + 2) * W, s2);
      st(out + (i + 3) * W, s3);
    }
    for (; i < n; ++i) {
      Packet si = bc(0.0);
      for_row(i, n, d, [&](Index o) {
        const Packet v = ld(x + o);
        si = ei::pmadd(v, v, si);
      });
      st(out + i * W, si);
    }
  }

  // Buffers aligned to the vector size (a 64-byte packet loaded from a 16-byte aligned address
  // spans two cache lines).
  using AlignedBuffer = std::vector<S, Eigen::aligned_allocator<S>>;
  struct Scratch {
    AlignedBuffer e, kf, dd, hb, u, z, nn;
    void size(Index n) {
      const auto pairs = static_cast<std::size_t>(std::max<Index>(n * (n - 1) / 2, 1) * W);
      if (e.size() < pairs) e.resize(pairs);
      const auto full = static_cast<std::size_t>(n * n * W);
      if (kf.size() < full) kf.resize(full);
      const auto per = static_cast<std::size_t>(n * W);
      if (dd.size() < per) {
        dd.resize(per);
        nn.resize(per);
        hb.resize(per);
        u.resize(per);
        z.resize(per);
      }
    }
  };

  static Scratch& scratch(Index n) {
    thread_local Scratch s;
    s.size(n);
    return s;
  }

  // Calls block.template operator()<K>(k0) for the coordinate blocks [k0, k0 + K) covering
  // [0, d): blocks of KC, then the remaining 1 to KC - 1 coordinates as one block (one pass
  // over the pair buffers instead of one per coordinate; for d < KC the only pass). Every
  // accumulation runs over the coordinates in ascending order either way.
  template <class Block>
  static void for_coordinate_blocks(Index d, Block&& block) {
    Index k0 = 0;
    for (; k0 + KC <= d; k0 += KC) block.template operator()<KC>(k0);
    switch (d - k0) {
      case 0: break;
      case 1: block.template operator()<1>(k0); break;
      case 2: block.template operator()<2>(k0); break;
      case 3: block.template operator()<3>(k0); break;
      case 4: block.template operator()<4>(k0); break;
      case 5: block.template operator()<5>(k0); break;
      case 6: block.template operator()<6>(k0); break;
      case 7: block.template operator()<7>(k0); break;
      default: break;
    }
  }
  static_assert(KC == 8, "for_coordinate_blocks lists the remainders 1 to KC - 1");

  // The R x C tile of pairs (i0 + r, j0 + c) over all d coordinates, its R C sums in
  // registers (each stored once: e for i < j, dd for i = j, nothing below the diagonal).
  template <int R, int C>
  [[gnu::always_inline]] static inline void gram_tile(const S* x, Index n, Index d, Index i0, Index j0, S* e, S* dd) {
    Packet acc[R][C];
    ATTNFLOW_UNROLL for (int r = 0; r < R; ++r)
      ATTNFLOW_UNROLL for (int c = 0; c < C; ++c) acc[r][c] = bc(0.0);
    for (Index k0 = 0; k0 < d; k0 += KC) {
      const Index width = std::min(KC, d - k0);
      const S* xi = x + (k0 * n + i0 * width) * W;
      const S* xj = x + (k0 * n + j0 * width) * W;
      for (Index q = 0; q < width; ++q) {
        Packet vj[C];
        ATTNFLOW_UNROLL for (int c = 0; c < C; ++c) vj[c] = kept(ld(xj + (c * width + q) * W));
        ATTNFLOW_UNROLL for (int r = 0; r < R; ++r) {
          const Packet vi = kept(ld(xi + (r * width + q) * W));  // one load per row, not one per FMA
          ATTNFLOW_UNROLL for (int c = 0; c < C; ++c) acc[r][c] = ei::pmadd(vi, vj[c], acc[r][c]);
        }
      }
    }
    ATTNFLOW_UNROLL for (int r = 0; r < R; ++r)
      ATTNFLOW_UNROLL for (int c = 0; c < C; ++c) {
        const Index i = i0 + r, j = j0 + c;
        if (i < j)
          st(e + tri(i, j, n) * W, acc[r][c]);
        else if (i == j)
          st(dd + i * W, acc[r][c]);
      }
  }

  // e[tri(i, j)] = <x_i, x_j> for i < j and dd_i = |x_i|^2, each summed over the coordinates in
  // ascending order from 0 (the order squared_norms() and the fused passes use), in register
  // tiles whatever their shape. n a multiple of 8: strips of 8 rows, their diagonal 8 x 8
  // block in 4 x 4 tiles, the pairs right of it in 8 x 3 tiles (the strip's rows stay in L1
  // while the columns stream: half the traffic per FMA of 4 x 4 tiles). Otherwise 4 x 4 tiles
  // (a tile on the diagonal also gives dd; its lower half is computed and dropped), and the
  // pairs with a row beyond the last whole tile one by one.
  // A function of its own with its tiles inlined (the attributes): inlined into each caller,
  // its register tiles were allocated with the caller's values and spilled in some (the
  // observation's pass at d = 32 ran 0.63 or 0.78 us per system after unrelated edits).
  [[gnu::noinline]] static void gram(const S* x, Index n, Index d, S* e, S* dd) {
    if (n % 8 == 0) {
      for (Index i0 = 0; i0 < n; i0 += 8) {
        gram_tile<4, 4>(x, n, d, i0, i0, e, dd);
        gram_tile<4, 4>(x, n, d, i0, i0 + 4, e, dd);
        gram_tile<4, 4>(x, n, d, i0 + 4, i0 + 4, e, dd);
        Index j0 = i0 + 8;
        for (; j0 + 3 <= n; j0 += 3) gram_tile<8, 3>(x, n, d, i0, j0, e, dd);
        if (j0 + 2 == n) gram_tile<8, 2>(x, n, d, i0, j0, e, dd);
        if (j0 + 1 == n) gram_tile<8, 1>(x, n, d, i0, j0, e, dd);
      }
      return;
    }
    constexpr Index T = 4;
    const Index nb = n / T * T;
    for (Index i0 = 0; i0 < nb; i0 += T)
      for (Index j0 = i0; j0 < nb; j0 += T) gram_tile<T, T>(x, n, d, i0, j0, e, dd);
    for (Index j = nb; j < n; ++j)  // the pairs (i, j), i <= j, of the rows after the tiles
      for (Index i = 0; i <= j; ++i) {
        Packet g = bc(0.0);
        for (Index k = 0; k < d; ++k)
          g = ei::pmadd(ld(x + batch_entry(i, k, n, d) * W), ld(x + batch_entry(j, k, n, d) * W), g);
        st(i < j ? e + tri(i, j, n) * W : dd + i * W, g);
      }
  }

  // v, kept in a register: without it the compiler folds each use of a loaded x_j coordinate
  // into its FMAs as a memory operand, one load per row of the tile instead of one. (Applied
  // to a copy: applied to an array element in place, it made GCC store the array to the
  // stack at every coordinate, three stores per 24 FMAs in gram_tile<8, 3>.)
  static Packet kept(Packet v) {
    asm("" : "+v"(v));
    return v;
  }

  // Rows [i, i + R) of a_i = (sum_j c_ij x_j) rz_i over coordinates [k0, k0 + K), xs the
  // coordinate block's slice (K W doubles per j), c_ij = K_ij u_j (c_ii = u_i) formed here from
  // the pair kernel's triangle e (31 KB at n = 32, where the full matrix, 64 KB, would not stay
  // in L1 beside the slice, and writing it cost a fifth of the average). Per j: R coefficients
  // and K coordinates for R K FMAs. In the first coordinate block (First) the row sums
  // z_i = sum_j c_ij (j ascending) are formed on the way and left in z, their inverses in rz.
  template <int R, int K, bool First>
  static void average_rows(const S* xs, Index n, Index k0, const S* e, const S* u, S* z, S* rz, S* a,
                           Index i) {
    Packet p[R][K], zs[R];
    ATTNFLOW_UNROLL for (int r = 0; r < R; ++r) {
      zs[r] = bc(0.0);
      ATTNFLOW_UNROLL for (int q = 0; q < K; ++q) p[r][q] = bc(0.0);
    }
    const auto terms = [&](Index j, const Packet (&c)[R]) {
      if constexpr (First) {
        ATTNFLOW_UNROLL for (int r = 0; r < R; ++r) zs[r] = ei::padd(zs[r], c[r]);
      }
      const S* xj = xs + j * K * W;
      ATTNFLOW_UNROLL for (int q = 0; q < K; ++q) {
        const Packet v = kept(ld(xj + q * W));
        ATTNFLOW_UNROLL for (int r = 0; r < R; ++r) p[r][q] = ei::pmadd(c[r], v, p[r][q]);
      }
    };
    for (Index j = 0; j < i; ++j) {  // below the rows' diagonal: K_{j, i + r} = e[tri(j, i) + r]
      const Packet uj = ld(u + j * W);
      const S* ej = e + tri(j, i, n) * W;
      Packet c[R];
      ATTNFLOW_UNROLL for (int r = 0; r < R; ++r) c[r] = ei::pmul(ld(ej + r * W), uj);
      terms(j, c);
    }
    for (Index j = i; j < i + R; ++j) {  // the rows' own columns
      const Packet uj = ld(u + j * W);
      Packet c[R];
      ATTNFLOW_UNROLL for (int r = 0; r < R; ++r) {
        const Index row = i + r;
        c[r] = j == row ? uj : ei::pmul(ld(e + (j < row ? tri(j, row, n) : tri(row, j, n)) * W), uj);
      }
      terms(j, c);
    }
    Index er[R];  // above: K_{i + r, j} = e[er[r] + j], row by row in the triangle (er may be < 0)
    ATTNFLOW_UNROLL for (int r = 0; r < R; ++r) er[r] = tri(i + r, i + R, n) - (i + R);
    for (Index j = i + R; j < n; ++j) {
      const Packet uj = ld(u + j * W);
      Packet c[R];
      ATTNFLOW_UNROLL for (int r = 0; r < R; ++r) c[r] = ei::pmul(ld(e + (er[r] + j) * W), uj);
      terms(j, c);
    }
    ATTNFLOW_UNROLL for (int r = 0; r < R; ++r) {
      Packet rzr;
      if constexpr (First) {
        st(z + (i + r) * W, zs[r]);
        rzr = ei::pdiv(bc(1.0), zs[r]);
        st(rz + (i + r) * W, rzr);
      } else {
        rzr = ld(rz + (i + r) * W);
      }
      ATTNFLOW_UNROLL for (int q = 0; q < K; ++q) st(a + (k0 * n + (i + r) * K + q) * W, ei::pmul(p[r][q], rzr));
    }
  }

  // a_i = (sum_j c_ij x_j) rz_i over coordinates [k0, k0 + K), c_ij = K_ij u_j (c_ii = u_i),
  // rz_i = 1 / z_i (one division per row instead of one per coordinate; z and rz formed in
  // the first block). The block's slice of x is contiguous in the lanes layout (n K W
  // doubles; rows d W doubles apart, 2 KB at d = 32, would put the lines of a slice in a few
  // L1 sets). Three rows at a time share each x_j load (24 sums, 3 coefficients and one
  // coordinate in registers); the coordinate block is the outer loop, so the slice stays in L1.
  // Each sum runs over j ascending whatever the tile.
  template <int K>
  static void average_block(const S* x, Index n, Index k0, const S* e, const S* u, S* z, S* rz, S* a) {
    const S* xs = x + k0 * n * W;
    const auto rows = [&]<int R>(Index i) {
      if (k0 == 0)
        average_rows<R, K, true>(xs, n, k0, e, u, z, rz, a, i);
      else
        average_rows<R, K, false>(xs, n, k0, e, u, z, rz, a, i);
    };
    Index i = 0;
    for (; i + 3 <= n; i += 3) rows.template operator()<3>(i);
    if (i + 2 == n) rows.template operator()<2>(i);
    if (i + 1 == n) rows.template operator()<1>(i);
  }

  // The whole average for d = K <= KC in one pass over the unordered pairs, without the
  // triangle of pair kernels (e, which no longer fits in L1 beside the state and costs more
  // to write than the arithmetic): for i < j, <x_i, x_j>, K_ij, then c_ij = K_ij u_j joins row
  // i's sums (in registers) and c_ji = K_ij u_i row j's (in a and z, in memory). Row i thus
  // receives its terms in ascending j, each formed by the same operations as in the two-pass
  // form: the result is the same bits. hb_i = beta D_i / 2; z_i = sum_j c_ij is left in z.
  // Two rows' kernel entries are formed into kbuf (2 (n - 1) packets, 4 KB at n = 32) before
  // their sums: 20-25% faster than forming each beside its sums (d = 2 to 8). With a kept
  // pair kernel kc (BatchAttentionInput::kernel) K_ij is loaded instead of formed: the same
  // values.
  template <int K, bool Kept>
  static void fused_average(const S* x, Index n, Packet beta, const S* hb, const S* u, const S* kc,
                            S* a, S* z, S* kbuf) {
    for (Index i = 0; i < n; ++i) {
      st(z + i * W, bc(0.0));
      for (int q = 0; q < K; ++q) st(a + (i * K + q) * W, bc(0.0));
    }
    // Two rows at a time (i, b = i + 1): the rows j > b get both rows' terms in one visit, in
    // ascending order (i's, then b's) as one row at a time would give them; row b gets its term
    // from i before its diagonal, as it would from memory.
    Index i = 0;
    for (; i + 2 <= n; i += 2) {
      const Index b = i + 1;
      Packet xi[K], xb[K], ai[K], ab[K];
      for (int q = 0; q < K; ++q) {
        xi[q] = ld(x + (i * K + q) * W);
        xb[q] = ld(x + (b * K + q) * W);
        ai[q] = ld(a + (i * K + q) * W);  // the terms j < i
        ab[q] = ld(a + (b * K + q) * W);
      }
      const Packet ui = ld(u + i * W), hi = ld(hb + i * W), ub = ld(u + b * W), hbb = ld(hb + b * W);
      Packet zi = ei::padd(ld(z + i * W), ui);  // c_ii = u_i (K_ii = 1)
      for (int q = 0; q < K; ++q) ai[q] = ei::pmadd(ui, xi[q], ai[q]);
      Packet zb = ld(z + b * W);
      {  // the pair (i, b)
        Packet k;
        if constexpr (Kept) {
          k = ld(kc + tri(i, b, n) * W);
        } else {
          Packet g = bc(0.0);
          for (int q = 0; q < K; ++q) g = ei::pmadd(xi[q], xb[q], g);
          k = pair_kernel(beta, g, hi, hbb);
        }
        const Packet cib = ei::pmul(k, ub), cbi = ei::pmul(k, ui);
        zi = ei::padd(zi, cib);
        for (int q = 0; q < K; ++q) ai[q] = ei::pmadd(cib, xb[q], ai[q]);
        zb = ei::padd(zb, cbi);
        for (int q = 0; q < K; ++q) ab[q] = ei::pmadd(cbi, xi[q], ab[q]);
      }
      zb = ei::padd(zb, ub);  // c_bb
      for (int q = 0; q < K; ++q) ab[q] = ei::pmadd(ub, xb[q], ab[q]);
      // K_ij and K_bj for j > b: the kept kernel's, or formed first into kbuf in a loop of
      // their own (independent entries, so they overlap: beside the sums below, each entry's
      // chain of K FMAs and its exponential waited on their latency).
      S* bi = nullptr;  // K_ij at bi + j W, K_bj at bb + j W
      S* bb = nullptr;
      if constexpr (!Kept) {
        bi = kbuf - (b + 1) * W;
        bb = kbuf + (n - 2 * (b + 1)) * W;
        for (Index j = b + 1; j < n; ++j) {
          Packet gi = bc(0.0), gb = bc(0.0);
          for (int q = 0; q < K; ++q) {
            const Packet v = ld(x + (j * K + q) * W);
            gi = ei::pmadd(xi[q], v, gi);
            gb = ei::pmadd(xb[q], v, gb);
          }
          const Packet hj = ld(hb + j * W);
          st(bi + j * W, pair_kernel(beta, gi, hi, hj));
          st(bb + j * W, pair_kernel(beta, gb, hbb, hj));
        }
      }
      for (Index j = b + 1; j < n; ++j) {
        Packet xj[K];
        for (int q = 0; q < K; ++q) xj[q] = ld(x + (j * K + q) * W);
        const Packet uj = ld(u + j * W);
        const Packet ki = Kept ? ld(kc + tri(i, j, n) * W) : ld(bi + j * W);
        const Packet kb = Kept ? ld(kc + tri(b, j, n) * W) : ld(bb + j * W);
        const Packet cij = ei::pmul(ki, uj), cji = ei::pmul(ki, ui), cbj = ei::pmul(kb, uj), cjb = ei::pmul(kb, ub);
        zi = ei::padd(zi, cij);
        zb = ei::padd(zb, cbj);
        for (int q = 0; q < K; ++q) {
          ai[q] = ei::pmadd(cij, xj[q], ai[q]);
          ab[q] = ei::pmadd(cbj, xj[q], ab[q]);
        }
        st(z + j * W, ei::padd(ei::padd(ld(z + j * W), cji), cjb));
        for (int q = 0; q < K; ++q) {
          S* pj = a + (j * K + q) * W;
          st(pj, ei::pmadd(cjb, xb[q], ei::pmadd(cji, xi[q], ld(pj))));
        }
      }
      st(z + i * W, zi);
      st(z + b * W, zb);
      const Packet rzi = ei::pdiv(bc(1.0), zi), rzb = ei::pdiv(bc(1.0), zb);
      for (int q = 0; q < K; ++q) {
        st(a + (i * K + q) * W, ei::pmul(ai[q], rzi));
        st(a + (b * K + q) * W, ei::pmul(ab[q], rzb));
      }
    }
    if (i < n) {  // the last row: its terms j < i are all in memory
      Packet ai[K];
      for (int q = 0; q < K; ++q) ai[q] = ei::pmadd(ld(u + i * W), ld(x + (i * K + q) * W), ld(a + (i * K + q) * W));
      const Packet zi = ei::padd(ld(z + i * W), ld(u + i * W));
      st(z + i * W, zi);
      const Packet rz = ei::pdiv(bc(1.0), zi);
      for (int q = 0; q < K; ++q) st(a + (i * K + q) * W, ei::pmul(ai[q], rz));
    }
  }

  // The Gram entries in s.e (gram()) replaced in place by K_ij = e^{beta <x_i, x_j> - hb_i - hb_j},
  // hb_i = beta D_i / 2 in s.hb: one exponential per unordered pair.
  static void exponentiate_pairs(Index n, Packet beta, Scratch& s) {
    const S* hb = s.hb.data();
    for (Index i = 0; i + 1 < n; ++i) {
      const Packet hi = ld(hb + i * W);
      S* row = s.e.data() + tri(i, i + 1, n) * W;
      for (Index j = i + 1; j < n; ++j) {
        S* p = row + (j - i - 1) * W;
        st(p, pair_kernel(beta, ld(p), hi, ld(hb + j * W)));
      }
    }
  }

  // SA / USA with d > KC, and Sinkhorn (with u its column scalings) for every d: the Gram
  // entries are in e (gram()). K_ij = e^{beta <x_i, x_j> - beta (D_i + D_j) / 2}
  // replaces them in place (one exponential per unordered pair); then the weighted sums with
  // the coordinate block outermost, c_ij = K_ij u_j formed from the triangle as they go (and
  // z_i = sum_j c_ij, j ascending, in the first block).
  // A cached kernel (BatchAttentionInput::kernel) holds the K_ij already: no exponentials.
  static void two_pass_average(const S* x, Index n, Index d, Packet beta, Scratch& s, const S* cached,
                               S* a) {
    if (!cached) exponentiate_pairs(n, beta, s);
    const S* e = cached ? cached : s.e.data();
    for_coordinate_blocks(
        d, [&]<int K>(Index k0) { average_block<K>(x, n, k0, e, s.u.data(), s.z.data(), s.nn.data(), a); });
  }

  // hb_i = beta D_i / 2 from s.dd (D_i = |x_i|^2); returns beta D* / 2, D* = max_i D_i.
  static Packet half_norms(Index n, Packet half, Scratch& s) {
    Packet dmax = bc(-std::numeric_limits<S>::infinity());
    for (Index i = 0; i < n; ++i) {
      const Packet di = ld(s.dd.data() + i * W);
      st(s.hb.data() + i * W, ei::pmul(half, di));  // beta D_i / 2
      dmax = ei::pmax(dmax, di);
    }
    return ei::pmul(half, dmax);
  }

  // u_j = w_j e^{beta (D_j - D*) / 2} into s.u, from the log weights and s.hb (half_norms()).
  static void scaled_weights(const S* log_w, Index n, Packet hmax, Scratch& s) {
    for (Index j = 0; j < n; ++j)
      st(s.u.data() + j * W, detail::simd_exp(ei::padd(ld(log_w + j * W), ei::psub(ld(s.hb.data() + j * W), hmax))));
  }

  // y_i = sum_j kf[i n + j] v_j (j ascending) for every row, four rows at a time (independent
  // FMA chains; each row's sum in the same order as alone).
  static void symmetric_matvec(const S* kf, const S* v, Index n, S* y) {
    Index i = 0;
    for (; i + 4 <= n; i += 4) {
      Packet y0 = bc(0.0), y1 = bc(0.0), y2 = bc(0.0), y3 = bc(0.0);
      const S* k0 = kf + i * n * W;
      for (Index j = 0; j < n; ++j) {
        const Packet vj = ld(v + j * W);
        y0 = ei::pmadd(ld(k0 + j * W), vj, y0);
        y1 = ei::pmadd(ld(k0 + (n + j) * W), vj, y1);
        y2 = ei::pmadd(ld(k0 + (2 * n + j) * W), vj, y2);
        y3 = ei::pmadd(ld(k0 + (3 * n + j) * W), vj, y3);
      }
      st(y + i * W, y0);
      st(y + (i + 1) * W, y1);
      st(y + (i + 2) * W, y2);
      st(y + (i + 3) * W, y3);
    }
    for (; i < n; ++i) {
      Packet yi = bc(0.0);
      for (Index j = 0; j < n; ++j) yi = ei::pmadd(ld(kf + (i * n + j) * W), ld(v + j * W), yi);
      st(y + i * W, yi);
    }
  }

  // out_i = w_i / y_i, 0 where w_i = 0 (a Sinkhorn scaling update), only in the lanes of `keep`
  // (all-ones lanes update; the others keep out_i).
  static void scaling_update(const S* w, const S* y, Index n, Packet keep, S* out) {
    const Packet zero = bc(0.0);
    for (Index i = 0; i < n; ++i) {
      const Packet wi = ld(w + i * W);
      const Packet q = ei::pselect(ei::pcmp_eq(wi, zero), zero, ei::pdiv(wi, ld(y + i * W)));
      st(out + i * W, ei::pselect(keep, q, ld(out + i * W)));
    }
  }

  // The column violation sum_j |v_j y_j - w_j| per lane (v_j y_j the column sum of the plan, y = K u).
  static Packet column_violation(const S* w, const S* v, const S* y, Index n) {
    Packet err = bc(0.0);
    for (Index j = 0; j < n; ++j)
      err = ei::padd(err, ei::pabs(ei::psub(ei::pmul(ld(v + j * W), ld(y + j * W)), ld(w + j * W))));
    return err;
  }



  static void attention_average(const BasicBatchAttentionInput<S>& in, S* a, S* lse) {
    const Index n = in.n, d = in.d;
    const S* x = in.x;
    Scratch& s = scratch(n);
    const Packet beta = ld(in.beta), half = ei::pmul(bc(0.5), beta);
    S* e = s.e.data();
    const bool fused = d <= KC;
    const S* cached = in.kernel;
    if (cached)
      std::copy_n(cached + n * (n - 1) / 2 * W, n * W, s.dd.data());
    else if (fused)
      squared_norms(x, n, d, s.dd.data());  // D_i = |x_i|^2
    else
      gram(x, n, d, e, s.dd.data());  // <x_i, x_j> (i < j) and D_i = |x_i|^2
    const Packet hmax = half_norms(n, half, s);
    scaled_weights(in.log_w, n, hmax, s);
    if (fused) {
      for_coordinate_blocks(d, [&]<int K>(Index) {
        if (cached)
          fused_average<K, true>(x, n, beta, s.hb.data(), s.u.data(), cached, a, s.z.data(), nullptr);
        else
          fused_average<K, false>(x, n, beta, s.hb.data(), s.u.data(), nullptr, a, s.z.data(), s.kf.data());
      });
    } else {
      two_pass_average(x, n, d, beta, s, cached, a);
    }
    if (lse) {  // log sum_j w_j e^{beta <x_i, x_j>} = beta (D_i + D*) / 2 + log z_i
      alignas(64) S hm[W];
      st(hm, hmax);
      for (Index i = 0; i < n; ++i)
        for (Index l = 0; l < W; ++l) {
          const auto p = static_cast<std::size_t>(i * W + l);
          lse[p] = s.hb[p] + hm[l] + std::log(s.z[p]);
        }
    }
  }

  static void sinkhorn_average(const BasicBatchAttentionInput<S>& in, const BatchSinkhornControl& control,
                               S* a, const BatchSinkhornStatus& status) {
    const Index n = in.n, d = in.d;
    Scratch& s = scratch(n);
    const Packet beta = ld(in.beta), half = ei::pmul(bc(0.5), beta);
    // K_ij = e^{beta <x_i, x_j> - hb_i - hb_j} <= 1 in the triangle (kept by an observation, or
    // formed here), hb_i = beta D_i / 2.
    const S* k = in.kernel;
    if (k) {
      std::copy_n(k + n * (n - 1) / 2 * W, n * W, s.dd.data());
    } else {
      gram(in.x, n, d, s.e.data(), s.dd.data());
    }
    const Packet hmax = half_norms(n, half, s);
    if (!k) {
      exponentiate_pairs(n, beta, s);
      k = s.e.data();
    }
    // The full symmetric matrix (diagonal 1) for the scaling updates, and the weights w_i.
    S* kf = s.kf.data();
    for (Index i = 0; i < n; ++i)
      for (Index j = 0; j < n; ++j)
        st(kf + (i * n + j) * W, i == j ? bc(1.0) : ld(k + (i < j ? tri(i, j, n) : tri(j, i, n)) * W));
    thread_local AlignedBuffer w, v, u, y;
    for (auto* b : {&w, &v, &u, &y}) b->resize(static_cast<std::size_t>(n * W));
    for (Index i = 0; i < n * W; ++i) w[static_cast<std::size_t>(i)] = in.w ? in.w[i] : std::exp(in.log_w[i]);
    // With s_ij = beta <x_i, x_j> = log K_ij + c_i + c_j + beta D*, c_i = hb_i - beta D* / 2 <= 0,
    // the potentials of docs/math.md section 1.3 are scalings: v_j = b_j e^{g_j + c_j},
    // u_i = a_i e^{f_i + c_i + beta D*} (a = b = w). g = 0: v_j = w_j e^{c_j}. The f-update is
    // u = w / (K v), the g-update v = w / (K u), and the column violation measured before a
    // g-update is sum_j |v_j (K u)_j - w_j|.
    for (Index j = 0; j < n; ++j)
      st(v.data() + j * W, ei::pmul(ld(w.data() + j * W), detail::simd_exp(ei::psub(ld(s.hb.data() + j * W), hmax))));
    const Packet all = ei::pcmp_eq(bc(0.0), bc(0.0));
    const bool fixed = control.iterations > 0;
    const int max_it = fixed ? control.iterations : control.max_iterations;
    alignas(64) S err[W], done[W];
    int its[W];
    for (Index l = 0; l < W; ++l) {
      err[l] = std::numeric_limits<S>::quiet_NaN();
      done[l] = 0.0;
      its[l] = 0;
    }
    Packet active = all;
    for (int it = 1; it <= max_it; ++it) {
      if (it >= 2) {
        symmetric_matvec(kf, u.data(), n, y.data());
        st(err, column_violation(w.data(), v.data(), y.data(), n));
        if (!fixed) {
          for (Index l = 0; l < W; ++l)
            if (done[l] == 0.0 && err[l] <= control.tol) done[l] = 1.0;  // converged: stops here
          active = ei::pcmp_eq(ld(done), bc(0.0));
        }
        scaling_update(w.data(), y.data(), n, active, v.data());
      }
      symmetric_matvec(kf, v.data(), n, y.data());
      scaling_update(w.data(), y.data(), n, active, u.data());
      bool any = false;
      for (Index l = 0; l < W; ++l)
        if (done[l] == 0.0) {
          its[l] = it;
          any = true;
        }
      if (!any) break;
    }
    // Lanes that did not stop at tol (a fixed count, or max_iterations reached): the violation
    // of the plan they return.
    bool final_check = false;
    for (Index l = 0; l < W; ++l) final_check = final_check || done[l] == 0.0;
    if (final_check) {
      symmetric_matvec(kf, u.data(), n, y.data());
      alignas(64) S last[W];
      st(last, column_violation(w.data(), v.data(), y.data(), n));
      for (Index l = 0; l < W; ++l)
        if (done[l] == 0.0) err[l] = last[l];
    }
    for (Index l = 0; l < W; ++l) {
      status.marginal_error[l] = err[l];
      status.iterations[l] = its[l];
      status.converged[l] = fixed || done[l] != 0.0 || err[l] <= control.tol;
    }
    // The attention weights P_ij = K_ij v_j / sum_l K_il v_l: the softmax average with u = v.
    std::copy_n(v.data(), n * W, s.u.data());
    two_pass_average(in.x, n, d, beta, s, k, a);
  }

  static void project_tangent(const S* x, S* a, Index n, Index d) {
    for (Index i = 0; i < n; ++i) {
      Packet dot = bc(0.0);
      for_row(i, n, d, [&](Index o) { dot = ei::pmadd(ld(x + o), ld(a + o), dot); });
      for_row(i, n, d, [&](Index o) { st(a + o, ei::psub(ld(a + o), ei::pmul(dot, ld(x + o)))); });
    }
  }

  static void normalize_rows(S* x, Index n, Index d) {
    S* sq = scratch(n).nn.data();
    squared_norms(x, n, d, sq);
    for (Index i = 0; i < n; ++i) {
      const Packet r = ei::psqrt(ld(sq + i * W));
      // Zero rows stay as they are (scale 1 there). One division per row, then products.
      const Packet inv = ei::pdiv(bc(1.0), ei::pselect(ei::pcmp_lt(bc(0.0), r), r, bc(1.0)));
      for_row(i, n, d, [&](Index o) { st(x + o, ei::pmul(ld(x + o), inv)); });
    }
  }

  static bool residual_layer(S* x, const S* a, double h, Index n, Index d) {
    const Packet hp = bc(h), inf = bc(std::numeric_limits<S>::infinity());
    Packet finite = bc(1.0);  // 1 in the lanes whose squared norms so far are all finite
    for (Index i = 0; i < n; ++i) {
      Packet ss = bc(0.0);
      for_row(i, n, d, [&](Index o) {  // the row stays in L1 for the scaling below
        const Packet y = ei::pmadd(hp, ld(a + o), ld(x + o));
        st(x + o, y);
        ss = ei::pmadd(y, y, ss);
      });
      finite = ei::pselect(ei::pcmp_lt(ss, inf), finite, bc(0.0));  // false for inf and NaN
      const Packet r = ei::psqrt(ss);
      const Packet inv = ei::pdiv(bc(1.0), ei::pselect(ei::pcmp_lt(bc(0.0), r), r, bc(1.0)));
      for_row(i, n, d, [&](Index o) { st(x + o, ei::pmul(ld(x + o), inv)); });
    }
    alignas(64) S f[W];
    st(f, finite);
    for (Index l = 0; l < W; ++l)
      if (f[l] != S(1)) return false;
    return true;
  }

  static void pair_observables(const BasicBatchAttentionInput<S>& in, double delta, const BasicBatchPairObservables<S>& out) {
    const Index n = in.n, d = in.d;
    const S* x = in.x;
    Scratch& s = scratch(n);
    const Packet beta = ld(in.beta), half = ei::pmul(bc(0.5), beta);
    // The Gram entries in register tiles first, for every d (at d <= KC too: formed beside
    // the sums below, each entry's chain of d FMAs and its exponential waited on their
    // latency; d = 8: 0.47 -> 0.32 us per system).
    const S* const e = s.e.data();
    gram(x, n, d, s.e.data(), s.dd.data());
    const Packet hmax = half_norms(n, half, s);
    scaled_weights(in.log_w, n, hmax, s);  // v_i = w_i e^{beta (D_i - D*) / 2}, in s.u
    for (Index i = 0; i < n; ++i)  // z (reused) = 1 / |x_i|
      st(s.z.data() + i * W, ei::pdiv(bc(1.0), ei::psqrt(ld(s.dd.data() + i * W))));
    S* kernel_out = out.kernel;
    if (kernel_out) std::copy_n(s.dd.data(), n * W, kernel_out + n * (n - 1) / 2 * W);
    const Packet thr = bc(1.0 - delta), one = bc(1.0);
    Packet sum_off = bc(0.0), diag = bc(0.0), minc = bc(std::numeric_limits<S>::infinity()),
           linked = bc(0.0);
    // Local pointers: the scratch vectors' data pointers would be reloaded after every store.
    const S* const u = s.u.data();
    const S* const hb = s.hb.data();
    const S* const rn = s.z.data();
    S* const krow = s.kf.data();
    const auto on_link = out.on_link;
    for (Index i = 0; i < n; ++i) {
      const Packet vi = ld(u + i * W);
      diag = ei::pmadd(vi, vi, diag);  // K_ii = 1
      if (i + 1 == n) break;
      const Packet hi = ld(hb + i * W), ri = ld(rn + i * W);
      const S* const er = e + tri(i, i + 1, n) * W;
      // The row's exponentials first, alone in their loop (independent, so they overlap; in
      // the loop below, beside the row's sums, they ran at half their throughput), into the
      // kept kernel's row or a row buffer; then the sums over them. The same values, summed
      // in the same order.
      S* const kr = kernel_out ? kernel_out + tri(i, i + 1, n) * W : krow;
      for (Index j = i + 1; j < n; ++j)
        st(kr + (j - i - 1) * W, pair_kernel(beta, ld(er + (j - i - 1) * W), hi, ld(hb + j * W)));
      Packet row = bc(0.0);
      for (Index j = i + 1; j < n; ++j) {
        const Packet g = ld(er + (j - i - 1) * W), k = ld(kr + (j - i - 1) * W);
        row = ei::pmadd(k, ld(u + j * W), row);
        minc = ei::pmin(minc, ei::pmul(ei::pmul(g, ri), ld(rn + j * W)));
        const Packet close = ei::pcmp_lt(thr, g);  // all-ones lanes where <x_i, x_j> > 1 - delta
        linked = ei::padd(linked, ei::pand(close, one));
        if (on_link) {
          alignas(64) S m[W];
          st(m, ei::pand(close, one));
          unsigned mask = 0;
          for (Index l = 0; l < W; ++l)
            if (m[l] != 0.0) mask |= 1u << l;
          if (mask) on_link(out.ctx, i, j, mask);
        }
      }
      sum_off = ei::pmadd(vi, row, sum_off);
    }
    // sum_ij v_i v_j K_ij = diag + 2 sum_{i<j}; log E = beta D* + log(that) - log(2 beta).
    alignas(64) S so[W], dg[W], hm[W], mc[W], lk[W];
    st(so, sum_off);
    st(dg, diag);
    st(hm, hmax);
    st(mc, minc);
    st(lk, linked);
    for (Index l = 0; l < W; ++l) {
      if (out.log_energy) {
        out.log_energy[l] = 2.0 * hm[l] + std::log(dg[l] + 2.0 * so[l]) - log_two_beta(in.beta[l]);
      }
      if (out.min_cosine) out.min_cosine[l] = mc[l];
      if (out.clustered) out.clustered[l] = lk[l];
    }
    // Order |sum_i w_i x_i| and mean direction |sum_i w_i x_i / |x_i||^2 (w_i = e^{log w_i}).
    if (out.order || out.mean_dir) {
      Packet o2 = bc(0.0), m2 = bc(0.0);
      S* wv = s.kf.data();  // n W weights (the pair buffer is free in this pass)
      for (Index i = 0; i < n * W; ++i) wv[i] = in.w ? in.w[i] : std::exp(in.log_w[i]);
      // A block of K coordinates at a time: 2 K independent sums over i (one coordinate's
      // chain of adds would wait on its own latency), each in ascending i as one at a time.
      for_coordinate_blocks(d, [&]<int K>(Index k0) {
        Packet so1[K], sm1[K];
        ATTNFLOW_UNROLL for (int q = 0; q < K; ++q) so1[q] = sm1[q] = bc(0.0);
        for (Index i = 0; i < n; ++i) {
          const Packet wi = ld(wv + i * W), ri = ld(s.z.data() + i * W);
          const S* xi = x + (k0 * n + i * K) * W;
          ATTNFLOW_UNROLL for (int q = 0; q < K; ++q) {
            const Packet wx = ei::pmul(wi, ld(xi + q * W));
            so1[q] = ei::padd(so1[q], wx);
            sm1[q] = ei::pmadd(wx, ri, sm1[q]);
          }
        }
        for (int q = 0; q < K; ++q) {  // coordinates ascending; products then sums, not FMAs
          // (kept: the compiler would contract the product and the sum)
          const Packet o = kept(ei::pmul(so1[q], so1[q])), m = kept(ei::pmul(sm1[q], sm1[q]));
          o2 = ei::padd(o2, o);
          m2 = ei::padd(m2, m);
        }
      });
      alignas(64) S o2s[W], m2s[W];
      st(o2s, o2);
      st(m2s, m2);
      for (Index l = 0; l < W; ++l) {
        if (out.order) out.order[l] = std::sqrt(o2s[l]);
        if (out.mean_dir) out.mean_dir[l] = m2s[l];
      }
    }
  }

};

}  // namespace

template <class S>
Index batch_lanes() {
  return Lanes<S>::W;
}
template Index batch_lanes<double>();
template Index batch_lanes<float>();
Index batch_width() { return Lanes<double>::W; }

template <class S>
Index batch_pair_kernel_size(Index n) {
  return (n * (n - 1) / 2 + n) * Lanes<S>::W;
}
template Index batch_pair_kernel_size<double>(Index);
template Index batch_pair_kernel_size<float>(Index);


void batch_attention_average(const BatchAttentionInput& in, double* a, double* lse) {
  Lanes<double>::attention_average(in, a, lse);
}
void batch_attention_average(const BatchAttentionInputF& in, float* a, float* lse) {
  Lanes<float>::attention_average(in, a, lse);
}
void batch_sinkhorn_average(const BatchAttentionInput& in, const BatchSinkhornControl& control, double* a,
                            const BatchSinkhornStatus& status) {
  Lanes<double>::sinkhorn_average(in, control, a, status);
}
void batch_project_tangent(const double* x, double* a, Index n, Index d) { Lanes<double>::project_tangent(x, a, n, d); }
void batch_project_tangent(const float* x, float* a, Index n, Index d) { Lanes<float>::project_tangent(x, a, n, d); }
void batch_normalize_rows(double* x, Index n, Index d) { Lanes<double>::normalize_rows(x, n, d); }
void batch_normalize_rows(float* x, Index n, Index d) { Lanes<float>::normalize_rows(x, n, d); }
bool batch_residual_layer(double* x, const double* a, double h, Index n, Index d) {
  return Lanes<double>::residual_layer(x, a, h, n, d);
}
bool batch_residual_layer(float* x, const float* a, double h, Index n, Index d) {
  return Lanes<float>::residual_layer(x, a, h, n, d);
}
void batch_pair_observables(const BatchAttentionInput& in, double delta, const BatchPairObservables& out) {
  Lanes<double>::pair_observables(in, delta, out);
}
void batch_pair_observables(const BatchAttentionInputF& in, double delta, const BatchPairObservablesF& out) {
  Lanes<float>::pair_observables(in, delta, out);
}

}  // namespace attnflow
