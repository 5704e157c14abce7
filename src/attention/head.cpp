// An attention head: its shape check and its map in blocks of rows (head.hpp).
#include "attnflow/attention/head.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "attnflow/base/error.hpp"

namespace attnflow {

// Blocks of 256 rows: the multiple of 256 at which kernel_row_parts and symmetric_row_parts cut.
constexpr Index kMapBlock = 256;

Matrix apply_map_rows(const Matrix& x, const Matrix& m) {
  if (m.size() == 0) return x;
  Matrix out(x.rows(), m.rows());
  for (Index i = 0; i < x.rows(); i += kMapBlock) {
    const Index c = std::min(kMapBlock, x.rows() - i);
    out.middleRows(i, c).noalias() = x.middleRows(i, c) * m.transpose();
  }
  return out;
}

namespace {

// What one matrix must look like: rows (-1 = free, printed as `symbol`) x cols, and why.
struct Expect {
  Index rows;
  std::string_view symbol;  // "d_k", "d_v", "d_out"
  std::string row_why;      // appended to "must be d_k = 2" (", the rows of heads[0].q")
  Index cols;
  std::string col_why;      // appended to "must be 3" (", the queries' dimension")
};

// Checks one matrix and returns the rows of the map it stands for (cols when it is empty:
// the identity).
Index check_matrix(const Matrix& m, std::string_view field, const Expect& e,
                   const HeadShape& shape, std::string_view ctx, std::string_view name) {
  const std::string f = fmt::format("{}.{}", name, field);
  const std::string want = e.rows >= 0 ? fmt::format("({}, {})", e.rows, e.cols)
                                       : fmt::format("({}, {})", e.symbol, e.cols);
  if (m.rows() == 0 && m.cols() == 0) {
    if (!shape.identity)
      throw std::invalid_argument(fmt::format(
          "{}: {} has shape (0, 0), must be {} ({} is empty, and here an empty matrix is not "
          "the identity: give every head matrix)", ctx, f, want, f));
    if (e.rows >= 0 && e.rows != e.cols)
      throw std::invalid_argument(fmt::format(
          "{}: {} is empty (the identity, ({}, {})), must be {} ({} as the identity has {} rows, "
          "must be {} = {}{})", ctx, f, e.cols, e.cols, want, f, e.cols, e.symbol, e.rows,
          e.row_why));
    return e.cols;
  }
  if (m.size() == 0)  // (0, 3) or (20, 0) is a mistake, never the identity
    throw std::invalid_argument(
        shape.identity
            ? fmt::format("{}: {} has shape ({}, {}), must have >= 1 row and column (or be "
                          "empty (0, 0) for the identity)", ctx, f, m.rows(), m.cols())
            : fmt::format("{}: {} has shape ({}, {}), must be {} with >= 1 row and column", ctx,
                          f, m.rows(), m.cols(), want));
  if (m.cols() != e.cols)
    throw std::invalid_argument(fmt::format(
        "{}: {} has shape ({}, {}), must be {} ({} has {} columns, must be {}{})", ctx, f,
        m.rows(), m.cols(), want, f, m.cols(), e.cols, e.col_why));
  if (e.rows >= 0 && m.rows() != e.rows)
    throw std::invalid_argument(fmt::format(
        "{}: {} has shape ({}, {}), must be {} ({} has {} rows, must be {} = {}{})", ctx, f,
        m.rows(), m.cols(), want, f, m.rows(), e.symbol, e.rows, e.row_why));
  require_finite(ctx, f, m);
  return m.rows();
}

}  // namespace

HeadDims validate_head(const Head& head, const HeadShape& shape, std::string_view ctx,
                       std::string_view name) {
  const std::string shared =
      shape.dims_from.empty() ? std::string() : fmt::format(", as in {}", shape.dims_from);
  HeadDims dims;
  dims.dk = check_matrix(head.q, "q",
                         {shape.dk, "d_k", shared, shape.d_query, ", the queries' dimension"},
                         shape, ctx, name);
  const std::string k_why =
      shape.dk >= 0 ? shared
      : head.q.size() ? fmt::format(", the rows of {}.q", name)
                      : fmt::format(", the queries' dimension ({}.q is the identity)", name);
  check_matrix(head.k, "k", {dims.dk, "d_k", k_why, shape.d_key, ", the keys' dimension"}, shape,
               ctx, name);
  // Without w (the identity) the values' map is the head's output: its rows must be d_out.
  const bool v_is_out = shape.identity && head.w.size() == 0 && shape.d_out >= 0 && shape.dv < 0;
  const Expect ev =
      v_is_out ? Expect{shape.d_out, "d_out",
                        fmt::format(" while {}.w is empty (the identity)", name), shape.d_value,
                        ", the values' dimension"}
               : Expect{shape.dv, "d_v", shared, shape.d_value, ", the values' dimension"};
  dims.dv = check_matrix(head.v, "v", ev, shape, ctx, name);
  const std::string w_cols_why =
      head.v.size() ? fmt::format(", d_v: the rows of {}.v", name)
                    : fmt::format(", d_v: the values' dimension ({}.v is the identity)", name);
  dims.d_out = check_matrix(head.w, "w", {shape.d_out, "d_out", "", dims.dv, w_cols_why}, shape,
                            ctx, name);
  return dims;
}

}  // namespace attnflow
