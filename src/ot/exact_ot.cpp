// Exact OT by LEMON's network simplex on the complete bipartite graph (docs/math.md section 3).
#include "attnflow/ot/exact_ot.hpp"

#include <lemon/network_simplex.h>
#include <lemon/smart_graph.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>

#include "attnflow/base/error.hpp"

namespace attnflow {

namespace {
constexpr const char* kExactOtCtx = "exact_ot";
constexpr double kMassUnits = 1099511627776.0;  // 2^40: integer flow units per unit mass
// LEMON requires integral costs (with doubles its simplex can cycle on degenerate problems,
// e.g. 1-D costs with ties): costs are rounded to multiples of max|C| / 2^40. Potentials stay
// below (n + m) 2^40 < 2^63; no flow * cost product is formed in integers.
constexpr double kCostUnits = 1099511627776.0;

// w * 2^40 rounded to integers that sum to exactly 2^40 (largest remainders get the rest), so
// supplies and demands balance exactly as the network simplex requires.
std::vector<std::int64_t> integer_masses(const Vector& w) {
  const Index n = w.size();
  std::vector<std::int64_t> q(n);
  std::vector<double> rem(n);
  std::int64_t total = 0;
  for (Index i = 0; i < n; ++i) {
    const double x = w[i] * kMassUnits;
    q[i] = static_cast<std::int64_t>(std::floor(x));
    rem[i] = x - std::floor(x);
    total += q[i];
  }
  std::vector<Index> order(n);
  std::iota(order.begin(), order.end(), Index{0});
  std::stable_sort(order.begin(), order.end(), [&](Index x, Index y) { return rem[x] > rem[y]; });
  std::int64_t missing = static_cast<std::int64_t>(kMassUnits) - total;
  for (Index k = 0; missing > 0; k = (k + 1) % n, --missing) ++q[order[k]];
  for (Index k = 0; missing < 0; k = (k + 1) % n) {
    if (q[order[n - 1 - k]] > 0) {
      --q[order[n - 1 - k]];
      ++missing;
    }
  }
  return q;
}
}  // namespace

namespace {
// Plan (nonzero flows, arc id = i * m + j), cost, marginal error and duals of an optimal simplex.
template <typename Simplex, typename Graph>
void read_solution(const Simplex& simplex, const Graph& graph, const Vector& a, const Vector& b,
                   const Matrix& cost, double quantum, ExactOtResult& res) {
  const Index n = cost.rows(), m = cost.cols();
  Vector row = Vector::Zero(n), col = Vector::Zero(m);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < m; ++j) {
      const std::int64_t flow = simplex.flow(graph.arcFromId(static_cast<int>(i * m + j)));
      if (flow == 0) continue;
      const double mass = static_cast<double>(flow) / kMassUnits;
      res.plan.push_back({i, j, mass});
      res.cost += mass * cost(i, j);
      row[i] += mass;
      col[j] += mass;
    }
  res.marginal_error = (row - a).cwiseAbs().sum() + (col - b).cwiseAbs().sum();
  // LEMON's reduced cost is C_ij + pi_i - pi_j >= 0, so f = -pi (sources), g = pi (sinks).
  res.f.resize(n);
  res.g.resize(m);
  // Potentials are in cost quanta; scaled back they are feasible up to one quantum.
  for (Index i = 0; i < n; ++i)
    res.f[i] = -quantum * static_cast<double>(simplex.potential(graph.nodeFromId(static_cast<int>(i))));
  for (Index j = 0; j < m; ++j)
    res.g[j] = quantum * static_cast<double>(simplex.potential(graph.nodeFromId(static_cast<int>(n + j))));
  res.cost_quantum = quantum;
}
}  // namespace

Matrix ExactOtResult::dense_plan() const {
  Matrix pi = Matrix::Zero(n, m);
  for (const PlanEntry& e : plan) pi(e.i, e.j) += e.mass;
  return pi;
}

ExactOtResult exact_ot(const Vector& a_in, const Vector& b_in, const Matrix& cost) {
  const Index n = cost.rows(), m = cost.cols();
  if (n == 0 || m == 0)
    throw_message(kExactOtCtx, fmt::format("cost matrix is {} x {}, must be non-empty", n, m));
  if (static_cast<double>(n) * static_cast<double>(m) > static_cast<double>(kExactMaxPairs))
    throw std::invalid_argument(fmt::format(
        "{}: n * m = {} * {} = {}, must be <= {} (network simplex on the dense bipartite graph; "
        "use sinkhorn for larger problems)", kExactOtCtx, n, m, static_cast<double>(n) * m, kExactMaxPairs));
  const Vector a = normalized_weights(a_in, n, "exact_ot: a");
  const Vector b = normalized_weights(b_in, m, "exact_ot: b");
  require_finite(kExactOtCtx, "cost", cost);

  using Graph = lemon::SmartDigraph;
  Graph graph;
  graph.reserveNode(static_cast<int>(n + m));
  graph.reserveArc(static_cast<int>(n * m));
  for (Index k = 0; k < n + m; ++k) graph.addNode();
  Graph::ArcMap<std::int64_t> arc_cost(graph);
  const double cmax = cost.cwiseAbs().maxCoeff();
  const double quantum = cmax > 0.0 ? cmax / kCostUnits : 1.0;
  Graph::NodeMap<std::int64_t> supply(graph);
  const std::vector<std::int64_t> qa = integer_masses(a), qb = integer_masses(b);
  for (Index i = 0; i < n; ++i) supply[graph.nodeFromId(static_cast<int>(i))] = qa[i];
  for (Index j = 0; j < m; ++j) supply[graph.nodeFromId(static_cast<int>(n + j))] = -qb[j];
  // Arcs are added row-major, so arc id = i * m + j.
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < m; ++j)
      arc_cost[graph.addArc(graph.nodeFromId(static_cast<int>(i)),
                            graph.nodeFromId(static_cast<int>(n + j)))] =
          std::llround(cost(i, j) / quantum);

  lemon::NetworkSimplex<Graph, std::int64_t, std::int64_t> simplex(graph);
  simplex.costMap(arc_cost).supplyMap(supply);
  const auto status = simplex.run();
  ExactOtResult res;
  res.n = n;
  res.m = m;
  if (status != lemon::NetworkSimplex<Graph, std::int64_t, std::int64_t>::OPTIMAL) {
    res.message = fmt::format("{}: network simplex returned status {} (1 = infeasible, 2 = "
                              "unbounded)", kExactOtCtx, static_cast<int>(status));
    return res;
  }
  res.converged = true;
  read_solution(simplex, graph, a, b, cost, quantum, res);
  return res;
}


double wasserstein(const Measure& mu, const Measure& nu, int p, ExactOtResult* result) {
  require(p == 1 || p == 2, kExactOtCtx, "p", p, "1 or 2");
  if (mu.dim() != nu.dim())
    throw std::invalid_argument(fmt::format("{}: mu has dimension {} and nu has dimension {}, "
                                            "must be equal", kExactOtCtx, mu.dim(), nu.dim()));
  const Index n = mu.size(), m = nu.size();
  if (static_cast<double>(n) * static_cast<double>(m) > static_cast<double>(kExactMaxPairs))
    throw std::invalid_argument(fmt::format(
        "{}: n * m = {} * {} = {}, must be <= {} (network simplex on the dense bipartite graph; "
        "use sinkhorn for larger problems)", kExactOtCtx, n, m, static_cast<double>(n) * m, kExactMaxPairs));
  Matrix c(n, m);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < m; ++j) {
      const double d2 = (mu.points().row(i) - nu.points().row(j)).squaredNorm();
      c(i, j) = p == 2 ? d2 : std::sqrt(d2);
    }
  ExactOtResult r = exact_ot(mu.weights(), nu.weights(), c);
  const double value = p == 2 ? std::sqrt(std::max(r.cost, 0.0)) : r.cost;
  if (result) *result = std::move(r);
  return value;
}

}  // namespace attnflow
