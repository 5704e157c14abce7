// FNV-1a 64: the checksum of model files and checkpoints (their trailers), and the
// fingerprint of a job's input files (a resume must read the same inputs).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

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

// The file's size and hash, as "<size> bytes, fnv1a64 <hex>", read in blocks (the file is
// never held whole). Throws std::invalid_argument naming the file if it cannot be read.
std::string file_fingerprint(const std::string& path);

}  // namespace attnflow
