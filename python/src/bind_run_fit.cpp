// Bindings of the `attnflow fit` orchestration: FitConfig from TOML, run_fit (writes
// DIR/{config.toml, loss.csv, model.afm, summary.json}) and model files on disk.
#include "attnflow/run/fit_run.hpp"
#include "bind.hpp"

namespace attnflow::py_bind {

namespace {

const Registrar bind_run_fit_registrar(95, [](py::module_& m) {
  py::class_<FitConfig>(m, "FitConfig")
      .def(py::init<>())
      .def_readwrite("task", &FitConfig::task)
      .def_readwrite("model", &FitConfig::model)
      .def_readwrite("model_seed", &FitConfig::model_seed)
      .def_readwrite("fit", &FitConfig::fit);
  m.def("parse_fit_config", &parse_fit_config, py::arg("config"));
  m.def("default_fit_config_toml", &default_fit_config_toml);
  py::class_<FitRunResult>(m, "FitRunResult")
      .def_readonly("fit", &FitRunResult::fit)
      .def_readonly("seconds", &FitRunResult::seconds)
      .def_readonly("parameters", &FitRunResult::parameters);
  m.def(
      "run_fit",
      [](const FitConfig& c, const std::string& resolved, const std::string& out_dir,
         const std::string& version) {
        py::gil_scoped_release release;
        return run_fit(c, resolved, out_dir, version);
      },
      py::arg("config"), py::arg("resolved_toml"), py::arg("out_dir"),
      py::arg("version") = "python",
      "builds the task, fits, writes out_dir/{config.toml, loss.csv, model.afm, summary.json}");
  m.def("save_model", &save_model, py::arg("path"), py::arg("model"));
  m.def("load_model", &load_model, py::arg("path"));
});

}  // namespace

}  // namespace attnflow::py_bind
