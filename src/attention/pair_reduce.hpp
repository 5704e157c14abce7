// Private helpers of the two backward passes that run through attention heads (attention's
// attention_grad.cpp and the models' model_grad.cpp): one definition, so both sum over pairs
// with exactly the same calls.
#pragma once

#include "attnflow/kernel/kernel.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow::detail {

// sum_j exp(<u_i, v_j> + col_j) vals_j for every row i of u: the lse (n) and the softmax
// average (n, p); callers rescale by exp(lse + row offset).
struct Reduction {
  Vector lse;
  Matrix avg;
};
inline Reduction reduce(const Matrix& u, const Matrix& v, const Vector& col, const Matrix& vals) {
  Reduction r;
  lse_reduce(u, v, col, vals, r.lse, r.avg);
  return r;
}

// Row i of the (n, a*b) matrix of outer products x_i y_i^T, row-major (a, b) blocks.
inline Matrix outer_rows(const Matrix& x, const Matrix& y) {
  Matrix o(x.rows(), x.cols() * y.cols());
  for (Index i = 0; i < x.rows(); ++i)
    for (Index a = 0; a < x.cols(); ++a)
      for (Index b = 0; b < y.cols(); ++b) o(i, a * y.cols() + b) = x(i, a) * y(i, b);
  return o;
}

}  // namespace attnflow::detail
