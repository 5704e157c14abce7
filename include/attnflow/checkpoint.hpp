// Run checkpoints: everything a killed run needs to continue bit for bit (the flow state of
// every system, its integrator and noise generator states, the observation counter and the length
// of observables.csv at that moment), in one versioned file written atomically:
//   "ATTNFLOW-CHECKPOINT\n" | uint64 json length | JSON metadata | .npy (systems, n, c) float64
// (c = the flow's state columns: d, 1 for Kuramoto angles, d + 1 under a scheme).
// Doubles in the metadata are stored as their 64-bit patterns, so nothing is rounded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attnflow/flow.hpp"
#include "attnflow/types.hpp"

namespace attnflow {

inline constexpr int kCheckpointVersion = 1;

struct Checkpoint {
  int version = kCheckpointVersion;
  std::string config;             // resolved config text: a resume must use the same one
  std::int64_t observation = 0;   // index of the next observation to make
  std::uint64_t csv_bytes = 0;    // observables.csv is truncated to this length on resume
  std::vector<FlowState> flow;  // per system: integrator state and noise stream
  std::vector<Matrix> states;   // per system, the flow state (n, c)
};

// Writes atomically (a reader never sees half a checkpoint).
void write_checkpoint(const std::string& path, const Checkpoint& c);
// Throws std::invalid_argument naming the file for a bad magic, version or truncated data.
Checkpoint read_checkpoint(const std::string& path);

}  // namespace attnflow
