// Bindings of the large-prompt concentration study (docs/math.md section 7): errors of the
// empirical operator against the infinite-prompt one as the prompt length L grows, and
// log-log slope fits.
#include "attnflow/icl/concentration.hpp"
#include "bind.hpp"

namespace attnflow::py_bind {

namespace {

const Registrar bind_icl_concentration_registrar(45, [](py::module_& m) {
  py::enum_<TokenLaw> tl(m, "TokenLaw", "gaussian | rademacher");
  tl.value("gaussian", TokenLaw::gaussian).value("rademacher", TokenLaw::rademacher);
  accept_names(tl, [](const std::string& s) { return parse_token_law(s); });
  m.def("parse_token_law", &parse_token_law, py::arg("name"), py::arg("context") = "concentration");
  py::class_<ConcentrationOptions>(m, "ConcentrationOptions")
      .def(py::init<>())
      .def_readwrite("law", &ConcentrationOptions::law)
      .def_readwrite("dim", &ConcentrationOptions::dim)
      .def_readwrite("scale", &ConcentrationOptions::scale)
      .def_readwrite("u_scale", &ConcentrationOptions::u_scale)
      .def_readwrite("lengths", &ConcentrationOptions::lengths)
      .def_readwrite("prompts", &ConcentrationOptions::prompts)
      .def_readwrite("queries", &ConcentrationOptions::queries)
      .def_readwrite("seed", &ConcentrationOptions::seed)
      .def("validate", &ConcentrationOptions::validate);
  py::class_<ConcentrationRow>(m, "ConcentrationRow")
      .def_readonly("length", &ConcentrationRow::length)
      .def_readonly("output_error", &ConcentrationRow::output_error)
      .def_readonly("grad_u_error", &ConcentrationRow::grad_u_error)
      .def_readonly("grad_v_error", &ConcentrationRow::grad_v_error)
      .def_readonly("output_se", &ConcentrationRow::output_se)
      .def_readonly("grad_u_se", &ConcentrationRow::grad_u_se)
      .def_readonly("grad_v_se", &ConcentrationRow::grad_v_se);
  py::class_<SlopeFit>(m, "SlopeFit")
      .def_readonly("slope", &SlopeFit::slope)
      .def_readonly("intercept", &SlopeFit::intercept)
      .def_readonly("standard_error", &SlopeFit::standard_error)
      .def_readonly("lower", &SlopeFit::lower)
      .def_readonly("upper", &SlopeFit::upper)
      .def_readonly("points", &SlopeFit::points);
  m.def("fit_loglog", &fit_loglog, py::arg("x"), py::arg("y"),
        "least squares log y = intercept + slope log x, with a 95% band on the slope");
  py::class_<ConcentrationResult>(m, "ConcentrationResult")
      .def_readonly("rows", &ConcentrationResult::rows)
      .def_readonly("output", &ConcentrationResult::output)
      .def_readonly("grad_u", &ConcentrationResult::grad_u)
      .def_readonly("grad_v", &ConcentrationResult::grad_v);
  m.def(
      "concentration",
      [](const ConcentrationOptions& o, const py::object& progress) {
        ConcentrationProgress cb;
        if (!progress.is_none()) {
          cb = [f = share_callable(py::reinterpret_borrow<py::function>(progress))](
                   const ConcentrationRow& r, Index done, Index total) {
            py::gil_scoped_acquire gil;
            (*f)(r, done, total);
          };
        }
        py::gil_scoped_release release;
        return concentration(o, cb);
      },
      py::arg("options"), py::arg("progress") = py::none(),
      "E |T[mu_L](z) - T[mu](z)|^2 (and gradients) for each L; progress(row, done, total)");
});

}  // namespace

}  // namespace attnflow::py_bind
