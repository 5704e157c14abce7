// Vectorized exp for the kernel's max-shifted arguments (x <= 0 in the hot loop, any x here).
// Why not Eigen's pexp: it evaluates a rational approximation with a vector division and a
// generic ldexp, which costs about twice as much as this division-free version, and the
// exponential is the kernel's bottleneck (one per query-key pair).
//
// Method (Cody-Waite + Taylor): x = k ln2 + r with k = round(x / ln2), |r| <= ln2/2;
// e^r by its degree-13 Taylor polynomial (truncation error r^14/14! < 5e-18 relative);
// 2^k built in the exponent bits. Accuracy about 1-2 ulp on [-708, 709]; arguments below
// -708 (where e^x is subnormal, < 3.3e-308) return exactly 0, so exp(-inf) = 0 and
// zero-weight keys contribute nothing; arguments above 709 are clamped (callers shift by
// the maximum, so they never pass positive values). NaN propagates.
#pragma once

#include <Eigen/Core>
#include <cstdint>

namespace attnflow::detail {

namespace ei = Eigen::internal;
using Packet = ei::packet_traits<double>::type;
constexpr int kPacketSize = ei::unpacket_traits<Packet>::size;
// Same-width integer vector (GCC vector extension) for exponent-bit arithmetic.
typedef std::int64_t PacketInt __attribute__((vector_size(sizeof(Packet))));
typedef double PacketDouble __attribute__((vector_size(sizeof(Packet))));

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
  // Taylor polynomial of e^r, Horner form, degree 13.
  Packet p = ei::pset1<Packet>(1.0 / 6227020800.0);
  p = ei::pmadd(p, r, ei::pset1<Packet>(1.0 / 479001600.0));
  p = ei::pmadd(p, r, ei::pset1<Packet>(1.0 / 39916800.0));
  p = ei::pmadd(p, r, ei::pset1<Packet>(1.0 / 3628800.0));
  p = ei::pmadd(p, r, ei::pset1<Packet>(1.0 / 362880.0));
  p = ei::pmadd(p, r, ei::pset1<Packet>(1.0 / 40320.0));
  p = ei::pmadd(p, r, ei::pset1<Packet>(1.0 / 5040.0));
  p = ei::pmadd(p, r, ei::pset1<Packet>(1.0 / 720.0));
  p = ei::pmadd(p, r, ei::pset1<Packet>(1.0 / 120.0));
  p = ei::pmadd(p, r, ei::pset1<Packet>(1.0 / 24.0));
  p = ei::pmadd(p, r, ei::pset1<Packet>(1.0 / 6.0));
  p = ei::pmadd(p, r, ei::pset1<Packet>(0.5));
  p = ei::pmadd(p, r, ei::pset1<Packet>(1.0));
  p = ei::pmadd(p, r, ei::pset1<Packet>(1.0));
  // Multiply by 2^k: add k to the exponent field (k sits in t's low bits, two's complement).
  // (A cast between same-size vector types reinterprets the bits, without aliasing.)
  const PacketInt kbits = (PacketInt)t << 52;
  PacketInt bits = (PacketInt)p + kbits;
  // e^x for x < -708 is subnormal or 0: return exactly 0 (mask of all-ones where x >= lo).
  const PacketDouble xd = (PacketDouble)x_in;
  bits &= (xd >= (PacketDouble)lo);
  // NaN input: the comparison is false and would give 0; keep NaN visible instead.
  const PacketInt is_nan = (xd != xd);
  bits |= is_nan & (PacketInt)x_in;
  return (Packet)bits;
}

}  // namespace attnflow::detail
