// NumPy .npy files (format versions 1-3): float64 and float32 (converted to float64),
// little-endian, C order. Fortran order, other dtypes, bad headers and truncated files are
// rejected with a message naming the file and the rule. Writes are float64 and atomic.
#pragma once

#include <string>
#include <vector>

#include "attnflow/base/types.hpp"

namespace attnflow {

struct NpyArray {
  std::vector<Index> shape;
  std::vector<double> data;  // row-major (C order)
  std::string dtype;         // "<f8" or "<f4" as read
};

NpyArray read_npy(const std::string& path);
// A 2-D array (n, d); a 1-D array of length n is read as (n, 1).
Matrix read_npy_matrix(const std::string& path);
// A 1-D array (n), or (n, 1).
Vector read_npy_vector(const std::string& path);
// The shape in a file's header (checked as read_npy checks it, the file's size included),
// without reading the data.
std::vector<Index> read_npy_shape(const std::string& path);
// Rows [first, first + count) of a 2-D array (n, d) (a 1-D array: (n, 1)), reading only those
// rows' bytes: for processes that each hold a part of the points (TransportCost::
// sqeuclidean_split). The header and the file's size are checked as read_npy checks them.
Matrix read_npy_rows(const std::string& path, Index first, Index count);

// Writes float64 C-order data with the given shape (any rank), atomically.
void write_npy(const std::string& path, const double* data, const std::vector<Index>& shape);
void write_npy(const std::string& path, const Matrix& a);
void write_npy(const std::string& path, const Vector& a);
// Serializes to bytes (header + data), for writers that bundle arrays.
std::string npy_bytes(const double* data, const std::vector<Index>& shape);
// The header alone (magic, version, padded dictionary) of float64 C-order data of this shape:
// a writer appends the shape's 8-byte values after it.
std::string npy_header(const std::vector<Index>& shape);
NpyArray parse_npy(const std::string& bytes, const std::string& name);

}  // namespace attnflow
