// Bindings of the large-prompt operator and in-context linear regression (docs/math.md section 7).
#include "attnflow/icl/icl.hpp"
#include "attnflow/icl/large_prompt.hpp"
#include "attnflow/base/rng.hpp"
#include "attnflow/base/ziggurat.hpp"
#include "bind.hpp"

namespace attnflow::py_bind {

namespace {

void bind_large_prompt(py::module_& m) {
  py::class_<PromptOperator>(m, "PromptOperator", "u (D, D) = K^T Q, v (p, D)")
      .def(py::init([](const Matrix& u, const Matrix& v) {
             return PromptOperator{u, v};
           }),
           py::arg("u"), py::arg("v"))
      .def_readwrite("u", &PromptOperator::u)
      .def_readwrite("v", &PromptOperator::v)
      .def("validate", &PromptOperator::validate, py::arg("dim"));
  py::class_<PromptOutput>(m, "PromptOutput")
      .def_readonly("out", &PromptOutput::out, "(n, p), row i = T(z_i)")
      .def_readonly("grad_u", &PromptOutput::grad_u, "(D, D) or empty")
      .def_readonly("grad_v", &PromptOutput::grad_v, "(p, D) or empty");
  m.def("empirical_prompt", &empirical_prompt, py::arg("op"), py::arg("tokens"), py::arg("queries"),
        py::arg("cotangent") = Matrix(), release_gil(),
        "T[mu_L](z) for a token Measure (L, D) and queries (n, D); gradients when cotangent (n, p) "
        "given");
  m.def("gaussian_prompt", &gaussian_prompt, py::arg("op"), py::arg("mean"), py::arg("cov"),
        py::arg("queries"), py::arg("cotangent") = Matrix(), release_gil(),
        "T[N(mean, cov)](z) = V mean + V cov U z");
  m.def("rademacher_prompt", &rademacher_prompt, py::arg("op"), py::arg("queries"),
        py::arg("cotangent") = Matrix(), release_gil(), "T(z) = V tanh(U z)");
}

void bind_icl_data(py::module_& m) {
  py::enum_<TaskPrior> tp(m, "TaskPrior", "gaussian | sphere");
  tp.value("gaussian", TaskPrior::gaussian).value("sphere", TaskPrior::sphere);
  accept_names(tp, [](const std::string& s) { return parse_task_prior(s); });
  m.def("parse_task_prior", &parse_task_prior, py::arg("name"), py::arg("context") = "icl");
  py::class_<IclData>(m, "IclData", "x ~ N(0, cov), w prior, y = <w, x> + noise")
      .def(py::init([](const Matrix& cov, double noise, TaskPrior prior, double task_scale) {
             return IclData{cov, noise, prior, task_scale};
           }),
           py::arg("cov"), py::arg("noise") = 0.0, py::arg("prior") = TaskPrior::gaussian,
           py::arg("task_scale") = 1.0)
      .def_readwrite("cov", &IclData::cov)
      .def_readwrite("noise", &IclData::noise)
      .def_readwrite("prior", &IclData::prior)
      .def_readwrite("task_scale", &IclData::task_scale)
      .def("dim", &IclData::dim)
      .def("validate", &IclData::validate);
  m.def("toeplitz_covariance", &toeplitz_covariance, py::arg("d"), py::arg("rho"),
        "S_ij = rho^|i-j|");
  py::class_<IclPrompt>(m, "IclPrompt")
      .def(py::init<>())
      .def_readwrite("x", &IclPrompt::x)
      .def_readwrite("y", &IclPrompt::y)
      .def_readwrite("w", &IclPrompt::w)
      .def_readwrite("xq", &IclPrompt::xq)
      .def_readwrite("target", &IclPrompt::target);
  py::class_<IclSampler>(m, "IclSampler")
      .def(py::init<IclData>(), py::arg("data"))
      .def("sample", &IclSampler::sample, py::arg("length"), py::arg("rng"))
      .def("data", &IclSampler::data);
}

void bind_icl_model(py::module_& m) {
  py::enum_<IclModel> im(m, "IclModel", "softmax | linear");
  im.value("softmax", IclModel::softmax).value("linear", IclModel::linear);
  accept_names(im, [](const std::string& s) { return parse_icl_model(s); });
  m.def("parse_icl_model", &parse_icl_model, py::arg("name"), py::arg("context") = "icl");
  py::class_<IclParams>(m, "IclParams", "a (d, d), b")
      .def(py::init([](const Matrix& a, double b) {
             return IclParams{a, b};
           }),
           py::arg("a"), py::arg("b"))
      .def_readwrite("a", &IclParams::a)
      .def_readwrite("b", &IclParams::b);
  py::class_<IclPrediction>(m, "IclPrediction")
      .def_readonly("value", &IclPrediction::value)
      .def_readonly("grad_a", &IclPrediction::grad_a)
      .def_readonly("grad_b", &IclPrediction::grad_b);
  m.def("icl_predict", &icl_predict, py::arg("model"), py::arg("params"), py::arg("prompt"),
        py::arg("gradients") = false, release_gil());
  m.def("icl_balanced_init", &icl_balanced_init, py::arg("d"), py::arg("alpha"), py::arg("rng"));
  m.def("icl_infinite_risk", &icl_infinite_risk, py::arg("data"), py::arg("params"));
  m.def(
      "icl_infinite_flow",
      [](const IclData& data, const IclParams& p) {
        Matrix da;
        double db = 0.0;
        icl_infinite_flow(data, p, da, db);
        return py::make_tuple(da, db);
      },
      py::arg("data"), py::arg("params"),
      "(dA/dt (d, d), db/dt) of the infinite-prompt gradient flow");
  m.def("icl_fixed_point", &icl_fixed_point, py::arg("cov"));
  m.def("icl_flow_ode", &icl_flow_ode, py::arg("data"),
        "the flow as an Ode on (1, d*d + 1) = [A, b]");
  m.def("icl_pack", &icl_pack, py::arg("params"));
  m.def("icl_unpack", &icl_unpack, py::arg("state"), py::arg("d"));
}

void bind_icl_train(py::module_& m) {
  py::class_<IclTrainOptions>(m, "IclTrainOptions")
      .def(py::init<>())
      .def_readwrite("model", &IclTrainOptions::model)
      .def_readwrite("prompt_length", &IclTrainOptions::prompt_length)
      .def_readwrite("steps", &IclTrainOptions::steps)
      .def_readwrite("lr", &IclTrainOptions::lr)
      .def_readwrite("batch", &IclTrainOptions::batch)
      .def_readwrite("seed", &IclTrainOptions::seed)
      .def_readwrite("log_every", &IclTrainOptions::log_every)
      .def_readwrite("method", &IclTrainOptions::method)
      .def_readwrite("ode_dt", &IclTrainOptions::ode_dt)
      .def("validate", &IclTrainOptions::validate);
  py::class_<IclStepRecord>(m, "IclStepRecord")
      .def_readonly("step", &IclStepRecord::step)
      .def_readonly("time", &IclStepRecord::time)
      .def_readonly("risk", &IclStepRecord::risk)
      .def_readonly("risk_infinite", &IclStepRecord::risk_infinite)
      .def_readonly("b", &IclStepRecord::b)
      .def_readonly("a_norm", &IclStepRecord::a_norm)
      .def_readonly("balance", &IclStepRecord::balance);
  py::class_<IclTrainResult>(m, "IclTrainResult")
      .def_readonly("params", &IclTrainResult::params)
      .def_readonly("history", &IclTrainResult::history)
      .def_readonly("steps", &IclTrainResult::steps)
      .def_readonly("finite", &IclTrainResult::finite)
      .def_readonly("diverged_step", &IclTrainResult::diverged_step)
      .def_readonly("message", &IclTrainResult::message);
  m.def(
      "icl_train",
      [](const IclData& data, const IclParams& init, const IclTrainOptions& o,
         const py::object& progress) {
        IclProgress cb;
        if (!progress.is_none()) {
          cb = [f = share_callable(py::reinterpret_borrow<py::function>(progress))](
                   const IclStepRecord& r) {
            py::gil_scoped_acquire gil;
            (*f)(r);
          };
        }
        py::gil_scoped_release release;
        return icl_train(data, init, o, cb);
      },
      py::arg("data"), py::arg("init"), py::arg("options"), py::arg("progress") = py::none(),
      "SGD on fresh prompts (or the infinite-prompt ODE, prompt_length = 0); progress(record) "
      "is called after every logged step");
  py::class_<IclRiskEstimate>(m, "IclRiskEstimate")
      .def_readonly("mean", &IclRiskEstimate::mean)
      .def_readonly("standard_error", &IclRiskEstimate::standard_error);
  m.def("icl_estimate_risk", &icl_estimate_risk, py::arg("data"), py::arg("model"),
        py::arg("params"), py::arg("length"), py::arg("prompts"), py::arg("seed"), release_gil());
}

const Registrar bind_icl_registrar(40, [](py::module_& m) {
  m.def("ziggurat_normal", &ziggurat_normal, py::arg("rng"), "one N(0, 1) draw (ziggurat)");
  m.def(
      "ziggurat_fill",
      [](Rng& rng, Index count) {
        if (count < 0) throw_shape("ziggurat_fill", count, 1);
        Vector out(count);
        ziggurat_fill(rng, out.data(), count);
        return out;
      },
      py::arg("rng"), py::arg("count"), "(count) i.i.d. N(0, 1) (ziggurat), in order");
  bind_large_prompt(m);
  bind_icl_data(m);
  bind_icl_model(m);
  bind_icl_train(m);
});

}  // namespace

}  // namespace attnflow::py_bind
