// Thread count used by every parallel loop in attnflow (OpenMP). Work is always split into
// fixed tiles whose reduction order does not depend on this number, so results are
// bit-identical on 1 thread or many (ARCHITECTURE.md, "Determinism by construction").
#pragma once

namespace attnflow {

// Sets the number of threads; 0 restores the default (OpenMP's, e.g. OMP_NUM_THREADS).
void set_num_threads(int threads);
// The number of threads parallel loops will use (>= 1).
int num_threads();

}  // namespace attnflow
