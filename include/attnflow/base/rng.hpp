// The project's one seeded random generator: xoshiro256** seeded by SplitMix64, with normals
// by Box-Muller. Its streams are defined here, not by the standard library, so a seed gives
// the same numbers with any compiler, and independent streams (one per system, prompt, ...)
// make results independent of the thread count (docs/math.md section 0).
#pragma once

#include <array>
#include <cstdint>

#include "attnflow/base/types.hpp"

namespace attnflow {

class Rng {
 public:
  explicit Rng(std::uint64_t seed, std::uint64_t stream = 0);

  // xoshiro256**; inline because normals for a training step take 768k of them.
  std::uint64_t next_u64() { return next(s_); }
  // The same step on a caller's copy of the state: a bulk sampler keeps the state in registers
  // (set_state() writes it back), instead of storing it to memory and reloading it per draw.
  static std::uint64_t next(std::array<std::uint64_t, 4>& s) {
    const std::uint64_t result = rotl(s[1] * 5, 7) * 9;
    const std::uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }
  // Uniform on [0, 1) with 53 random bits.
  double uniform();
  // Standard normal (Box-Muller; the second value of each pair is kept for the next call).
  double normal();
  // Fills a matrix with i.i.d. standard normals, row by row.
  void fill_normal(Matrix& a);
  // An independent generator for sub-stream `stream` of this seed (e.g. system k of an ensemble).
  Rng split(std::uint64_t stream) const;

  std::uint64_t seed() const { return seed_; }
  std::uint64_t stream() const { return stream_; }

  // Full state, for checkpoints: restoring it continues the stream exactly.
  struct State {
    std::array<std::uint64_t, 4> s;
    double cached_normal;
    bool has_cached;
  };
  State state() const { return {s_, cached_, has_cached_}; }
  void set_state(const State& st) {
    s_ = st.s;
    cached_ = st.cached_normal;
    has_cached_ = st.has_cached;
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t seed_, stream_;
  std::array<std::uint64_t, 4> s_{};
  double cached_ = 0.0;
  bool has_cached_ = false;
};

}  // namespace attnflow
