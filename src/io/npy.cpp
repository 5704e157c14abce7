#include "attnflow/npy.hpp"

#include <fmt/format.h>

#include <cstring>
#include <regex>
#include <stdexcept>

#include "attnflow/atomic_file.hpp"

namespace attnflow {

namespace {

[[noreturn]] void fail(const std::string& name, const std::string& msg) {
  throw std::invalid_argument(fmt::format("npy: {}: {}", name, msg));
}

std::string header_value(const std::string& header, const std::string& key) {
  const std::regex re("'" + key + "'\\s*:\\s*('[^']*'|True|False|\\([^)]*\\))");
  std::smatch m;
  if (!std::regex_search(header, m, re)) return {};
  return m[1].str();
}

}  // namespace

NpyArray parse_npy(const std::string& bytes, const std::string& name) {
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0)
    fail(name, "not a .npy file (magic string \\x93NUMPY missing)");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) fail(name, "truncated header");
    uint32_t len = 0;
    std::memcpy(&len, bytes.data() + 8, 4);
    header_len = len;
    offset = 12;
  } else {
    fail(name, fmt::format("format version = {}, must be 1, 2 or 3", major));
  }
  if (bytes.size() < offset + header_len) fail(name, "truncated header");
  const std::string header = bytes.substr(offset, header_len);
  offset += header_len;

  NpyArray arr;
  const std::string descr = header_value(header, "descr");
  const std::string fortran = header_value(header, "fortran_order");
  const std::string shape = header_value(header, "shape");
  if (descr.empty() || fortran.empty() || shape.empty()) fail(name, "malformed header: " + header);
  arr.dtype = descr.substr(1, descr.size() - 2);
  size_t item = 0;
  if (arr.dtype == "<f8" || arr.dtype == "f8") item = 8;
  else if (arr.dtype == "<f4" || arr.dtype == "f4") item = 4;
  else
    fail(name, fmt::format("dtype = '{}', must be float64 ('<f8') or float32 ('<f4'); convert "
                           "with a.astype(np.float64)", arr.dtype));
  if (fortran != "False")
    fail(name, "fortran_order = True, must be C order; save np.ascontiguousarray(a)");

  Index count = 1;
  const std::regex num("\\d+");
  for (auto it = std::sregex_iterator(shape.begin(), shape.end(), num); it != std::sregex_iterator(); ++it) {
    const Index dim = std::stoll(it->str());
    arr.shape.push_back(dim);
    count *= dim;
  }
  const size_t need = static_cast<size_t>(count) * item;
  if (bytes.size() - offset < need)
    fail(name, fmt::format("truncated: data has {} bytes, header shape {} needs {}",
                           bytes.size() - offset, shape, need));
  arr.data.resize(static_cast<size_t>(count));
  if (item == 8) {
    std::memcpy(arr.data.data(), bytes.data() + offset, need);
  } else {
    for (Index i = 0; i < count; ++i) {
      float f;
      std::memcpy(&f, bytes.data() + offset + 4 * i, 4);
      arr.data[static_cast<size_t>(i)] = f;
    }
  }
  return arr;
}

NpyArray read_npy(const std::string& path) { return parse_npy(read_file(path), path); }

Matrix read_npy_matrix(const std::string& path) {
  NpyArray a = read_npy(path);
  Index rows = 0, cols = 0;
  if (a.shape.size() == 2) {
    rows = a.shape[0];
    cols = a.shape[1];
  } else if (a.shape.size() == 1) {
    rows = a.shape[0];
    cols = 1;
  } else {
    fail(path, fmt::format("array has {} dimensions, must be 2 (n, d)", a.shape.size()));
  }
  return Eigen::Map<const Matrix>(a.data.data(), rows, cols);
}

Vector read_npy_vector(const std::string& path) {
  NpyArray a = read_npy(path);
  const bool ok = a.shape.size() == 1 || (a.shape.size() == 2 && a.shape[1] == 1);
  if (!ok) fail(path, "array must be 1-dimensional (n) or (n, 1)");
  return Eigen::Map<const Vector>(a.data.data(), a.shape[0]);
}

std::string npy_bytes(const double* data, const std::vector<Index>& shape) {
  std::string dims;
  Index count = 1;
  for (Index s : shape) {
    dims += fmt::format("{}, ", s);
    count *= s;
  }
  if (shape.size() > 1) dims.resize(dims.size() - 2);
  std::string header = fmt::format("{{'descr': '<f8', 'fortran_order': False, 'shape': ({}), }}", dims);
  // Pad with spaces so that magic + len + header + '\n' is a multiple of 64 bytes.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(1);
  out.push_back(0);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>((header.size() >> 8) & 0xff));
  out += header;
  out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(count) * 8);
  return out;
}

void write_npy(const std::string& path, const double* data, const std::vector<Index>& shape) {
  write_file_atomic(path, npy_bytes(data, shape));
}
void write_npy(const std::string& path, const Matrix& a) {
  write_npy(path, a.data(), {a.rows(), a.cols()});
}
void write_npy(const std::string& path, const Vector& a) { write_npy(path, a.data(), {a.size()}); }

}  // namespace attnflow
