// Infinite-prompt in-context regression (docs/math.md section 7): the closed-form risk, its
// gradient flow as an Ode for the shared integrators, and the balanced fixed point.
// With Gaussian tokens the softmax prediction tends to b w^T S A x_q, so
// R(A, b) = (tau^2 / 2) tr(M S M^T) with M = b S A - I, where tau^2 I = E[w w^T].
#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <cmath>

#include "attnflow/base/error.hpp"
#include "attnflow/icl/icl.hpp"

namespace attnflow {

double icl_infinite_risk(const IclData& data, const IclParams& params) {
  const Matrix& s = data.cov;
  const Matrix m = params.b * s * params.a - Matrix::Identity(s.rows(), s.cols());
  const double tau2 = data.task_scale * data.task_scale;
  return 0.5 * tau2 * (m * s * m.transpose()).trace();
}

void icl_infinite_flow(const IclData& data, const IclParams& params, Matrix& da, double& db) {
  const Matrix& s = data.cov;
  const Matrix& a = params.a;
  const double b = params.b;
  const double tau2 = data.task_scale * data.task_scale;
  const Matrix s2 = s * s;
  const Matrix s2as = s2 * a * s;
  da = tau2 * (b * s2 - b * b * s2as);
  // tr(A^T S^2) = <A, S^2>_F and tr(A^T S^2 A S) = <A, S^2 A S>_F.
  db = tau2 * ((a.array() * s2.array()).sum() - b * (a.array() * s2as.array()).sum());
}

IclParams icl_fixed_point(const Matrix& cov) {
  Eigen::LLT<Matrix> llt(cov);
  require(llt.info() == Eigen::Success, "icl", "covariance", "(not positive definite)",
          "positive definite");
  const Matrix inv = llt.solve(Matrix::Identity(cov.rows(), cov.cols()));
  const double b = std::pow((inv * inv).trace(), 0.25);
  return {inv / b, b};
}

Matrix icl_pack(const IclParams& p) {
  const Index dd = p.a.size();
  Matrix state(1, dd + 1);
  // Matrix is row-major, so a.data() is A row by row.
  state.row(0).head(dd) = Eigen::Map<const Eigen::RowVectorXd>(p.a.data(), dd);
  state(0, dd) = p.b;
  return state;
}

IclParams icl_unpack(const Matrix& state, Index d) {
  require(state.rows() == 1 && state.cols() == d * d + 1, "icl", "state columns", state.cols(),
          fmt::format("d * d + 1 = {}", d * d + 1));
  IclParams p;
  p.a = Eigen::Map<const Matrix>(state.data(), d, d);
  p.b = state(0, d * d);
  return p;
}

Ode icl_flow_ode(const IclData& data) {
  data.validate();
  Ode ode;
  ode.field = [data](double, const Matrix& x, Matrix& dxdt) {
    const Index d = data.dim();
    Matrix da;
    double db = 0.0;
    icl_infinite_flow(data, icl_unpack(x, d), da, db);
    dxdt = icl_pack({da, db});
  };
  return ode;
}

}  // namespace attnflow
