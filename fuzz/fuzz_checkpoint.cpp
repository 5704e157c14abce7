// Fuzz target: checkpoint files (read_checkpoint for `run --resume`, read_icl_checkpoint for
// `icl --resume`, read_ot_checkpoint for `ot --resume`). The readers take a path, so each input
// is written to one scratch file of this process first. Only std::invalid_argument is an acceptable error.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "attnflow/run/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("attnflow_fuzz_checkpoint." + std::to_string(getpid())))
          .string();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    attnflow::read_checkpoint(path);
  } catch (const std::invalid_argument&) {
  }
  try {
    attnflow::read_icl_checkpoint(path);
  } catch (const std::invalid_argument&) {
  }
  try {
    attnflow::read_ot_checkpoint(path);
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
