// Dense double-precision references for the OT tests (never used by the library): log-domain
// Sinkhorn on a materialized cost matrix with plain std::exp (no eps-scaling, no kernel), the
// brute-force assignment for tiny uniform problems, and 1-D Wasserstein closed forms.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "attnflow/base/types.hpp"

namespace attnflow::test {

// log sum_j exp(x_j), max-shifted, x_j = -inf allowed.
inline double dense_lse(const std::vector<double>& x) {
  const double mx = *std::max_element(x.begin(), x.end());
  double s = 0.0;
  for (double v : x) s += std::exp(v - mx);
  return mx + std::log(s);
}

// Plan of min <C, pi> + eps KL(pi | a b^T), iterated until the row violation is below tol.
inline Matrix dense_sinkhorn_plan(const Matrix& c, const Vector& a, const Vector& b, double eps,
                                  double tol, int max_iter = 200000) {
  const Index n = c.rows(), m = c.cols();
  Vector f = Vector::Zero(n), g = Vector::Zero(m);
  std::vector<double> row(m), col(n);
  auto plan = [&] {
    Matrix pi(n, m);
    for (Index i = 0; i < n; ++i)
      for (Index j = 0; j < m; ++j) pi(i, j) = a[i] * b[j] * std::exp((f[i] + g[j] - c(i, j)) / eps);
    return pi;
  };
  for (int it = 0; it < max_iter; ++it) {
    for (Index i = 0; i < n; ++i) {
      for (Index j = 0; j < m; ++j) row[j] = std::log(b[j]) + (g[j] - c(i, j)) / eps;
      f[i] = -eps * dense_lse(row);
    }
    for (Index j = 0; j < m; ++j) {
      for (Index i = 0; i < n; ++i) col[i] = std::log(a[i]) + (f[i] - c(i, j)) / eps;
      g[j] = -eps * dense_lse(col);
    }
    if ((plan().rowwise().sum() - a).cwiseAbs().sum() <= tol) break;
  }
  return plan();
}

inline Matrix dense_sqeuclidean(const Matrix& x, const Matrix& y) {
  Matrix c(x.rows(), y.rows());
  for (Index i = 0; i < x.rows(); ++i)
    for (Index j = 0; j < y.rows(); ++j) c(i, j) = (x.row(i) - y.row(j)).squaredNorm();
  return c;
}

// min over permutations s of (1/n) sum_i C_{i, s(i)}: exact OT for uniform weights and
// n = m (Birkhoff: a permutation matrix is optimal). n <= 8.
inline double brute_force_assignment(const Matrix& c) {
  std::vector<int> s(c.rows());
  std::iota(s.begin(), s.end(), 0);
  double best = INFINITY;
  do {
    double t = 0.0;
    for (Index i = 0; i < c.rows(); ++i) t += c(i, s[i]);
    best = std::min(best, t / static_cast<double>(c.rows()));
  } while (std::next_permutation(s.begin(), s.end()));
  return best;
}

// 1-D W_p^p between weighted measures through the quantile functions:
// int_0^1 |F^-1(u) - G^-1(u)|^p du, evaluated exactly on the merged breakpoints.
inline double wasserstein_1d_pow(const Vector& x, const Vector& a, const Vector& y, const Vector& b,
                                 int p) {
  auto sorted = [](const Vector& pts, const Vector& w) {
    std::vector<std::pair<double, double>> v;
    for (Index i = 0; i < pts.size(); ++i) v.push_back({pts[i], w[i] / w.sum()});
    std::sort(v.begin(), v.end());
    return v;
  };
  const auto xs = sorted(x, a), ys = sorted(y, b);
  size_t i = 0, j = 0;
  double ca = xs[0].second, cb = ys[0].second, u = 0.0, total = 0.0;
  while (i < xs.size() && j < ys.size()) {
    const double next = std::min(ca, cb);
    total += (next - u) * std::pow(std::abs(xs[i].first - ys[j].first), p);
    u = next;
    if (ca <= next) {
      if (++i < xs.size()) ca += xs[i].second;
    }
    if (cb <= next) {
      if (++j < ys.size()) cb += ys[j].second;
    }
  }
  return total;
}

}  // namespace attnflow::test
