#include "attnflow/io/npy.hpp"

#include <fmt/format.h>

#include <cstring>
#include <regex>
#include <stdexcept>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/base/error.hpp"

namespace attnflow {

namespace {

// Largest dimension accepted in a header (2^53: exact in a double; far beyond any file).
constexpr Index kNpyMaxDim = Index{1} << 53;

[[noreturn]] void fail(const std::string& name, const std::string& msg) {
  throw std::invalid_argument(fmt::format("npy: {}: {}", name, msg));
}

std::string header_value(const std::string& header, const std::string& key) {
  const std::regex re("'" + key + "'\\s*:\\s*('[^']*'|True|False)");
  std::smatch m;
  if (!std::regex_search(header, m, re)) return {};
  return m[1].str();
}

// The 'shape' entry: a flat tuple of non-negative decimal integers, "(20, 3)", "(5,)" or "()".
// Negative, nested, non-integer or out-of-range dimensions are rejected (they are never
// silently read as something else), and the element count is checked for overflow.
std::vector<Index> header_shape(const std::string& name, const std::string& header) {
  const auto key = header.find("'shape'");
  std::size_t p = key == std::string::npos ? key : header.find_first_not_of(" \t", key + 7);
  if (p == std::string::npos || header[p] != ':') fail(name, "malformed header (no 'shape' entry): " + echoed_value(header));
  p = header.find_first_not_of(" \t", p + 1);
  const std::size_t start = p;
  auto bad = [&](const char* rule) -> void {
    if (start == std::string::npos) fail(name, fmt::format("shape is missing, must be {}", rule));
    // The shape's text: to its ')' or, failing that, to the end of the dict.
    const auto close = header.find(')', start);
    std::string text = header.substr(start, close == std::string::npos ? std::string::npos : close - start + 1);
    if (close == std::string::npos) {
      text = text.substr(0, text.find('}'));
      text.erase(text.find_last_not_of(" ,") + 1);
    }
    fail(name, fmt::format("shape = {}, must be {}", echoed_value(text, 40), rule));
  };
  std::vector<Index> shape;
  if (p == std::string::npos || header[p] != '(') bad("a tuple of non-negative integers");
  ++p;
  while (true) {
    p = header.find_first_not_of(" \t", p);
    if (p == std::string::npos) bad("a tuple of non-negative integers");
    if (header[p] == ')') break;
    if (header[p] == '-') bad("a tuple of non-negative integers (negative dimension)");
    if (header[p] < '0' || header[p] > '9') bad("a flat tuple of non-negative integers");
    Index dim = 0;
    for (; p < header.size() && header[p] >= '0' && header[p] <= '9'; ++p) {
      if (dim > (kNpyMaxDim - (header[p] - '0')) / 10)
        bad(fmt::format("a tuple of integers <= {}", kNpyMaxDim).c_str());
      dim = dim * 10 + (header[p] - '0');
    }
    shape.push_back(dim);
    if (shape.size() > 32) bad("a tuple of at most 32 dimensions");
    p = header.find_first_not_of(" \t", p);
    if (p == std::string::npos) bad("a tuple of non-negative integers");
    if (header[p] == ',') ++p;
    else if (header[p] != ')') bad("a flat tuple of non-negative integers");
  }
  return shape;
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
  if (descr.empty() || fortran.empty())
    fail(name, "malformed header (needs 'descr', 'fortran_order' and 'shape'): " + echoed_value(header));
  arr.dtype = descr.substr(1, descr.size() - 2);
  size_t item = 0;
  if (arr.dtype == "<f8" || arr.dtype == "f8") item = 8;
  else if (arr.dtype == "<f4" || arr.dtype == "f4") item = 4;
  else
    fail(name, fmt::format("dtype = '{}', must be float64 ('<f8') or float32 ('<f4'); convert "
                           "with a.astype(np.float64)", echoed_value(arr.dtype, 40)));
  if (fortran != "False")
    fail(name, "fortran_order = True, must be C order; save np.ascontiguousarray(a)");
  arr.shape = header_shape(name, header);

  // The element count is bounded by the bytes present before anything is allocated, so a
  // header claiming (1, 2^61) is an error naming the sizes, not an allocation failure.
  const size_t have = bytes.size() - offset;
  size_t count = 1;
  bool too_big = false;
  for (const Index dim : arr.shape) {
    if (dim == 0) {
      count = 0;
      too_big = false;
      break;
    }
    if (!too_big && count > have / item / static_cast<size_t>(dim)) too_big = true;
    if (!too_big) count *= static_cast<size_t>(dim);
  }
  std::string shape_text;
  for (const Index dim : arr.shape) shape_text += fmt::format("{}{}", shape_text.empty() ? "" : ", ", dim);
  if (too_big)
    fail(name, fmt::format("truncated: data has {} bytes, header shape ({}) needs more", have,
                           shape_text));
  const size_t need = count * item;
  if (have < need)
    fail(name, fmt::format("truncated: data has {} bytes, header shape ({}) needs {}", have,
                           shape_text, need));
  arr.data.resize(count);
  if (item == 8) {
    // need = 0 (a zero dimension): data() may be null, which memcpy must never see (fuzzing).
    if (need > 0) std::memcpy(arr.data.data(), bytes.data() + offset, need);
  } else {
    for (size_t i = 0; i < count; ++i) {
      float f;
      std::memcpy(&f, bytes.data() + offset + 4 * i, 4);
      arr.data[i] = f;
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

std::string npy_header(const std::vector<Index>& shape) {
  std::string dims;
  for (Index s : shape) dims += fmt::format("{}, ", s);
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
  return out;
}

std::string npy_bytes(const double* data, const std::vector<Index>& shape) {
  Index count = 1;
  for (Index s : shape) count *= s;
  std::string out = npy_header(shape);
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
