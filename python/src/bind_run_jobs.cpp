// Bindings of the remaining orchestration jobs: parameter sweeps (`attnflow sweep`) and the
// in-context regression / large-prompt jobs (`attnflow icl`, `attnflow largeprompt`), each
// writing the same output directory as its CLI command.
#include "attnflow/run/icl_run.hpp"
#include "attnflow/run/sweep.hpp"
#include "bind.hpp"

namespace attnflow::py_bind {

namespace {

void bind_sweep(py::module_& m) {
  py::class_<SweepAxis>(m, "SweepAxis")
      .def_readonly("key", &SweepAxis::key)
      .def_readonly("values", &SweepAxis::values)
      .def_readonly("labels", &SweepAxis::labels);
  py::class_<SweepGrid>(m, "SweepGrid")
      .def_readonly("name", &SweepGrid::name)
      .def_readonly("base", &SweepGrid::base)
      .def_readonly("axes", &SweepGrid::axes)
      .def("size", &SweepGrid::size)
      .def("coordinates", &SweepGrid::coordinates, py::arg("point"));
  m.def("parse_sweep", &parse_sweep, py::arg("toml_text"), py::arg("name") = "sweep",
        py::arg("sets") = std::vector<std::string>{},
        "splits a sweep config (after the key=value overrides `sets`) into the base runner config and the "
        "[sweep] axes, in the order of the text, then of the overrides that add axes");
  py::class_<SweepOptions>(m, "SweepOptions")
      .def(py::init<>())
      .def_readwrite("out_dir", &SweepOptions::out_dir)
      .def_readwrite("resume", &SweepOptions::resume)
      .def_readwrite("jobs", &SweepOptions::jobs)
      .def_readwrite("stop_after_points", &SweepOptions::stop_after_points)
      .def_property(
          "progress", [](const SweepOptions& o) { return o.progress != nullptr; },
          [](SweepOptions& o, bool on) { o.progress = on ? stderr : nullptr; },
          "one line per finished point on stderr (True) or silent")
      .def_readwrite("version", &SweepOptions::version);
  py::class_<SweepResult>(m, "SweepResult")
      .def_readonly("points", &SweepResult::points)
      .def_readonly("ran", &SweepResult::ran)
      .def_readonly("skipped", &SweepResult::skipped)
      .def_readonly("finished", &SweepResult::finished)
      .def_readonly("interrupted", &SweepResult::interrupted)
      .def_readonly("seconds", &SweepResult::seconds);
  m.def("run_sweep", &run_sweep, py::arg("grid"), py::arg("options"), release_gil(),
        "runs every grid point into options.out_dir/points and writes sweep.csv");
}

void bind_icl_jobs(py::module_& m) {
  py::class_<IclRunConfig>(m, "IclRunConfig")
      .def(py::init<>())
      .def_readwrite("data", &IclRunConfig::data)
      .def_readwrite("train", &IclRunConfig::train)
      .def_readwrite("init_scale", &IclRunConfig::init_scale)
      .def_readwrite("init_seed", &IclRunConfig::init_seed)
      .def_readwrite("eval_prompts", &IclRunConfig::eval_prompts)
      .def_readwrite("converged_tol", &IclRunConfig::converged_tol);
  m.def("parse_icl_config", &parse_icl_config, py::arg("config"));
  m.def("default_icl_config_toml", &default_icl_config_toml);
  py::class_<LargePromptRunConfig>(m, "LargePromptRunConfig")
      .def(py::init<>())
      .def_readwrite("options", &LargePromptRunConfig::options);
  m.def("parse_largeprompt_config", &parse_largeprompt_config, py::arg("config"));
  m.def("default_largeprompt_config_toml", &default_largeprompt_config_toml);
  py::class_<IclRunSummary>(m, "IclRunSummary")
      .def_readonly("text", &IclRunSummary::text)
      .def_readonly("finished", &IclRunSummary::finished)
      .def_readonly("finite", &IclRunSummary::finite)
      .def_readonly("converged", &IclRunSummary::converged)
      .def_readonly("diverged_step", &IclRunSummary::diverged_step)
      .def_readonly("message", &IclRunSummary::message);
  m.def("run_icl", &run_icl, py::arg("config"), py::arg("resolved_toml"), py::arg("out_dir"),
        py::arg("version") = "python", py::arg("quiet") = true, release_gil(),
        "the `attnflow icl` job: writes config.toml, risk.csv, final.json, summary.json");
  m.def("run_largeprompt", &run_largeprompt, py::arg("config"), py::arg("resolved_toml"),
        py::arg("out_dir"), py::arg("version") = "python", py::arg("quiet") = true, release_gil(),
        "the `attnflow largeprompt` job: writes config.toml, concentration.csv, summary.json");
}

const Registrar bind_run_jobs_registrar(96, [](py::module_& m) {
  bind_sweep(m);
  bind_icl_jobs(m);
});

}  // namespace

}  // namespace attnflow::py_bind
