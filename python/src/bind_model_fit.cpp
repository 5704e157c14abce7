// Bindings of model fitting (docs/math.md section 4.6): target in-context maps (tasks)
// and minibatch gradient descent with train/test loss histories.
#include "attnflow/model/model_fit.hpp"
#include "attnflow/model/model_tasks.hpp"
#include "bind.hpp"

namespace attnflow::py_bind {

namespace {

void bind_tasks(py::module_& m) {
  py::enum_<TaskKind> tk(m, "TaskKind", "gaussian | vlasov | sinkhorn");
  tk.value("gaussian", TaskKind::gaussian)
      .value("vlasov", TaskKind::vlasov)
      .value("sinkhorn", TaskKind::sinkhorn);
  accept_names(tk, [](const std::string& s) { return parse_task_kind(s); });
  m.def("parse_task_kind", &parse_task_kind, py::arg("name"), py::arg("context") = "task");
  py::class_<TaskOptions>(m, "TaskOptions")
      .def(py::init<>())
      .def_readwrite("kind", &TaskOptions::kind)
      .def_readwrite("dim", &TaskOptions::dim)
      .def_readwrite("n_min", &TaskOptions::n_min)
      .def_readwrite("n_max", &TaskOptions::n_max)
      .def_readwrite("train_size", &TaskOptions::train_size)
      .def_readwrite("test_size", &TaskOptions::test_size)
      .def_readwrite("seed", &TaskOptions::seed)
      .def_readwrite("random_weights", &TaskOptions::random_weights)
      .def_readwrite("spread", &TaskOptions::spread)
      .def_readwrite("beta", &TaskOptions::beta)
      .def_readwrite("time", &TaskOptions::time)
      .def_readwrite("heads", &TaskOptions::heads)
      .def_readwrite("dt", &TaskOptions::dt)
      .def_readwrite("eps", &TaskOptions::eps)
      .def_readwrite("target_sinkhorn", &TaskOptions::target_sinkhorn,
                     "sinkhorn task: tol / max_iterations of the target plan's solve")
      .def("validate", &TaskOptions::validate);
  py::class_<TaskData>(m, "TaskData")
      .def_readonly("train", &TaskData::train)
      .def_readonly("test", &TaskData::test);
  m.def("make_task", &make_task, py::arg("options"), release_gil(), "train/test lists of Examples");
  m.def("task_target", &task_target, py::arg("options"), py::arg("mu"), release_gil(),
        "the target map at the atoms of mu, (n, d)");
}

void bind_fit(py::module_& m) {
  py::class_<FitOptions>(m, "FitOptions")
      .def(py::init<>())
      .def_readwrite("steps", &FitOptions::steps)
      .def_readwrite("batch_size", &FitOptions::batch_size)
      .def_readwrite("eval_every", &FitOptions::eval_every)
      .def_readwrite("seed", &FitOptions::seed)
      .def_readwrite("optimizer", &FitOptions::optimizer)
      .def("validate", &FitOptions::validate);
  py::class_<FitRecord>(m, "FitRecord")
      .def_readonly("step", &FitRecord::step)
      .def_readonly("train_loss", &FitRecord::train_loss)
      .def_readonly("test_loss", &FitRecord::test_loss);
  py::class_<FitResult>(m, "FitResult")
      .def_readonly("history", &FitResult::history)
      .def_readonly("final_train_loss", &FitResult::final_train_loss)
      .def_readonly("final_test_loss", &FitResult::final_test_loss)
      .def_readonly("identity_train_loss", &FitResult::identity_train_loss)
      .def_readonly("identity_test_loss", &FitResult::identity_test_loss)
      .def_readonly("steps", &FitResult::steps)
      .def_readonly("finite", &FitResult::finite)
      .def_readonly("message", &FitResult::message)
      .def_readonly("sinkhorn", &FitResult::sinkhorn,
                    "SinkhornStats of every Sinkhorn normalization in training and evaluation");
  m.def(
      "fit_model",
      [](Model& model, const std::vector<Example>& train, const std::vector<Example>& test,
         const FitOptions& options, const py::object& callback) {
        FitCallback cb;
        if (!callback.is_none()) {
          cb = [f = share_callable(py::reinterpret_borrow<py::function>(callback))](
                   const FitRecord& r) {
            py::gil_scoped_acquire gil;
            (*f)(r);
          };
        }
        py::gil_scoped_release release;
        return fit_model(model, train, test, options, cb);
      },
      py::arg("model"), py::arg("train"), py::arg("test"), py::arg("options"),
      py::arg("callback") = py::none(),
      "fits model in place by minibatch gradient descent; callback(record) after each evaluation");
  m.def("identity_loss", &identity_loss, py::arg("data"));
}

const Registrar bind_model_fit_registrar(55, [](py::module_& m) {
  bind_tasks(m);
  bind_fit(m);
});

}  // namespace

}  // namespace attnflow::py_bind
