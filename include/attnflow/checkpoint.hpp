// Run checkpoints: everything a killed run needs to continue bit for bit (positions of every
// system, integrator states, noise generator states, the observation counter and the length
// of observables.csv at that moment), in one versioned file written atomically:
//   "ATTNFLOW-CHECKPOINT\n" | uint64 json length | JSON metadata | .npy (systems, n, d) float64.
// Doubles in the metadata are stored as their 64-bit patterns, so nothing is rounded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attnflow/integrate.hpp"
#include "attnflow/rng.hpp"
#include "attnflow/types.hpp"

namespace attnflow {

inline constexpr int kCheckpointVersion = 1;

struct Checkpoint {
  int version = kCheckpointVersion;
  std::string config;             // resolved config text: a resume must use the same one
  std::int64_t observation = 0;   // index of the next observation to make
  std::uint64_t csv_bytes = 0;    // observables.csv is truncated to this length on resume
  std::vector<IntegratorState> states;  // per system
  std::vector<Rng::State> rngs;         // per system (noise streams)
  std::vector<Matrix> positions;        // per system, (n, d)
};

// Writes atomically (a reader never sees half a checkpoint).
void write_checkpoint(const std::string& path, const Checkpoint& c);
// Throws std::invalid_argument naming the file for a bad magic, version or truncated data.
Checkpoint read_checkpoint(const std::string& path);

}  // namespace attnflow
