// Test-local particle dynamics for the theory tests: SA/USA tokens on the sphere under each
// normalization scheme of docs/math.md section 5, written directly from the table of
// docs/math.md section 5.4 through the kernel (independently of the reduced ODEs in src/theory that
// they check).
// State (n, d + 1): columns 0..d-1 hold the directions theta_i, column d the radii r_i.
#pragma once

#include <cmath>

#include "attnflow/theory/equiangular.hpp"
#include "attnflow/flow/integrate.hpp"
#include "attnflow/kernel/kernel.hpp"

namespace attnflow::test {

// A_i = sum_j P_ij theta_j (SA: softmax of beta <theta_i, theta_j>, uniform weights) or
// sum_j (1/n) e^{beta <theta_i, theta_j>} theta_j (USA). theta (n, d), a (n, d).
inline Matrix attention_average(const Matrix& theta, double beta, TheoryModel model) {
  const Index n = theta.rows();
  const Vector logw = Vector::Constant(n, -std::log(static_cast<double>(n)));
  Vector lse;
  Matrix out;
  lse_reduce(Matrix(beta * theta), theta, logw, theta, lse, out);
  if (model == TheoryModel::usa)
    for (Index i = 0; i < n; ++i) out.row(i) *= std::exp(lse[i]);
  return out;
}

// Velocity of (theta, r) under `o.scheme`; `pre_phase` selects pre-LN for mix-LN.
inline void scheme_field(const EquiangularOptions& o, bool pre_phase, double t, const Matrix& x,
                         Matrix& dx) {
  const Index d = x.cols() - 1;
  const Matrix theta = x.leftCols(d);
  const Matrix a = attention_average(theta, o.beta, o.model);
  for (Index i = 0; i < x.rows(); ++i) {
    const double r = x(i, d);
    const double ta = theta.row(i).dot(a.row(i)), na = a.row(i).norm();
    const Eigen::RowVectorXd tangent = a.row(i) - ta * theta.row(i);
    double factor = 1.0, dr = 0.0;
    switch (o.scheme) {
      case Scheme::post_ln: break;
      case Scheme::pre_ln: factor = r; dr = ta; break;
      case Scheme::mix_ln: if (pre_phase) { factor = r; dr = ta; } break;
      case Scheme::peri_ln: factor = r * na; dr = ta / na; break;
      case Scheme::ngpt: factor = na / o.alpha; break;
      case Scheme::sqrt_scaling: factor = std::sqrt(t + 1.0); break;
      case Scheme::none: break;  // EquiangularOptions refuses none
    }
    dx.row(i).head(d) = tangent / factor;
    dx(i, d) = dr;
  }
}

inline Ode scheme_ode(const EquiangularOptions& o, bool pre_phase) {
  return Ode{[o, pre_phase](double t, const Matrix& x, Matrix& dx) { scheme_field(o, pre_phase, t, x, dx); },
             [](Matrix& x) {
               const Index d = x.cols() - 1;
               for (Index i = 0; i < x.rows(); ++i) x.row(i).head(d).normalize();
             }};
}

// Pairwise cosines of the directions: returns (min, max) over i < j.
inline std::pair<double, double> cosine_range(const Matrix& x) {
  const Index d = x.cols() - 1;
  double lo = 2.0, hi = -2.0;
  for (Index i = 0; i < x.rows(); ++i)
    for (Index j = i + 1; j < x.rows(); ++j) {
      const double c = x.row(i).head(d).dot(x.row(j).head(d)) /
                       (x.row(i).head(d).norm() * x.row(j).head(d).norm());
      lo = std::min(lo, c);
      hi = std::max(hi, c);
    }
  return {lo, hi};
}

}  // namespace attnflow::test
