// Fast standard normals from attnflow's Rng: the ziggurat method (Marsaglia & Tsang 2000, in
// Doornik's 2005 double-precision form, 128 layers). Same Rng bits, a different transform
// than Rng::normal()'s Box-Muller: about 98.5% of draws cost one next_u64, a compare and a
// multiply (no log/sin/cos), which is what lets in-context regression draw 768k normals per
// training step. Deterministic: a seed and stream give the same numbers on every thread count.
#pragma once

#include "attnflow/base/rng.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

// One N(0, 1) draw (consumes one or more next_u64 from rng).
double ziggurat_normal(Rng& rng);
// Fills `count` doubles at `out` with i.i.d. N(0, 1), in order.
void ziggurat_fill(Rng& rng, double* out, Index count);

}  // namespace attnflow
