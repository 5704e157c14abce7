// Bindings of the library's reports: the same objects the CLI formats (`attnflow ot`'s
// report.json, `attnflow theory clusters`' and `long-context`'s JSON), with to_json() giving the CLI's keys
// (run/reports.hpp).
#include <nlohmann/json.hpp>

#include "attnflow/theory/cluster_theory.hpp"
#include "attnflow/theory/long_context.hpp"
#include "attnflow/ot/ot_report.hpp"
#include "attnflow/run/reports.hpp"
#include "bind.hpp"


namespace attnflow::py_bind {

namespace {

void bind_ot_report(py::module_& m) {
  py::class_<OtReport>(m, "OtReport", "what `attnflow ot` computes and writes (report.json, f, g, plan)")
      .def_readonly("method", &OtReport::method)
      .def_readonly("cost_type", &OtReport::cost_type)
      .def_readonly("cost", &OtReport::cost)
      .def_readonly("objective", &OtReport::objective)
      .def_readonly("iterations", &OtReport::iterations)
      .def_readonly("stages", &OtReport::stages)
      .def_readonly("marginal_error", &OtReport::marginal_error)
      .def_readonly("converged", &OtReport::converged)
      .def_readonly("eps", &OtReport::eps)
      .def_readonly("tol", &OtReport::tol)
      .def_readonly("eps_scaling", &OtReport::eps_scaling)
      .def_readonly("overrelax", &OtReport::overrelax)
      .def_readonly("max_cost_bound", &OtReport::max_cost_bound)
      .def_readonly("p", &OtReport::p)
      .def_readonly("wasserstein", &OtReport::wasserstein)
      .def_readonly("message", &OtReport::message)
      .def_readonly("n", &OtReport::n)
      .def_readonly("m", &OtReport::m)
      .def_readonly("dim", &OtReport::dim)
      .def_readonly("seconds", &OtReport::seconds)
      .def_readonly("has_plan", &OtReport::has_plan)
      .def_readonly("f", &OtReport::f)
      .def_readonly("g", &OtReport::g)
      .def_readonly("plan", &OtReport::plan)
      .def(
          "to_json", [](const OtReport& r) { return ot_report_json(r, ATTNFLOW_VERSION).dump(2); },
          "report.json's text (the keys `attnflow ot` writes)");
  const OtRequest d;  // defaults from the library, never restated here
  m.def(
      "solve_ot",
      [](const Measure& mu, const Measure& nu, double eps, bool exact, const std::string& cost,
         bool plan, double tol, int max_iterations, bool eps_scaling, double scaling,
         double overrelax) {
        OtRequest r;
        r.sinkhorn.eps = eps;
        r.exact = exact;
        r.cost = cost;
        r.plan = plan;
        r.sinkhorn.tol = tol;
        r.sinkhorn.max_iterations = max_iterations;
        r.sinkhorn.eps_scaling = eps_scaling;
        r.sinkhorn.scaling = scaling;
        r.sinkhorn.overrelax = overrelax;
        py::gil_scoped_release release;
        return solve_ot(mu, nu, r);
      },
      py::arg("mu"), py::arg("nu"), py::kw_only(), py::arg("eps") = d.sinkhorn.eps,
      py::arg("exact") = d.exact, py::arg("cost") = d.cost, py::arg("plan") = d.plan,
      py::arg("tol") = d.sinkhorn.tol, py::arg("max_iterations") = d.sinkhorn.max_iterations,
      py::arg("eps_scaling") = d.sinkhorn.eps_scaling, py::arg("scaling") = d.sinkhorn.scaling,
      py::arg("overrelax") = d.sinkhorn.overrelax,
      "`attnflow ot` as a function: entropic (eps > 0) or exact (exact=True) OT with its report");
}

void bind_clusters_report(py::module_& m) {
  m.attr("kUsaBetaMax") = kUsaBetaMax;
  py::class_<ClusterMode>(m, "ClusterMode")
      .def_readonly("k", &ClusterMode::k)
      .def_readonly("growth_rate_sa", &ClusterMode::growth_rate_sa)
      .def_readonly("log_energy_k_clusters", &ClusterMode::log_energy_k_clusters)
      .def_readonly("has_growth_rate_usa", &ClusterMode::has_growth_rate_usa)
      .def_readonly("growth_rate_usa", &ClusterMode::growth_rate_usa);
  py::class_<ClustersReport>(m, "ClustersReport", "what `attnflow theory clusters` prints")
      .def_readonly("status", &ClustersReport::status)
      .def_readonly("d", &ClustersReport::d)
      .def_readonly("beta", &ClustersReport::beta)
      .def_readonly("predicted_clusters", &ClustersReport::predicted_clusters)
      .def_readonly("sqrt_2beta", &ClustersReport::sqrt_2beta)
      .def_readonly("modes", &ClustersReport::modes)
      .def(
          "to_json",
          [](const ClustersReport& r) { return clusters_report_json(r, ATTNFLOW_VERSION).dump(2); },
          "the JSON text `attnflow theory clusters` prints");
  m.def("clusters_report", &clusters_report, py::arg("beta"), py::arg("k_max") = 0, release_gil(),
        "cluster prediction on the circle with per-mode growth rates and energies");
}

// LongContextResult is bound with the theory (bind_theory.cpp, registered earlier); its JSON
// lives in run/, so its to_json is attached here.
void bind_long_context_report(py::module_& m) {
  py::object cls = m.attr("LongContextResult");
  cls.attr("to_json") = py::cpp_function(
      [](const LongContextResult& r) { return long_context_report_json(r, ATTNFLOW_VERSION).dump(2); },
      py::name("to_json"), py::is_method(cls), "the JSON text `attnflow theory long-context` prints");
}

const Registrar bind_run_reports_registrar(91, [](py::module_& m) {
  bind_ot_report(m);
  bind_clusters_report(m);
  bind_long_context_report(m);
});

}  // namespace

}  // namespace attnflow::py_bind
