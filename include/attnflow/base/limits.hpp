// Size limits checked before a command allocates or writes (H3): an estimate of the
// memory or output a request needs is compared with the machine's physical memory or a
// documented limit, and refused with the key, its value and the estimate, e.g.
//   "run.toml: measure.n = 1e+13 needs about 2.1e+15 bytes of memory, more than this
//    machine's 2.4e+10 (set ATTNFLOW_NO_SIZE_LIMITS=1 to try anyway)".
// ATTNFLOW_NO_SIZE_LIMITS=1 in the environment is the explicit override. Estimates are in
// double so that products of absurd sizes (1e13 * 1e12) cannot overflow.
#pragma once

#include <cstdint>
#include <string_view>

namespace attnflow {

// Documented limits (README, "Reliability"): observations of one run (rows of
// observables.csv per system, snapshot files), and the bytes one command may write.
inline constexpr double kMaxObservations = 1e6;
inline constexpr double kMaxOutputBytes = 1e12;

// Physical memory of this machine in bytes (0 if unknown: then memory is not checked).
double physical_memory_bytes();
// True when ATTNFLOW_NO_SIZE_LIMITS is set to a non-empty value other than "0".
bool size_limits_disabled();

// Throws std::invalid_argument "context: key = value needs about B bytes of memory, more than
// this machine's M (...override...)" when bytes > physical memory.
void require_memory(std::string_view context, std::string_view key, std::string_view value,
                    double bytes);
// Throws when count > limit: "context: key = value gives C <what>, must be <= limit (...)".
void require_count(std::string_view context, std::string_view key, std::string_view value,
                   double count, double limit, std::string_view what);

}  // namespace attnflow
