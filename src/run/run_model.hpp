// Private to src/run: the bridge from a RunConfig to the flow library (fields, schemes,
// noise, observables). Everything numeric lives in src/flow; this file only maps names.
#pragma once

#include <string>
#include <vector>

#include "attnflow/integrate.hpp"
#include "attnflow/rng.hpp"
#include "attnflow/run_config.hpp"

namespace attnflow::detail {

// The dynamics of one system: an ODE (field + retraction) and optional noise.
struct SystemModel {
  Ode ode;
  double kappa = 0.0;  // > 0: Euler-Maruyama with noise sqrt(2 / kappa) dW
  bool sphere = true;
};

// Throws std::invalid_argument naming the config key for unsupported combinations.
SystemModel make_system_model(const RunConfig& cfg);

// Advances one system from state.t to t_end; with noise, uses `rng` (its own stream).
void advance_system(const SystemModel& model, Matrix& x, IntegratorState& state, double t_end,
                    const IntegratorOptions& options, Rng& rng);

// Observable names (observables.csv columns after t, system) and their values for one system.
std::vector<std::string> observable_names();
std::vector<double> observe_system(const Matrix& x, const RunConfig& cfg);

}  // namespace attnflow::detail
