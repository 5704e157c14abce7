#include "attnflow/measure/sample.hpp"

#include <cmath>

#include "attnflow/base/error.hpp"

namespace attnflow {

Matrix sample_gaussian(Index n, Index d, Rng& rng, double sigma) {
  require(n >= 1, "sample_gaussian", "n", n, ">= 1");
  require(d >= 1, "sample_gaussian", "d", d, ">= 1");
  require(sigma > 0.0 && std::isfinite(sigma), "sample_gaussian", "sigma", sigma, "> 0");
  Matrix x(n, d);
  rng.fill_normal(x);
  return x * sigma;
}

Matrix sample_sphere(Index n, Index d, Rng& rng) {
  require(n >= 1, "sample_sphere", "n", n, ">= 1");
  require(d >= 1, "sample_sphere", "d", d, ">= 1");
  Matrix x(n, d);
  for (Index i = 0; i < n; ++i) {
    double norm = 0.0;
    do {  // a zero Gaussian vector has probability 0, but never divide by it
      for (Index k = 0; k < d; ++k) x(i, k) = rng.normal();
      norm = x.row(i).norm();
    } while (norm == 0.0);
    x.row(i) /= norm;
  }
  return x;
}

Matrix equiangular(Index n, Index d, double rho0) {
  require(n >= 1, "equiangular", "n", n, ">= 1");
  require(d >= n + 1, "equiangular", "d", d, fmt::format(">= n + 1 = {}", n + 1));
  require(rho0 >= 0.0 && rho0 < 1.0, "equiangular", "rho0", rho0, "in [0, 1)");
  Matrix x = Matrix::Zero(n, d);
  const double a = std::sqrt(1.0 - rho0), b = std::sqrt(rho0);
  for (Index i = 0; i < n; ++i) {
    x(i, i) = a;
    x(i, n) = b;
  }
  return x;
}

}  // namespace attnflow
