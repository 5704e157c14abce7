#include "attnflow/io/npy.hpp"

#include <fmt/format.h>

#include <cstring>
#include <fstream>
#include <regex>
#include <utility>
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

namespace {

// What a header says, checked: where the data starts, its element type and count.
struct NpyLayout {
  std::string dtype;
  std::size_t item = 0, offset = 0, count = 0;
  std::vector<Index> shape;
};

// The header at the start of `bytes`, for a file of `total` bytes (bytes holds at least the
// header, or the whole file when it is shorter): the element count is bounded by the bytes
// present before anything is allocated, so a header claiming (1, 2^61) is an error naming the
// sizes, not an allocation failure.
NpyLayout npy_layout(const std::string& bytes, std::size_t total, const std::string& name) {
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

  NpyLayout l;
  l.offset = offset;
  const std::string descr = header_value(header, "descr");
  const std::string fortran = header_value(header, "fortran_order");
  if (descr.empty() || fortran.empty())
    fail(name, "malformed header (needs 'descr', 'fortran_order' and 'shape'): " + echoed_value(header));
  l.dtype = descr.substr(1, descr.size() - 2);
  if (l.dtype == "<f8" || l.dtype == "f8") l.item = 8;
  else if (l.dtype == "<f4" || l.dtype == "f4") l.item = 4;
  else
    fail(name, fmt::format("dtype = '{}', must be float64 ('<f8') or float32 ('<f4'); convert "
                           "with a.astype(np.float64)", echoed_value(l.dtype, 40)));
  if (fortran != "False")
    fail(name, "fortran_order = True, must be C order; save np.ascontiguousarray(a)");
  l.shape = header_shape(name, header);

  const size_t have = total - offset;
  size_t count = 1;
  bool too_big = false;
  for (const Index dim : l.shape) {
    if (dim == 0) {
      count = 0;
      too_big = false;
      break;
    }
    if (!too_big && count > have / l.item / static_cast<size_t>(dim)) too_big = true;
    if (!too_big) count *= static_cast<size_t>(dim);
  }
  std::string shape_text;
  for (const Index dim : l.shape) shape_text += fmt::format("{}{}", shape_text.empty() ? "" : ", ", dim);
  if (too_big)
    fail(name, fmt::format("truncated: data has {} bytes, header shape ({}) needs more", have,
                           shape_text));
  const size_t need = count * l.item;
  if (have < need)
    fail(name, fmt::format("truncated: data has {} bytes, header shape ({}) needs {}", have,
                           shape_text, need));
  l.count = count;
  return l;
}

// `count` elements of type l.item from `src` into `dst` (float32 widened).
void decode(const NpyLayout& l, const char* src, std::size_t count, double* dst) {
  if (count == 0) return;  // dst may be null, which memcpy must never see (fuzzing)
  if (l.item == 8) {
    std::memcpy(dst, src, count * 8);
  } else {
    for (size_t i = 0; i < count; ++i) {
      float f;
      std::memcpy(&f, src + 4 * i, 4);
      dst[i] = f;
    }
  }
}

// (rows, cols) of a 2-D array, or of a 1-D array read as (n, 1).
std::pair<Index, Index> matrix_shape(const std::vector<Index>& shape, const std::string& name) {
  if (shape.size() == 2) return {shape[0], shape[1]};
  if (shape.size() == 1) return {shape[0], 1};
  fail(name, fmt::format("array has {} dimensions, must be 2 (n, d)", shape.size()));
}

// The file's first bytes up to the end of its header (fewer when the file is shorter), and
// the file's size.
std::pair<std::string, std::size_t> read_header(std::ifstream& in, const std::string& path) {
  in.seekg(0, std::ios::end);
  const auto total = static_cast<std::size_t>(in.tellg());
  auto prefix = [&](std::size_t len) {
    std::string b(std::min(len, total), '\0');
    in.seekg(0);
    in.read(b.data(), static_cast<std::streamsize>(b.size()));
    if (!in) fail(path, "cannot read the header");
    return b;
  };
  std::string b = prefix(12);
  std::size_t end = 12;
  const auto byte = [&](std::size_t i) { return static_cast<std::size_t>(static_cast<unsigned char>(b[i])); };
  if (b.size() >= 10 && b[6] == 1) end = 10 + (byte(8) | (byte(9) << 8));
  else if (b.size() >= 12 && (b[6] == 2 || b[6] == 3)) {
    uint32_t len = 0;
    std::memcpy(&len, b.data() + 8, 4);
    end = 12 + static_cast<std::size_t>(len);
  }
  return {prefix(end), total};
}

}  // namespace

NpyArray parse_npy(const std::string& bytes, const std::string& name) {
  const NpyLayout l = npy_layout(bytes, bytes.size(), name);
  NpyArray arr;
  arr.dtype = l.dtype;
  arr.shape = l.shape;
  arr.data.resize(l.count);
  decode(l, bytes.data() + l.offset, l.count, arr.data.data());
  return arr;
}

std::vector<Index> read_npy_shape(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  const auto [header, total] = read_header(in, path);
  return npy_layout(header, total, path).shape;
}

Matrix read_npy_rows(const std::string& path, Index first, Index count) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  const auto [header, total] = read_header(in, path);
  const NpyLayout l = npy_layout(header, total, path);
  const auto [rows, cols] = matrix_shape(l.shape, path);
  if (first < 0 || count < 0 || first + count > rows)
    fail(path, fmt::format("rows [{}, {}) requested, must lie in [0, {})", first, first + count, rows));
  Matrix m(count, cols);
  const std::size_t row_bytes = static_cast<std::size_t>(cols) * l.item;
  std::string bytes(static_cast<std::size_t>(count) * row_bytes, '\0');
  in.seekg(static_cast<std::streamoff>(l.offset + static_cast<std::size_t>(first) * row_bytes));
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!in) fail(path, fmt::format("cannot read rows [{}, {})", first, first + count));
  decode(l, bytes.data(), static_cast<std::size_t>(count * cols), m.data());
  return m;
}

NpyArray read_npy(const std::string& path) { return parse_npy(read_file(path), path); }

Matrix read_npy_matrix(const std::string& path) {
  NpyArray a = read_npy(path);
  const auto [rows, cols] = matrix_shape(a.shape, path);
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
