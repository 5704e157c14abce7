// JSON forms of the library's reports (see include/attnflow/run/reports.hpp).
#include "attnflow/run/reports.hpp"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "attnflow/run/job.hpp"

namespace attnflow {

nlohmann::json ot_report_json(const OtReport& r, std::string_view version) {
  nlohmann::json j;
  if (r.method == "exact") {
    j = {{"method", "exact"}, {"cost", r.cost}, {"objective", r.objective},
         {"iterations", 0}, {"marginal_error", r.marginal_error}, {"converged", r.converged},
         {"eps", 0.0}, {"message", r.message}, {fmt::format("w{}", r.p), r.wasserstein}};
  } else {
    j = {{"method", "sinkhorn"}, {"cost", r.cost}, {"objective", r.objective},
         {"iterations", r.iterations}, {"stages", r.stages},
         {"marginal_error", r.marginal_error}, {"converged", r.converged}, {"eps", r.eps},
         {"tol", r.tol}, {"eps_scaling", r.eps_scaling}, {"overrelax", r.overrelax},
         {"max_cost_bound", r.max_cost_bound}, {"message", r.message}};
  }
  // Not converging is reported in "converged"; the job itself finished.
  j.update(summary_header("ot", version, "finished"));
  j["cost_type"] = r.cost_type;
  j["n"] = r.n;
  j["m"] = r.m;
  j["dim"] = r.dim;
  j["seconds"] = r.seconds;
  j["plan"] = r.has_plan;
  j["points_split"] = r.points_split;
  return j;
}

nlohmann::json clusters_report_json(const ClustersReport& r, std::string_view version) {
  nlohmann::json modes = nlohmann::json::array();
  for (const ClusterMode& c : r.modes) {
    nlohmann::json m = {{"k", c.k},
                        {"growth_rate_sa", c.growth_rate_sa},
                        {"log_energy_k_clusters", c.log_energy_k_clusters}};
    if (c.has_growth_rate_usa) m["growth_rate_usa"] = c.growth_rate_usa;
    modes.push_back(m);
  }
  nlohmann::json j = summary_header("theory-clusters", version, r.status);
  j.update({{"d", r.d},
            {"beta", r.beta},
            {"predicted_clusters", r.predicted_clusters},
            {"sqrt_2beta", r.sqrt_2beta},
            {"modes", modes}});
  return j;
}

nlohmann::json long_context_report_json(const LongContextResult& r, std::string_view version) {
  nlohmann::json j = summary_header("theory-long-context", version, "finished");
  j.update({{"n", r.n},         {"rho", r.rho},         {"gamma", r.gamma},   {"beta", r.beta},
            {"gamma_c", r.gamma_c}, {"cosine", r.cosine}, {"limit", r.limit}, {"regime", r.regime}});
  if (r.has_direct) j["cosine_direct"] = r.cosine_direct;
  return j;
}

}  // namespace attnflow
