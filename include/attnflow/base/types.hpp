// Array types shared by every attnflow header.
// Point clouds are (n, d) row-major float64 so that a row is one point and NumPy's C order
// maps onto them without a copy; vectors are contiguous float64.
#pragma once

#include <Eigen/Core>
#include <cstdint>

namespace attnflow {

using Index = Eigen::Index;
using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::VectorXd;
using MatrixRef = Eigen::Ref<const Matrix>;
using VectorRef = Eigen::Ref<const Vector>;

}  // namespace attnflow
