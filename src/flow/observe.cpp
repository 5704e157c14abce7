// Observables (observe.hpp, docs/math.md section 5): the energy through the kernel, O(n d) moments,
// and one serial O(n^2 d) pair pass with union-find for the clusters.
#include "attnflow/flow/observe.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "attnflow/kernel/batch_kernel.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "attnflow/measure/measure.hpp"

namespace attnflow {

namespace {

constexpr const char* kObserveCtx = "observe";

// Union-find with path halving and union by size.
struct Dsu {
  std::vector<Index> parent, size;
  explicit Dsu(Index n) : parent(static_cast<size_t>(n)), size(static_cast<size_t>(n), 1) {
    std::iota(parent.begin(), parent.end(), Index{0});
  }
  Index find(Index a) {
    while (parent[a] != a) a = parent[a] = parent[parent[a]];
    return a;
  }
  void unite(Index a, Index b) {
    a = find(a);
    b = find(b);
    if (a == b) return;
    if (size[a] < size[b]) std::swap(a, b);
    parent[b] = a;
    size[a] += size[b];
  }
};

// Pair pass: min cosine, clusters, clustered pairs. x are the points observed (the directions
// on the sphere), xh the unit rows (zero rows stay 0).
void pair_pass(const Matrix& x, const Matrix& xh, const ObserveOptions& o, Observables& ob) {
  const Index n = x.rows();
  ob.pairs_computed = true;
  if (n == 1) {
    ob.min_cosine = 1.0;
    ob.clusters = 1;
    ob.cluster_sizes = {1};
    ob.clustered_pairs = 1.0;
    return;
  }
  Dsu dsu(n);
  double min_cos = std::numeric_limits<double>::infinity();
  long long linked = 0;
  for (Index i = 0; i < n; ++i) {
    for (Index j = i + 1; j < n; ++j) {
      min_cos = std::min(min_cos, xh.row(i).dot(xh.row(j)));
      const bool close = o.sphere ? x.row(i).dot(x.row(j)) > 1.0 - o.delta
                                  : (x.row(i) - x.row(j)).squaredNorm() < 2.0 * o.delta;
      if (close) {
        ++linked;
        dsu.unite(i, j);
      }
    }
  }
  std::vector<Index> sizes;
  for (Index i = 0; i < n; ++i)
    if (dsu.find(i) == i) sizes.push_back(dsu.size[i]);
  std::sort(sizes.begin(), sizes.end(), std::greater<Index>());
  ob.min_cosine = min_cos;
  ob.clusters = static_cast<Index>(sizes.size());
  ob.cluster_sizes = std::move(sizes);
  ob.clustered_pairs = static_cast<double>(linked) / (0.5 * static_cast<double>(n) * static_cast<double>(n - 1));
}

}  // namespace

void ObserveOptions::validate() const {
  require(beta > 0.0 && std::isfinite(beta), kObserveCtx, "beta", beta, "> 0");
  require(delta > 0.0 && delta < 2.0, kObserveCtx, "delta", delta, "in (0, 2)");
  require(pair_limit >= 0, kObserveCtx, "pair_limit", pair_limit, ">= 0");
}

double log_energy(const Matrix& x, const Vector& w, double beta) {
  require(beta > 0.0 && std::isfinite(beta), kObserveCtx, "beta", beta, "> 0");
  const Vector wn = normalized_weights(w, x.rows(), kObserveCtx);
  const Vector lw = log_weights(wn);
  // lse_i = log sum_j w_j exp(beta <x_i, x_j>), one symmetric kernel pass.
  Vector lse(x.rows());
  Matrix none;
  lse_reduce_symmetric({x.data(), lw.data(), nullptr, x.rows(), x.cols(), 0, beta},
                       ReduceOutput{lse.data(), nullptr});
  // log sum_i w_i exp(lse_i): the same kernel with k = 0 (scores are the offsets alone).
  const Vector col = lw + lse;
  Vector total;
  lse_reduce(Matrix(1, 0), Matrix(x.rows(), 0), col, Matrix(x.rows(), 0), total, none);
  const double le = total[0] - log_two_beta(beta);
  check_output_finite(kObserveCtx, "log_energy", &le, 1, 1,
                      fmt::format("beta = {:g} too large for double precision, or non-finite points", beta));
  return le;
}

Observables observe(const Matrix& x, const Vector& w, const ObserveOptions& o, double t) {
  o.validate();
  if (x.rows() == 0) throw_message(kObserveCtx, "empty configuration (n = 0), must have at least one point");
  require_finite(kObserveCtx, "points", x);
  const Vector wn = normalized_weights(w, x.rows(), kObserveCtx);
  Observables ob;
  ob.t = t;
  // Unit rows xh (for the cosines) and radii. On the sphere the observables see the directions
  // alone: p = x / |x|, except rows already unit to rounding (|r - 1| <= 1e-14, every row of a
  // flow without a radius), kept as they are so that their observables are bit for bit those
  // of the points the flow holds.
  Matrix xh = x;
  Vector radius(x.rows());
  for (Index i = 0; i < xh.rows(); ++i) {
    const double r = xh.row(i).norm();
    if (o.sphere && !(r > 0.0))
      throw_invalid(kObserveCtx, fmt::format("|x_{}|", i), r,
                    "> 0 on the sphere (directions x / |x| are observed; sphere = false for points in R^d)");
    radius[i] = r;
    if (r > 0.0) xh.row(i) /= r;
  }
  Matrix directions;
  if (o.sphere && ((radius.array() - 1.0).abs() > 1e-14).any()) {
    directions = x;
    for (Index i = 0; i < x.rows(); ++i)
      if (std::abs(radius[i] - 1.0) > 1e-14) directions.row(i) = xh.row(i);
  }
  const Matrix& p = directions.size() > 0 ? directions : x;
  ob.radius_mean = wn.dot(radius);
  ob.radius_min = radius.minCoeff();
  ob.radius_max = radius.maxCoeff();
  ob.log_energy = log_energy(p, wn, o.beta);
  ob.energy = std::exp(ob.log_energy);  // +inf past 1e308 by design: log_energy stays finite
  const double w2 = wn.squaredNorm();
  const double s2 = (wn.transpose() * xh).squaredNorm();
  ob.mean_cosine = 1.0 - w2 > 0.0 ? (s2 - w2) / (1.0 - w2) : 1.0;
  ob.order = (wn.transpose() * p).norm();
  if (o.pair_limit == 0 || x.rows() <= o.pair_limit) {
    pair_pass(p, xh, o, ob);
  } else {
    ob.pairs_computed = false;
    ob.min_cosine = 2.0;
    ob.clusters = -1;
    ob.clustered_pairs = -1.0;
  }
  // Never a silent non-finite observable (energy may overflow to +inf: log_energy is finite).
  const std::vector<std::string> names = observable_names();
  const std::vector<double> values = observable_values(ob);
  for (std::size_t k = 0; k < names.size(); ++k)
    if (!std::isfinite(values[k]) && names[k] != "energy")
      throw std::runtime_error(fmt::format("{}: {} = {} at t = {} is not finite (points of norm {:.3g} to {:.3g})",
                                           kObserveCtx, names[k], values[k], t, ob.radius_min, ob.radius_max));
  return ob;
}

std::vector<std::string> observable_names() {
  return {"log_energy", "energy",          "mean_cosine",     "min_cosine",
          "clusters",   "largest_cluster", "clustered_pairs", "order",
          "radius_mean", "radius_min",     "radius_max"};
}

std::array<double, kObservableCount> observable_array(const Observables& o) {
  const double largest = o.cluster_sizes.empty() ? -1.0 : static_cast<double>(o.cluster_sizes[0]);
  return {o.log_energy, o.energy, o.mean_cosine, o.min_cosine, static_cast<double>(o.clusters),
          largest, o.clustered_pairs, o.order, o.radius_mean, o.radius_min, o.radius_max};
}

std::vector<double> observable_values(const Observables& o) {
  const std::array<double, kObservableCount> a = observable_array(o);
  return {a.begin(), a.end()};
}

}  // namespace attnflow
