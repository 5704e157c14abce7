// Bindings of the theory companions (docs/math.md section 6): the equiangular reduction under every
// normalization scheme, the long-context one-layer map, cluster theory on the circle.
#include <fmt/format.h>

#include "attnflow/theory/cluster_theory.hpp"
#include "attnflow/theory/equiangular.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/theory/long_context.hpp"
#include "bind.hpp"

namespace attnflow::py_bind {

namespace {

void bind_equiangular(py::module_& m) {
  py::enum_<TheoryModel> tm(m, "TheoryModel", "sa | usa");
  tm.value("sa", TheoryModel::sa).value("usa", TheoryModel::usa);
  accept_names(tm, [](const std::string& s) { return parse_theory_model(s); });
  m.def("parse_theory_model", &parse_theory_model, py::arg("name"), py::arg("context") = "theory");
  // EquiangularOptions.scheme is the flows' Scheme (bound with the flows; one parser,
  // parse_scheme). The theory's name for it stays, with the theory's context.
  m.def(
      "parse_equiangular_scheme",
      [](const std::string& name, const std::string& context) { return parse_scheme(name, context); },
      py::arg("name"), py::arg("context") = "theory", "parse_scheme with the theory's context");
  py::class_<EquiangularOptions>(m, "EquiangularOptions")
      .def(py::init<>())
      .def_readwrite("model", &EquiangularOptions::model)
      .def_readwrite("scheme", &EquiangularOptions::scheme)
      .def_readwrite("n", &EquiangularOptions::n)
      .def_readwrite("beta", &EquiangularOptions::beta)
      .def_readwrite("rho0", &EquiangularOptions::rho0)
      .def_readwrite("r0", &EquiangularOptions::r0)
      .def_readwrite("tau", &EquiangularOptions::tau)
      .def_readwrite("alpha", &EquiangularOptions::alpha)
      .def_readwrite("rtol", &EquiangularOptions::rtol)
      .def_readwrite("atol", &EquiangularOptions::atol)
      .def("validate", &EquiangularOptions::validate);
  py::class_<EquiangularSolution>(m, "EquiangularSolution")
      .def_readonly("t", &EquiangularSolution::t)
      .def_readonly("rho", &EquiangularSolution::rho)
      .def_readonly("one_minus_rho", &EquiangularSolution::one_minus_rho)
      .def_readonly("r", &EquiangularSolution::r)
      .def_readonly("steps", &EquiangularSolution::steps)
      .def_readonly("rejected", &EquiangularSolution::rejected)
      .def_readonly("evaluations", &EquiangularSolution::evaluations);
  m.def("solve_equiangular", &solve_equiangular, py::arg("options"), py::arg("times"),
        release_gil(), "rho(t), 1 - rho(t), r(t) at the non-decreasing times (k)");
  py::class_<EquiangularRates>(m, "EquiangularRates")
      .def_readonly("du", &EquiangularRates::du)
      .def_readonly("dr", &EquiangularRates::dr);
  m.def("equiangular_rates", &equiangular_rates, py::arg("options"), py::arg("t"), py::arg("u"),
        py::arg("r"), "(du/dt, dr/dt) at (t, u = 1 - rho, r)");
  py::enum_<DecayKind> dk(m, "DecayKind", "exponential | power | stretched");
  dk.value("exponential", DecayKind::exponential)
      .value("power", DecayKind::power)
      .value("stretched", DecayKind::stretched);
  // No CLI option names it (it is a result, DecayLaw.kind); as an argument (decay_variable) it
  // takes its names like every other enum, with the library's message.
  accept_names(dk, [](const std::string& s) {
    for (const DecayKind k : {DecayKind::exponential, DecayKind::power, DecayKind::stretched})
      if (s == to_string(k)) return k;
    throw_invalid("theory", "kind", fmt::format("\"{}\"", s), "one of exponential, power, stretched");
  });
  py::class_<DecayLaw>(m, "DecayLaw")
      .def_readonly("kind", &DecayLaw::kind)
      .def_readonly("rate", &DecayLaw::rate)
      .def_readonly("formula", &DecayLaw::formula);
  m.def("linearized_law", &linearized_law, py::arg("options"));
  m.def("decay_variable", &decay_variable, py::arg("kind"), py::arg("t"), py::arg("r"));
}

void bind_long_context(py::module_& m) {
  m.def("long_context_gamma_c", &long_context_gamma_c, py::arg("rho"), "gamma_c = 1 / (1 - rho)");
  m.def("long_context_cosine", &long_context_cosine, py::arg("n"), py::arg("rho"), py::arg("gamma"),
        "finite-n output cosine of one layer at beta = gamma log n");
  m.def("long_context_limit", &long_context_limit, py::arg("rho"), py::arg("gamma"),
        "n -> inf limit: 1, 4 rho / (1 + 3 rho) or rho");
  m.def("long_context_regime", &long_context_regime, py::arg("rho"), py::arg("gamma"),
        "'collapse' | 'critical' | 'preserved'");
  m.def("long_context_direct", &long_context_direct, py::arg("n"), py::arg("rho"), py::arg("gamma"),
        release_gil(), "the same cosine computed through the kernel, O(n) memory");
  m.attr("kLongContextCriticalRtol") = kLongContextCriticalRtol;
  py::class_<LongContextResult>(m, "LongContextResult")
      .def_readonly("n", &LongContextResult::n)
      .def_readonly("rho", &LongContextResult::rho)
      .def_readonly("gamma", &LongContextResult::gamma)
      .def_readonly("beta", &LongContextResult::beta)
      .def_readonly("gamma_c", &LongContextResult::gamma_c)
      .def_readonly("cosine", &LongContextResult::cosine)
      .def_readonly("limit", &LongContextResult::limit)
      .def_readonly("regime", &LongContextResult::regime)
      .def_readonly("has_direct", &LongContextResult::has_direct)
      .def_readonly("cosine_direct", &LongContextResult::cosine_direct);
  m.def("long_context", &long_context, py::arg("n"), py::arg("rho"), py::arg("gamma"), py::kw_only(),
        py::arg("direct") = false,
        "`attnflow theory long-context`: the finite-n cosine, gamma_c, the limit and the regime; "
        "direct=True also computes the layer through the kernel (cosine_direct)");
}

void bind_clusters(py::module_& m) {
  m.def("bessel_ratio", &bessel_ratio, py::arg("k"), py::arg("beta"), "I_k(beta) / I_0(beta)");
  m.def("mode_growth_rate", &mode_growth_rate, py::arg("model"), py::arg("k"), py::arg("beta"),
        "growth rate of Fourier mode k around the uniform measure on the circle");
  py::class_<ClusterPrediction>(m, "ClusterPrediction")
      .def_readonly("beta", &ClusterPrediction::beta)
      .def_readonly("predicted_clusters", &ClusterPrediction::predicted_clusters)
      .def_readonly("rates", &ClusterPrediction::rates);
  m.def("predict_clusters", &predict_clusters, py::arg("beta"), py::arg("k_max") = 0);
  py::enum_<ClusterLayout> cl(m, "ClusterLayout", "circle | simplex");
  cl.value("circle", ClusterLayout::circle).value("simplex", ClusterLayout::simplex);
  accept_names(cl, [](const std::string& s) { return parse_cluster_layout(s); });
  m.def("parse_cluster_layout", &parse_cluster_layout, py::arg("name"),
        py::arg("context") = "theory");
  m.def("cluster_configuration", &cluster_configuration, py::arg("k"), py::arg("d"),
        py::arg("layout"), "k equal-weight clusters as a Measure");
  m.def("log_interaction_energy", &log_interaction_energy, py::arg("mu"), py::arg("beta"),
        release_gil());
  m.def("interaction_energy", &interaction_energy, py::arg("mu"), py::arg("beta"), release_gil());
}

const Registrar bind_theory_registrar(30, [](py::module_& m) {
  bind_equiangular(m);
  bind_long_context(m);
  bind_clusters(m);
});

}  // namespace

}  // namespace attnflow::py_bind
