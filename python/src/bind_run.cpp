// Bindings of the orchestration layer: TOML configs (Config), the runner's RunConfig and
// run_experiment (writes the output directory of `attnflow run`), checkpoints.
#include "attnflow/run/checkpoint.hpp"
#include "attnflow/io/config.hpp"
#include "attnflow/run/runner.hpp"
#include "bind.hpp"

namespace attnflow::py_bind {

namespace {

void bind_config(py::module_& m) {
  py::class_<Config>(m, "Config", "a TOML experiment config with --set overrides and typed getters")
      .def(py::init<>())
      .def_static("parse", &Config::parse, py::arg("text"), py::arg("name") = "config")
      .def_static("from_file", &Config::from_file, py::arg("path"))
      .def("set", &Config::set, py::arg("assignment"), "applies 'section.key=value'")
      .def("get_double", &Config::get_double, py::arg("key"), py::arg("default"))
      .def("get_int", &Config::get_int, py::arg("key"), py::arg("default"))
      .def("get_bool", &Config::get_bool, py::arg("key"), py::arg("default"))
      .def("get_string", &Config::get_string, py::arg("key"), py::arg("default"))
      .def("get_doubles", &Config::get_doubles, py::arg("key"), py::arg("default"))
      .def("get_text", &Config::get_text, py::arg("key"), py::arg("default"))
      .def("has", &Config::has, py::arg("key"))
      .def("reject_unknown", &Config::reject_unknown)
      .def("resolved", &Config::resolved, "the document with every default read, as TOML")
      .def("name", &Config::name);
}

void bind_run_config(py::module_& m) {
  py::class_<RunConfig>(m, "RunConfig",
                        "typed form of `attnflow run`'s TOML (see docs/usage/run.md)")
      .def(py::init<>())
      .def_readwrite("n", &RunConfig::n)
      .def_readwrite("d", &RunConfig::d)
      .def_readwrite("init", &RunConfig::init)
      .def_readwrite("rho0", &RunConfig::rho0)
      .def_readwrite("file", &RunConfig::file)
      .def_readwrite("seed", &RunConfig::seed)
      .def_readwrite("systems", &RunConfig::systems)
      .def_readwrite("kind", &RunConfig::kind)
      .def_readwrite("beta", &RunConfig::beta)
      .def_readwrite("gamma", &RunConfig::gamma)
      .def_readwrite("heads", &RunConfig::heads)
      .def_readwrite("qkv", &RunConfig::qkv)
      .def_readwrite("qkv_seed", &RunConfig::qkv_seed)
      .def_readwrite("scheme", &RunConfig::scheme)
      .def_readwrite("tau", &RunConfig::tau)
      .def_readwrite("alpha", &RunConfig::alpha)
      .def_readwrite("sphere", &RunConfig::sphere)
      .def_readwrite("kappa", &RunConfig::kappa)
      .def_readwrite("kuramoto_form", &RunConfig::kuramoto_form)
      .def_readwrite("usa_log_shift", &RunConfig::usa_log_shift)
      .def_readwrite("interaction", &RunConfig::interaction)
      .def_readwrite("sigma", &RunConfig::sigma)
      .def_readwrite("a", &RunConfig::a)
      .def_readwrite("b", &RunConfig::b)
      .def_readwrite("sinkhorn_iterations", &RunConfig::sinkhorn_iterations)
      .def_readwrite("integrator", &RunConfig::integrator)
      .def_readwrite("t_end", &RunConfig::t_end)
      .def_readwrite("every", &RunConfig::every)
      .def_readwrite("on_steps", &RunConfig::on_steps,
                     "[observe] on_steps: observe on the first step at or after each k * every (fixed steps)")
      .def_readwrite("delta", &RunConfig::delta)
      .def_readwrite("pair_limit", &RunConfig::pair_limit)
      .def_readwrite("snapshots", &RunConfig::snapshots)
      .def_readwrite("checkpoint_every", &RunConfig::checkpoint_every)
      .def_readwrite("device", &RunConfig::device, "[compute] device: '' (the process setting), cpu, cuda")
      .def_readwrite("precision", &RunConfig::precision, "[compute] precision: '', float64, float32");
  m.def("parse_run_config", &parse_run_config, py::arg("config"),
        "reads and validates every key of the run schema (records defaults in config)");
  m.def("default_run_config_toml", &default_run_config_toml);
  m.def("last_observation", &last_observation, py::arg("config"), "index of a run's last observation (at t_end)");
  m.def("observation_time", &observation_time, py::arg("config"), py::arg("k"),
        "time of a run's observation k (k * every, or with on_steps the first step at or after it)");
}

void bind_runner(py::module_& m) {
  // RunOptions' FILE* progress is exposed as a flag: progress lines on stderr or none.
  py::class_<RunOptions>(m, "RunOptions")
      .def(py::init<>())
      .def_readwrite("out_dir", &RunOptions::out_dir)
      .def_readwrite("resume", &RunOptions::resume)
      .def_readwrite("stop_after_checkpoints", &RunOptions::stop_after_checkpoints)
      .def_property(
          "progress", [](const RunOptions& o) { return o.progress != nullptr; },
          [](RunOptions& o, bool on) { o.progress = on ? stderr : nullptr; },
          "progress lines on stderr (True) or silent")
      .def_property(
          "on_observation", [](const RunOptions& o) { return static_cast<bool>(o.on_observation); },
          [](RunOptions& o, const py::object& f) {
            if (f.is_none()) {
              o.on_observation = nullptr;
              return;
            }
            o.on_observation = [fn = share_callable(py::reinterpret_borrow<py::function>(f))](
                                   const std::vector<ObservationRow>& rows) {
              py::gil_scoped_acquire gil;
              (*fn)(rows);
            };
          },
          "set a callable(rows: list[ObservationRow]) called at every observation (reads: is one "
          "set)")
      .def_readwrite("label", &RunOptions::label)
      .def_readwrite("version", &RunOptions::version);
  py::class_<ObservationRow>(m, "ObservationRow")
      .def_readonly("t", &ObservationRow::t)
      .def_readonly("system", &ObservationRow::system)
      .def_readonly("values", &ObservationRow::values);
  py::class_<RunResult>(m, "RunResult")
      .def_readonly("finished", &RunResult::finished)
      .def_readonly("interrupted", &RunResult::interrupted)
      .def_readonly("already_finished", &RunResult::already_finished)
      .def_readonly("observations", &RunResult::observations)
      .def_readonly("checkpoints", &RunResult::checkpoints)
      .def_readonly("states", &RunResult::states)
      .def_readonly("last", &RunResult::last)
      .def_readonly("seconds", &RunResult::seconds)
      .def_readonly("device", &RunResult::device, "where the kernel's reductions ran: cpu | cuda");
  m.def("observable_columns", &observable_columns);
  m.def("initial_positions", &initial_positions, py::arg("config"), py::arg("system"));
  m.def("run_experiment", &run_experiment, py::arg("config"), py::arg("resolved_config"),
        py::arg("options"), release_gil(),
        "runs (or resumes) the experiment into options.out_dir (the files of `attnflow run`)");
}

void bind_checkpoint(py::module_& m) {
  py::class_<Checkpoint>(m, "Checkpoint")
      .def(py::init<>())
      .def_readwrite("version", &Checkpoint::version)
      .def_readwrite("config", &Checkpoint::config)
      .def_readwrite("observation", &Checkpoint::observation)
      .def_readwrite("csv_bytes", &Checkpoint::csv_bytes)
      .def_readwrite("flow", &Checkpoint::flow)
      .def_readwrite("states", &Checkpoint::states);
  m.def("write_checkpoint", &write_checkpoint, py::arg("path"), py::arg("checkpoint"));
  m.def("read_checkpoint", &read_checkpoint, py::arg("path"));
  m.attr("kCheckpointVersion") = kCheckpointVersion;
}

const Registrar bind_run_registrar(90, [](py::module_& m) {
  bind_config(m);
  bind_run_config(m);
  bind_runner(m);
  bind_checkpoint(m);
});

}  // namespace

}  // namespace attnflow::py_bind
