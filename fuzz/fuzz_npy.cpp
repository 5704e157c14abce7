// Fuzz target: .npy parsing (parse_npy, the reader behind every --x/--y/--v and measure.file).
// Only std::invalid_argument (a message naming the file and the rule) is an acceptable
// outcome for bad bytes; anything else (a crash, a sanitizer report, bad_alloc, length_error,
// a result inconsistent with its shape) is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "attnflow/io/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const attnflow::NpyArray a = attnflow::parse_npy(bytes, "fuzz.npy");
    std::size_t count = 1;
    for (const attnflow::Index dim : a.shape) {
      if (dim < 0) std::abort();
      count *= static_cast<std::size_t>(dim);
    }
    if (a.data.size() != count) std::abort();
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
