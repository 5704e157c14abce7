// Checkpoints: everything a killed job needs to continue bit for bit, in one versioned file
// written atomically. Every kind shares one container:
//   "ATTNFLOW-CHECKPOINT\n" | uint64 json length | JSON metadata | one .npy block (float64)
//   | uint64 checksum: FNV-1a 64 of every preceding byte (version 2 on), checked on reading,
//   so a flipped bit anywhere is refused instead of resumed into different results.
// Doubles in the metadata are stored as their 64-bit patterns, so nothing is rounded.
//   `attnflow run` (Checkpoint): the flow state of every system, its integrator and noise
//     generator states, the observation counter and the length of observables.csv; the .npy
//     block is (systems, n, c) (c = the flow's state columns: d, 1 for Kuramoto angles, d + 1
//     under a scheme).
//   `attnflow ot` (OtCheckpoint, "kind": "ot"): the Sinkhorn potentials after an iteration.
//   `attnflow icl` (IclCheckpoint, "kind": "icl"): the training state (icl.hpp); the .npy
//     block is 1-D: A row-major (d * d), b, then the history rows (step, time, risk,
//     risk_infinite, b, a_norm, balance), 7 values each.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attnflow/flow/flow.hpp"
#include "attnflow/icl/icl.hpp"
#include "attnflow/io/npy.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

inline constexpr int kCheckpointVersion = 2;  // 2: checksum trailer

struct Checkpoint {
  int version = kCheckpointVersion;
  std::string config;             // resolved config text: a resume must use the same one
  std::int64_t observation = 0;   // index of the next observation to make
  std::uint64_t csv_bytes = 0;    // observables.csv is truncated to this length on resume
  std::vector<FlowState> flow;  // per system: integrator state and noise stream
  std::vector<Matrix> states;   // per system, Ensemble::saved_state(): the flow state (n, c), or
                                // coordinates and basis (n, n + d) on the reduced batched path
};

// Writes atomically (a reader never sees half a checkpoint).
void write_checkpoint(const std::string& path, const Checkpoint& c);
// Throws std::invalid_argument naming the file for a bad magic, version, checksum or truncated
// data.
Checkpoint read_checkpoint(const std::string& path);

// The in-context regression training state (attnflow icl).
struct IclCheckpoint {
  int version = kCheckpointVersion;
  std::string config;   // resolved config text: a resume must use the same one
  IclTrainState state;  // step, params, ODE integrator state, history so far
};
void write_icl_checkpoint(const std::string& path, const IclCheckpoint& c);
// Throws like read_checkpoint, and for a checkpoint of another kind.
IclCheckpoint read_icl_checkpoint(const std::string& path);

// An entropic OT solve (attnflow ot, "kind": "ot"): where the Sinkhorn iterations stand
// (SinkhornResumePoint); the .npy block is 1-D: f (n) then g (m).
struct OtCheckpoint {
  int version = kCheckpointVersion;
  std::string config;      // the inputs and options (fingerprint): a resume must have the same
  int iteration = 0;       // full iterations done
  double seconds = 0.0;    // solve time so far (summed over resumes)
  Vector f, g;
  bool relaxed = false;    // g over-relaxed (SinkhornIterate::relaxed); absent in the file = false
};
void write_ot_checkpoint(const std::string& path, const OtCheckpoint& c);
// Throws like read_checkpoint, and for a checkpoint of another kind.
OtCheckpoint read_ot_checkpoint(const std::string& path);

// The shared container, for a new kind: metadata is JSON text, data one float64 array.
void write_checkpoint_file(const std::string& path, const std::string& metadata, const double* data,
                           const std::vector<Index>& shape);
struct CheckpointFile {
  std::string metadata;
  NpyArray data;
};
// Checks the magic, the length, the version and the checksum; the caller parses the metadata.
CheckpointFile read_checkpoint_file(const std::string& path);

}  // namespace attnflow
