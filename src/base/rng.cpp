#include "attnflow/base/rng.hpp"

#include <cmath>
#include <numbers>

namespace attnflow {

namespace {
std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
}  // namespace

Rng::Rng(std::uint64_t seed, std::uint64_t stream) : seed_(seed), stream_(stream) {
  // Mix seed and stream through SplitMix64 so nearby seeds/streams give unrelated states.
  std::uint64_t x = seed;
  std::uint64_t mixed = splitmix64(x) ^ (stream * 0xd1b54a32d192ed03ULL + 0x8cb92ba72f3d8dd7ULL);
  for (auto& word : s_) word = splitmix64(mixed);
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

double Rng::normal() {
  if (has_cached_) {
    has_cached_ = false;
    return cached_;
  }
  // Box-Muller on (0, 1]: 1 - uniform() avoids log(0).
  const double u1 = 1.0 - uniform();
  const double u2 = uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double a = 2.0 * std::numbers::pi * u2;
  cached_ = r * std::sin(a);
  has_cached_ = true;
  return r * std::cos(a);
}

void Rng::fill_normal(Matrix& a) {
  for (Index i = 0; i < a.rows(); ++i)
    for (Index j = 0; j < a.cols(); ++j) a(i, j) = normal();
}

Rng Rng::split(std::uint64_t stream) const {
  return Rng(seed_ ^ (stream_ * 0x9e3779b97f4a7c15ULL), stream + 1);
}

}  // namespace attnflow
