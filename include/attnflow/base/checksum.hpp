// FNV-1a 64: the checksum of model files and checkpoints (their trailers), and of the input
// files a resumable job fingerprints (io/atomic_file.hpp's file_fingerprint).
#pragma once

#include <cstddef>
#include <cstdint>

namespace attnflow {

inline constexpr std::uint64_t kFnvOffsetBasis = 14695981039346656037ULL;  // the standard basis

// The hash of `size` bytes, continuing from `basis` (a running hash, or the offset basis).
inline std::uint64_t fnv1a64(const char* data, std::size_t size, std::uint64_t basis = kFnvOffsetBasis) {
  std::uint64_t h = basis;
  for (std::size_t i = 0; i < size; ++i) {
    h ^= static_cast<unsigned char>(data[i]);
    h *= 1099511628211ULL;
  }
  return h;
}

}  // namespace attnflow
