// Ziggurat normals (Doornik 2005, "An improved ziggurat method to generate normal random
// samples"): 128 layers of equal area V under exp(-x^2 / 2), right edge R of the base layer;
// a draw picks a layer i and a signed uniform u, accepts u x_i when |u| < x_{i+1} / x_i
// (the rectangle fully under the curve), and otherwise falls back to the exact wedge test
// or, for the base layer, to Marsaglia's exact tail sampler beyond R.
#include "attnflow/base/ziggurat.hpp"

#include <array>
#include <cmath>

namespace attnflow {

namespace {
constexpr int kLayers = 128;
constexpr double kR = 3.442619855899;           // right edge of the base layer
constexpr double kV = 9.91256303526217e-3;      // area of each layer

struct Tables {
  std::array<double, kLayers + 1> x{};  // layer edges, x[0] = V / f(R) (base), x[128] = 0
  std::array<double, kLayers> ratio{};  // x[i + 1] / x[i]: the always-accept fraction
  Tables() {
    double f = std::exp(-0.5 * kR * kR);
    x[0] = kV / f;
    x[1] = kR;
    x[kLayers] = 0.0;
    for (int i = 2; i < kLayers; ++i) {
      x[i] = std::sqrt(-2.0 * std::log(kV / x[i - 1] + f));
      f = std::exp(-0.5 * x[i] * x[i]);
    }
    for (int i = 0; i < kLayers; ++i) ratio[i] = x[i + 1] / x[i];
  }
};
const Tables& tables() {
  static const Tables t;
  return t;
}

// Exact sampling of the normal tail beyond kR (Marsaglia 1964).
double tail(Rng& rng, bool negative) {
  double x = 0.0, y = 0.0;
  do {
    x = std::log(1.0 - rng.uniform()) / kR;
    y = std::log(1.0 - rng.uniform());
  } while (-2.0 * y < x * x);
  return negative ? x - kR : kR - x;
}
}  // namespace

namespace {
// The rare branch of a draw whose rectangle test failed: tail (layer 0), wedge test, or a
// fresh draw; identical in effect to continuing ziggurat_normal's loop.
double slow_path(Rng& rng, const Tables& t, double u, int i) {
  if (i == 0) return tail(rng, u < 0.0);
  const double x = u * t.x[i];
  const double f0 = std::exp(-0.5 * (t.x[i] * t.x[i] - x * x));
  const double f1 = std::exp(-0.5 * (t.x[i + 1] * t.x[i + 1] - x * x));
  if (f1 + rng.uniform() * (f0 - f1) < 1.0) return x;
  return ziggurat_normal(rng);
}
}  // namespace

double ziggurat_normal(Rng& rng) {
  const Tables& t = tables();
  // One 64-bit draw: the top 53 bits give u in [-1, 1), the low 7 bits the layer.
  const std::uint64_t bits = rng.next_u64();
  const double u = 2.0 * (static_cast<double>(bits >> 11) * 0x1.0p-53) - 1.0;
  const int i = static_cast<int>(bits & (kLayers - 1));
  if (std::abs(u) < t.ratio[i]) return u * t.x[i];
  return slow_path(rng, t, u, i);
}

void ziggurat_fill(Rng& rng, double* out, Index count) {
  const Tables& t = tables();  // hoisted: the fast path below is ziggurat_normal's, inlined
  // The generator state lives in locals during the loop and is synced with rng only around
  // the rare slow path, so the stream consumed is exactly ziggurat_normal's, draw by draw.
  Rng::State st = rng.state();
  std::array<std::uint64_t, 4> s = st.s;
  for (Index k = 0; k < count; ++k) {
    const std::uint64_t bits = Rng::next(s);
    const double u = 2.0 * (static_cast<double>(bits >> 11) * 0x1.0p-53) - 1.0;
    const int i = static_cast<int>(bits & (kLayers - 1));
    if (std::abs(u) < t.ratio[i]) [[likely]] {
      out[k] = u * t.x[i];
    } else {
      st.s = s;
      rng.set_state(st);
      out[k] = slow_path(rng, t, u, i);
      st = rng.state();
      s = st.s;
    }
  }
  st.s = s;
  rng.set_state(st);
}

}  // namespace attnflow
