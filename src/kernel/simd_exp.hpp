// Vectorized exp for the kernel's max-shifted arguments (x <= 0 in the hot loop, any x here).
// Why not Eigen's pexp: it evaluates a rational approximation with a vector division and a
// generic ldexp, which costs about twice as much as this division-free version, and the
// exponential is the kernel's bottleneck (one per query-key pair).
//
// Two implementations with one contract: on AVX-512 (the build uses -march=native) a table +
// vscalefpd version, 1.5x the throughput (measured 1.7 ulp); elsewhere the portable one:
// Method (Cody-Waite + Taylor): x = k ln2 + r with k = round(x / ln2), |r| <= ln2/2;
// e^r by its degree-13 Taylor polynomial (truncation error r^14/14! < 5e-18 relative);
// 2^k built in the exponent bits. Accuracy about 1-2 ulp on [-708, 709]; arguments below
// -708 (where e^x is subnormal, < 3.3e-308) return exactly 0, so exp(-inf) = 0 and
// zero-weight keys contribute nothing; arguments above 709 are clamped (AVX-512: above 709.78
// give inf; callers shift by the maximum, so they never pass positive values). NaN propagates.
//
// simd_exp2 (2^x, the same contract in log2 units) and simd_exp2_finite (finite x only, no
// flush) serve the kernel's loops, whose inputs carry log2(e): their argument reduction is
// adds only.
#pragma once

#include <Eigen/Core>
#include <immintrin.h>
#include <cstdint>
#include <initializer_list>

namespace attnflow::detail {

namespace ei = Eigen::internal;
using Packet = ei::packet_traits<double>::type;
constexpr int kPacketSize = ei::unpacket_traits<Packet>::size;
// Same-width integer vector (GCC vector extension) for exponent-bit arithmetic.
typedef std::int64_t PacketInt __attribute__((vector_size(sizeof(Packet))));
typedef double PacketDouble __attribute__((vector_size(sizeof(Packet))));

// Horner's rule: c[0] r^(N-1) + c[1] r^(N-2) + ... + c[N-1], one FMA per coefficient after
// the first.
inline Packet horner(const Packet& r, std::initializer_list<double> c) {
  auto it = c.begin();
  Packet p = ei::pset1<Packet>(*it);
  for (++it; it != c.end(); ++it) p = ei::pmadd(p, r, ei::pset1<Packet>(*it));
  return p;
}

#if defined(__AVX512F__)
// 2^(j / 16) for j = the low 4 bits of t's mantissa (two's complement), from a
// register-resident 16-entry table (vpermt2pd); exact to double rounding.
inline __m512d exp2_table(const __m512d& t) {
  const __m512d tab_lo = _mm512_setr_pd(0x1.0000000000000p+0, 0x1.0b5586cf9890fp+0,
                                        0x1.172b83c7d517bp+0, 0x1.2387a6e756238p+0,
                                        0x1.306fe0a31b715p+0, 0x1.3dea64c123422p+0,
                                        0x1.4bfdad5362a27p+0, 0x1.5ab07dd485429p+0);
  const __m512d tab_hi = _mm512_setr_pd(0x1.6a09e667f3bcdp+0, 0x1.7a11473eb0187p+0,
                                        0x1.8ace5422aa0dbp+0, 0x1.9c49182a3f090p+0,
                                        0x1.ae89f995ad3adp+0, 0x1.c199bdd85529cp+0,
                                        0x1.d5818dcfba487p+0, 0x1.ea4afa2a490dap+0);
  return _mm512_permutex2var_pd(tab_lo, _mm512_castpd_si512(t), tab_hi);
}

// AVX-512 (Packet = __m512d): 16-entry table + vscalefpd, 15 vector instructions against the
// portable version's 25. x = (16 n + j) ln2 / 16 + r with |r| <= ln2 / 32; e^r by a degree-6
// minimax polynomial (Chebyshev fit in 50 digits, error 7e-18); 2^(j/16) from a
// register-resident table (vpermt2pd), 2^n by vscalefpd (exact, overflows to inf, no
// exponent-bit arithmetic). Same contract as below: 0 for x < -708, NaN kept, about 1-2 ulp.
inline Packet simd_exp(const Packet& x_in) {
  // min(c, NaN) returns its second operand: NaN stays NaN; e^710 = inf via scalef.
  const __m512d x = _mm512_min_pd(_mm512_set1_pd(710.0), x_in);
  // q = round(16 x / ln2) / 16 by adding 1.5 * 2^48 (whose ulp is 1/16): t's low mantissa
  // bits hold 16 q, whose low 4 bits (two's complement = 16 q mod 16) index the table, and
  // vscalefpd takes floor(q) itself, so q is used as it is.
  const __m512d shifter = _mm512_set1_pd(0x1.8p48);
  const __m512d t = _mm512_fmadd_pd(x, _mm512_set1_pd(0x1.71547652b82fep+0), shifter);
  const __m512d q = _mm512_sub_pd(t, shifter);
  __m512d r = _mm512_fnmadd_pd(q, _mm512_set1_pd(0x1.62e42fefa39efp-1), x);
  r = _mm512_fnmadd_pd(q, _mm512_set1_pd(0x1.abc9e3b39803fp-56), r);
  const __m512d tj = exp2_table(t);
  const __m512d p = horner(r, {0x1.6c181f479b148p-10, 0x1.11126eecbabeap-7, 0x1.55555554ad3e3p-5,
                                0x1.555555540526ep-3, 0x1.0000000000003p-1, 0x1.000000000000ap+0,
                                1.0});
  // 2^floor(q) * 2^(j/16) * e^r; lanes with x < -708 (subnormal results) give exactly 0,
  // NaN lanes are kept (the unordered compare is true) and propagate.
  const __mmask8 keep = _mm512_cmp_pd_mask(x_in, _mm512_set1_pd(-708.0), _CMP_NLT_UQ);
  return _mm512_maskz_scalef_pd(keep, _mm512_mul_pd(p, tj), q);
}
// 2^x for x in log2 units, finite x <= 1023: the kernel's loops fold log2(e) into their
// inputs and so skip the argument reduction's multiply and two FMAs (the FMA pipes bound
// them): q = round(16 x) / 16 and r = x - q (exact) are plain adds. 2^r by the degree-6
// polynomial above with coefficients c_k ln2^k (mpmath, rounded to double; error 8e-18).
// No clamp and no flush to 0: results below 2^-1022 come out subnormal, as vscalefpd rounds
// them, and 0 below 2^-1075. For the symmetric reduction, whose arguments are finite and
// <= 0 by construction.
inline Packet simd_exp2_finite(const Packet& x) {
  const __m512d shifter = _mm512_set1_pd(0x1.8p48);
  const __m512d t = _mm512_add_pd(x, shifter);
  const __m512d q = _mm512_sub_pd(t, shifter);
  const __m512d r = _mm512_sub_pd(x, q);
  const __m512d tj = exp2_table(t);
  const __m512d p = horner(r, {0x1.430a49610efc5p-13, 0x1.5d89be4c12513p-10, 0x1.3b2ab6fb09b31p-7,
                                0x1.c6b08d6e8a385p-5, 0x1.ebfbdff82c594p-3, 0x1.62e42fefa39fdp-1,
                                1.0});
  return _mm512_scalef_pd(_mm512_mul_pd(p, tj), q);
}

// 2^x for any x, the contract of simd_exp in log2 units: exactly 0 for x < -1022 (subnormal
// results), NaN kept, 2^1025 = inf.
inline Packet simd_exp2(const Packet& x_in) {
  // min(c, NaN) returns its second operand: NaN stays NaN (t, q, r and the result are NaN).
  const __m512d x = _mm512_min_pd(_mm512_set1_pd(1025.0), x_in);
  const __mmask8 keep = _mm512_cmp_pd_mask(x_in, _mm512_set1_pd(-1022.0), _CMP_NLT_UQ);
  return _mm512_maskz_mov_pd(keep, simd_exp2_finite(x));
}
#else
// e^r for |r| <= ln2 / 2 (degree-13 Taylor polynomial, truncation error r^14 / 14! < 5e-18
// relative) times 2^k, k in t's low mantissa bits; exactly 0 where x_in < lo, NaN kept.
inline Packet taylor_times_pow2(const Packet& r, const Packet& t, const Packet& x_in,
                                const Packet& lo) {
  const Packet p = horner(r, {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
                              1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0,
                              1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0});
  // Multiply by 2^k: add k to the exponent field (k sits in t's low bits, two's complement).
  // (A cast between same-size vector types reinterprets the bits, without aliasing.)
  const PacketInt kbits = (PacketInt)t << 52;
  PacketInt bits = (PacketInt)p + kbits;
  // Results below the normal range are subnormal or 0: return exactly 0 (mask of all-ones
  // where x >= lo).
  const PacketDouble xd = (PacketDouble)x_in;
  bits &= (xd >= (PacketDouble)lo);
  // NaN input: the comparison is false and would give 0; keep NaN visible instead.
  const PacketInt is_nan = (xd != xd);
  bits |= is_nan & (PacketInt)x_in;
  return (Packet)bits;
}

inline Packet simd_exp(const Packet& x_in) {
  const Packet lo = ei::pset1<Packet>(-708.0), hi = ei::pset1<Packet>(709.0);
  const Packet x = ei::pmin(ei::pmax(x_in, lo), hi);
  // Round x / ln2 to the nearest integer with the 1.5 * 2^52 trick: the low mantissa bits of
  // t then hold k as an integer.
  const Packet shifter = ei::pset1<Packet>(0x1.8p52);
  const Packet t = ei::pmadd(x, ei::pset1<Packet>(1.4426950408889634), shifter);
  const Packet k = ei::psub(t, shifter);
  // r = x - k ln2 in two parts so that r is exact to double precision.
  Packet r = ei::pmadd(k, ei::pset1<Packet>(-6.93147180369123816490e-01), x);
  r = ei::pmadd(k, ei::pset1<Packet>(-1.90821492927058770002e-10), r);
  return taylor_times_pow2(r, t, x_in, lo);
}

// 2^x, x in log2 units (see the AVX-512 version): k = round(x), r = (x - k) ln2 (x - k
// exact; r carries one rounding, 1e-16 of r), then as simd_exp.
inline Packet simd_exp2(const Packet& x_in) {
  const Packet lo = ei::pset1<Packet>(-1022.0), hi = ei::pset1<Packet>(1023.0);
  const Packet x = ei::pmin(ei::pmax(x_in, lo), hi);
  const Packet shifter = ei::pset1<Packet>(0x1.8p52);
  const Packet t = ei::padd(x, shifter);
  const Packet k = ei::psub(t, shifter);
  const Packet r = ei::pmul(ei::psub(x, k), ei::pset1<Packet>(0x1.62e42fefa39efp-1));
  return taylor_times_pow2(r, t, x_in, lo);
}

// Portable: no cheaper form; results below 2^-1022 are 0 here (not subnormal).
inline Packet simd_exp2_finite(const Packet& x) { return simd_exp2(x); }

#endif

// Single precision (the batched ensemble's float32 path), with simd_exp's contract: exactly 0
// below -87 (e^-87 = 1.6e-38, where float results would turn subnormal), so exp(-inf) = 0;
// NaN kept; above 88.7 inf.
using PacketF = ei::packet_traits<float>::type;
#if defined(__AVX512F__)
// AVX-512: x = k ln2 + r, k = round(x / ln2), |r| <= ln2 / 2 (ln2 in two parts: r exact to
// float); e^r by its degree-7 Taylor polynomial (truncation r^8 / 8! < 5e-9, below float's
// half ulp 6e-8); 2^k by vscalefps. 13 instructions (Eigen's pexp: about 30).
inline PacketF simd_exp(const PacketF& x_in) {
  // min(c, NaN) returns its second operand: NaN stays NaN.
  const __m512 x = _mm512_min_ps(_mm512_set1_ps(88.8f), x_in);
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(0x1.715476p+0f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0x1.62e4p-1f), x);  // ln2's 16 leading bits: k ln2_hi exact
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0x1.7f7d1cp-20f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  for (const float c : {1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f})
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
  const __mmask16 keep = _mm512_cmp_ps_mask(x_in, _mm512_set1_ps(-87.0f), _CMP_NLT_UQ);
  return _mm512_maskz_scalef_ps(keep, p, k);
}
#else
// Elsewhere Eigen's float pexp (about 1 ulp), with the same flush and NaN.
inline PacketF simd_exp(const PacketF& x) {
  const PacketF y = ei::pselect(ei::pcmp_lt(x, ei::pset1<PacketF>(-87.0f)), ei::pzero(x), ei::pexp(x));
  return ei::pselect(ei::pcmp_eq(x, x), y, x);
}
#endif

}  // namespace attnflow::detail
