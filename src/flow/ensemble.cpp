// Ensembles (ensemble.hpp): independent systems advanced together, one thread per system when
// the systems are small, and mean / quantiles of every observable across systems.
#include "attnflow/ensemble.hpp"

#include <algorithm>
#include <cmath>
#include <exception>

#include "attnflow/error.hpp"
#include "attnflow/parallel.hpp"

namespace attnflow {

namespace {

constexpr const char* kCtx = "ensemble";

// Runs body(s) for every system, in parallel across systems when `parallel`; the first
// exception (lowest system index) is rethrown after all systems finish. Each system's
// arithmetic is the same either way, so results do not depend on the thread count.
template <typename Body>
void for_systems(Index count, bool parallel, Body body) {
  std::vector<std::exception_ptr> errors(static_cast<size_t>(count));
  if (parallel) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads())
    for (Index s = 0; s < count; ++s) {
      try {
        body(s);
      } catch (...) {
        errors[static_cast<size_t>(s)] = std::current_exception();
      }
    }
  } else {
    for (Index s = 0; s < count; ++s) body(s);
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace

Ensemble::Ensemble(std::vector<FlowOptions> flows, const std::vector<Matrix>& initial_points,
                   IntegratorOptions integrator)
    : integrator_(integrator) {
  require(!flows.empty(), kCtx, "systems", flows.size(), ">= 1");
  require(flows.size() == initial_points.size(), kCtx, "systems", flows.size(),
          fmt::format("equal to the number of initial point sets ({})", initial_points.size()));
  integrator_.validate();
  flows_.reserve(flows.size());  // Flow::ode() refers to the Flow: never reallocate after this
  for (size_t s = 0; s < flows.size(); ++s) {
    const Matrix& p = initial_points[s];
    flows_.emplace_back(std::move(flows[s]), p.rows(), p.cols());
    states_.push_back(flows_.back().initial_state(p));
    flow_states_.push_back(flows_.back().initial_flow_state(0.0));
  }
}

void Ensemble::advance(double t_end) {
  Index largest = 0;
  for (const Flow& f : flows_) largest = std::max(largest, f.n());
  const bool parallel = num_threads() > 1 && size() >= num_threads() && largest <= parallel_n;
  for_systems(size(), parallel, [&](Index s) {
    flows_[s].advance(states_[s], flow_states_[s], t_end, integrator_);
  });
}

std::vector<Observables> Ensemble::observe(const ObserveOptions& options) const {
  options.validate();
  std::vector<Observables> out(static_cast<size_t>(size()));
  Index largest = 0;
  for (const Flow& f : flows_) largest = std::max(largest, f.n());
  const bool parallel = num_threads() > 1 && size() >= num_threads() && largest <= parallel_n;
  for_systems(size(), parallel, [&](Index s) {
    ObserveOptions o = options;
    const FlowOptions& fo = flows_[s].options();
    if (fo.beta > 0.0) o.beta = fo.beta;  // each system's energy at its own beta
    out[static_cast<size_t>(s)] =
        attnflow::observe(positions(s), fo.weights, o, flow_states_[s].integrator.t);
  });
  return out;
}

void Ensemble::set_state(Index s, Matrix state, const FlowState& st) {
  require(s >= 0 && s < size(), kCtx, "system", s, fmt::format("in [0, {})", size()));
  const Flow& f = flows_[s];
  if (state.rows() != f.n() || state.cols() != f.state_cols())
    throw std::invalid_argument(fmt::format("{}: state of system {} has shape ({}, {}), must be ({}, {})",
                                            kCtx, s, state.rows(), state.cols(), f.n(), f.state_cols()));
  require_finite(kCtx, "state", state);
  states_[s] = std::move(state);
  flow_states_[s] = st;
}

double quantile(std::vector<double> v, double p) {
  require(!v.empty(), kCtx, "values", "[]", "non-empty for a quantile");
  require(p >= 0.0 && p <= 1.0, kCtx, "quantile", p, "in [0, 1]");
  std::sort(v.begin(), v.end());
  const double h = static_cast<double>(v.size() - 1) * p;
  const size_t lo = static_cast<size_t>(std::floor(h));
  if (lo + 1 >= v.size()) return v.back();
  return v[lo] + (h - static_cast<double>(lo)) * (v[lo + 1] - v[lo]);
}

EnsembleStats summarize(const std::vector<Observables>& per_system, const std::vector<double>& probs) {
  for (double p : probs) require(p >= 0.0 && p <= 1.0, kCtx, "probs", p, "in [0, 1]");
  EnsembleStats st;
  st.probs = probs;
  const std::vector<std::string> names = observable_names();
  std::vector<std::vector<double>> values(names.size());
  for (const Observables& o : per_system) {
    const std::vector<double> v = observable_values(o);
    for (size_t k = 0; k < names.size(); ++k) {
      const bool pair_based = names[k] == "min_cosine" || names[k] == "clusters" ||
                              names[k] == "largest_cluster" || names[k] == "clustered_pairs";
      if ((pair_based && !o.pairs_computed) || !std::isfinite(v[k])) continue;
      values[k].push_back(v[k]);
    }
  }
  for (size_t k = 0; k < names.size(); ++k) {
    ObservableStats s;
    s.name = names[k];
    s.count = static_cast<Index>(values[k].size());
    if (s.count > 0) {
      double sum = 0.0;
      for (double x : values[k]) sum += x;  // fixed order: system index
      s.mean = sum / static_cast<double>(s.count);
      for (double p : probs) s.quantiles.push_back(quantile(values[k], p));
    }
    st.stats.push_back(std::move(s));
  }
  return st;
}

}  // namespace attnflow
