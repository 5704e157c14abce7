#include "observables_csv.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "attnflow/io/csv.hpp"

namespace attnflow::detail {

ObservablesCsv::ObservablesCsv(const std::string& path, std::uint64_t keep_bytes,
                               const std::vector<std::string>& columns)
    : path_(path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool exists = fs::exists(path, ec);
  if (keep_bytes > 0) {
    if (!exists || fs::file_size(path) < keep_bytes)
      throw std::runtime_error(fmt::format("resume: {} is shorter than the checkpoint says ({} bytes)", path,
                                           keep_bytes));
    fs::resize_file(path, keep_bytes);  // drop rows written after the checkpoint
  }
  f_ = std::fopen(path.c_str(), keep_bytes > 0 ? "ab" : "wb");
  if (!f_) throw std::runtime_error(fmt::format("cannot write {}: {}", path, std::strerror(errno)));
  bytes_ = keep_bytes;
  if (keep_bytes == 0) {
    std::string header;
    for (std::size_t i = 0; i < columns.size(); ++i) header += (i ? "," : "") + columns[i];
    header += '\n';
    std::fwrite(header.data(), 1, header.size(), f_);
    bytes_ += header.size();
    std::fflush(f_);
  }
}

ObservablesCsv::~ObservablesCsv() {
  if (f_) std::fclose(f_);
}

void ObservablesCsv::write(const std::vector<ObservationRow>& rows) {
  std::string text;
  for (const auto& r : rows) {
    text += format_double(r.t);
    text += fmt::format(",{}", r.system);
    for (double v : r.values) text += "," + format_double(v);
    text += '\n';
  }
  if (std::fwrite(text.data(), 1, text.size(), f_) != text.size() || std::fflush(f_) != 0)
    throw std::runtime_error(fmt::format("cannot write {}: {}", path_, std::strerror(errno)));
  bytes_ += text.size();
}

}  // namespace attnflow::detail
