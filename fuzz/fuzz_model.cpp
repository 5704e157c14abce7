// Fuzz target: model files (model_from_bytes, the reader of `apply --model`). The checksum is
// checked before parsing, so the first input byte picks the mode: even, the bytes as given;
// odd, the rest with a valid FNV-1a 64 checksum appended, which reaches the layer parser. A
// model that loads must serialize back to the same bytes. Only std::invalid_argument is an
// acceptable error.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "attnflow/model/model.hpp"

namespace {

std::uint64_t fnv1a_64(const std::string& s) {
  std::uint64_t h = 14695981039346656037ULL;
  for (const unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  const bool fix_checksum = data[0] & 1;
  if (fix_checksum) {
    const std::uint64_t sum = fnv1a_64(bytes);
    bytes.append(reinterpret_cast<const char*>(&sum), sizeof(sum));
  }
  try {
    const attnflow::Model m = attnflow::model_from_bytes(bytes, "fuzz.afm");
    if (fix_checksum && attnflow::model_to_bytes(m) != bytes) std::abort();
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
