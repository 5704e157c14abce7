// Bindings of transformers as maps between measures (docs/math.md section 4): layers, models,
// in-context evaluation, push-forward, the model file, losses, analytic gradients, optimizers.
#include <string>
#include <utility>

#include "attnflow/model/layers.hpp"
#include "attnflow/model/model.hpp"
#include "attnflow/model/model_grad.hpp"
#include "bind.hpp"

namespace attnflow::py_bind {

namespace {

void bind_layers(py::module_& m) {
  py::class_<AttentionLayer> layer(
      m, "AttentionLayer",
      "residual multi-head attention: heads[h] (Head) with q, k (dk, d), v (dv, d), w (d, dv); "
      "q, k, v, w: the per-head lists (views of heads, kept for compatibility)");
  layer.def(py::init<>())
      .def_readwrite("normalization", &AttentionLayer::normalization)
      .def_readwrite("beta", &AttentionLayer::beta)
      .def_readwrite("step", &AttentionLayer::step)
      .def_readwrite("sinkhorn", &AttentionLayer::sinkhorn)
      .def_readwrite("heads", &AttentionLayer::heads, "list of Head (copied on access)")
      .def("head_count", &AttentionLayer::head_count)
      .def("validate", &AttentionLayer::validate, py::arg("d"), py::arg("context"));
  // q, k, v, w as lists over the heads (the layout before heads existed): reading gives
  // [heads[h].q ...]; assigning a list sets that matrix of every head, resizing heads to its
  // length (new heads start empty, so the other lists must be assigned too before use).
  for (const auto& [name, field] : {std::pair{"q", &Head::q}, std::pair{"k", &Head::k},
                                    std::pair{"v", &Head::v}, std::pair{"w", &Head::w}}) {
    const auto member = field;
    layer.def_property(
        name,
        [member](const AttentionLayer& a) {
          std::vector<Matrix> out;
          out.reserve(a.heads.size());
          for (const Head& h : a.heads) out.push_back(h.*member);
          return out;
        },
        [member](AttentionLayer& a, const std::vector<Matrix>& mats) {
          a.heads.resize(mats.size());
          for (size_t h = 0; h < mats.size(); ++h) a.heads[h].*member = mats[h];
        },
        (std::string("[heads[h].") + name + " for every head] (assign to set them)").c_str());
  }
  py::class_<MlpLayer>(m, "MlpLayer", "phi(x) = x + w2 relu(w1 x + b1) + b2; w1 (h, d), w2 (d, h)")
      .def(py::init<>())
      .def_readwrite("w1", &MlpLayer::w1)
      .def_readwrite("w2", &MlpLayer::w2)
      .def_readwrite("b1", &MlpLayer::b1)
      .def_readwrite("b2", &MlpLayer::b2)
      .def("validate", &MlpLayer::validate, py::arg("d"), py::arg("context"));
  m.def("layer_kind", &layer_kind, py::arg("layer"), "'attention' | 'mlp'");
  m.def(
      "apply_layer",
      [](const Layer& layer, const Measure& mu, const Matrix& queries, bool with_status) -> py::object {
        SinkhornStats stats;
        Matrix out;
        {
          py::gil_scoped_release release;
          out = apply_layer(layer, mu, queries, &stats);
        }
        if (with_status) return py::make_tuple(out, stats);
        return py::cast(out);
      },
      py::arg("layer"), py::arg("mu"), py::arg("queries"), py::kw_only(),
      py::arg("with_status") = false,
      "G(mu, z_i) for queries (nq, d) -> (nq, d); with_status=True: (out, SinkhornStats of the "
      "layer's Sinkhorn normalizations)");
  m.def("parameter_count", &parameter_count, py::arg("layer"));
}

void bind_model(py::module_& m) {
  py::class_<Model>(m, "Model",
                    "a stack of layers acting on R^dim (layers: list, copied on access)")
      .def(py::init<>())
      .def_readwrite("dim", &Model::dim)
      .def_readwrite("layers", &Model::layers)
      .def("validate", &Model::validate)
      .def("parameter_count", &Model::parameter_count)
      .def(
          "to_bytes", [](const Model& md) { return py::bytes(model_to_bytes(md)); },
          "the model file (format version kModelFormatVersion)")
      .def_static(
          "from_bytes",
          [](const py::bytes& b, const std::string& name) {
            return model_from_bytes(std::string(b), name);
          },
          py::arg("data"), py::arg("name") = "model file");
  py::class_<ModelSpec>(m, "ModelSpec")
      .def(py::init<>())
      .def_readwrite("dim", &ModelSpec::dim)
      .def_readwrite("depth", &ModelSpec::depth)
      .def_readwrite("heads", &ModelSpec::heads)
      .def_readwrite("head_dim", &ModelSpec::head_dim)
      .def_readwrite("mlp_hidden", &ModelSpec::mlp_hidden)
      .def_readwrite("normalization", &ModelSpec::normalization)
      .def_readwrite("beta", &ModelSpec::beta)
      .def_readwrite("step", &ModelSpec::step)
      .def_readwrite("sinkhorn", &ModelSpec::sinkhorn)
      .def_readwrite("init_scale", &ModelSpec::init_scale)
      .def("validate", &ModelSpec::validate);
  m.def("random_model", &random_model, py::arg("spec"), py::arg("rng"));
  m.def(
      "evaluate",
      [](const Model& md, const Measure& mu, const Matrix& queries, bool with_status) -> py::object {
        SinkhornStats stats;
        Matrix out;
        {
          py::gil_scoped_release release;
          out = evaluate(md, mu, queries, &stats);
        }
        if (with_status) return py::make_tuple(out, stats);
        return py::cast(out);
      },
      py::arg("model"), py::arg("mu"), py::arg("queries"), py::kw_only(),
      py::arg("with_status") = false,
      "in-context G(mu, z) at queries (nq, d); with_status=True: (out, SinkhornStats of every "
      "Sinkhorn normalization run)");
  m.def(
      "transport",
      [](const Model& md, const Measure& mu, bool with_status) -> py::object {
        SinkhornStats stats;
        Matrix out;
        {
          py::gil_scoped_release release;
          out = transport(md, mu, &stats);
        }
        if (with_status) return py::make_tuple(out, stats);
        return py::cast(out);
      },
      py::arg("model"), py::arg("mu"), py::kw_only(), py::arg("with_status") = false,
      "G(mu, x_i) for every atom (n, d), no merging; with_status=True: (out, SinkhornStats)");
  m.def("merge_atoms", &merge_atoms, py::arg("x"), py::arg("w"), py::arg("tol") = 0.0);
  m.def(
      "push_forward",
      [](const Model& md, const Measure& mu, double merge_tol, bool with_status) -> py::object {
        SinkhornStats stats;
        Measure out;
        {
          py::gil_scoped_release release;
          out = push_forward(md, mu, merge_tol, &stats);
        }
        if (with_status) return py::make_tuple(out, stats);
        return py::cast(out);
      },
      py::arg("model"), py::arg("mu"), py::arg("merge_tol") = 0.0, py::kw_only(),
      py::arg("with_status") = false,
      "G(mu, .)#mu with coincident atoms merged; with_status=True: (measure, SinkhornStats)");
  m.def("push_forward_batch", &push_forward_batch, py::arg("model"), py::arg("mus"),
        py::arg("merge_tol") = 0.0, release_gil());
  m.def("evaluate_batch", &evaluate_batch, py::arg("model"), py::arg("mus"), py::arg("queries"),
        release_gil());
  m.def(
      "model_to_bytes", [](const Model& md) { return py::bytes(model_to_bytes(md)); },
      py::arg("model"));
  m.def(
      "model_from_bytes",
      [](const py::bytes& b, const std::string& name) {
        return model_from_bytes(std::string(b), name);
      },
      py::arg("data"), py::arg("name") = "model file");
  m.attr("kModelFormatVersion") = kModelFormatVersion;
}

void bind_training(py::module_& m) {
  py::class_<Example>(m, "Example", "a measure and targets (n, d) at its atoms")
      .def(py::init([](const Measure& mu, const Matrix& target) {
             return Example{mu, target};
           }),
           py::arg("mu"), py::arg("target"))
      .def_readwrite("mu", &Example::mu)
      .def_readwrite("target", &Example::target);
  m.def("zeros_like", &zeros_like, py::arg("model"));
  m.def(
      "model_loss",
      [](const Model& md, const Example& ex) { return model_loss(md, ex); },
      py::arg("model"), py::arg("example"), release_gil(), "L = sum_i w_i |G(mu, x_i) - y_i|^2");
  m.def(
      "loss_and_gradient",
      [](const Model& md, const Example& ex) {
        Model grad;
        Matrix dx;
        double loss = 0.0;
        {
          py::gil_scoped_release release;
          loss = loss_and_gradient(md, ex, grad, &dx);
        }
        return py::make_tuple(loss, grad, dx);
      },
      py::arg("model"), py::arg("example"), "(L, dL/dparameters as a Model, dL/dx (n, d))");
  m.def(
      "batch_loss_and_gradient",
      [](const Model& md, const std::vector<Example>& data, const std::vector<size_t>& batch) {
        Model grad;
        double loss = 0.0;
        {
          py::gil_scoped_release release;
          loss = batch_loss_and_gradient(md, data, batch, grad);
        }
        return py::make_tuple(loss, grad);
      },
      py::arg("model"), py::arg("data"), py::arg("batch"),
      "(mean loss, gradient) over data[batch]");
  m.def(
      "mean_loss",
      [](const Model& md, const std::vector<Example>& data) { return mean_loss(md, data); },
      py::arg("model"), py::arg("data"), release_gil());
  py::enum_<OptimizerKind> ok(m, "OptimizerKind", "sgd | adam");
  ok.value("sgd", OptimizerKind::sgd).value("adam", OptimizerKind::adam);
  accept_names(ok, [](const std::string& s) { return parse_optimizer(s); });
  m.def("parse_optimizer", &parse_optimizer, py::arg("name"), py::arg("context") = "optimizer");
  py::class_<OptimizerOptions>(m, "OptimizerOptions")
      .def(py::init<>())
      .def_readwrite("kind", &OptimizerOptions::kind)
      .def_readwrite("lr", &OptimizerOptions::lr)
      .def_readwrite("momentum", &OptimizerOptions::momentum)
      .def_readwrite("beta1", &OptimizerOptions::beta1)
      .def_readwrite("beta2", &OptimizerOptions::beta2)
      .def_readwrite("eps", &OptimizerOptions::eps)
      .def("validate", &OptimizerOptions::validate);
  py::class_<Optimizer>(m, "Optimizer")
      .def(py::init<const Model&, const OptimizerOptions&>(), py::arg("model"), py::arg("options"))
      .def("step", &Optimizer::step, py::arg("model"), py::arg("grad"), "updates model in place")
      .def("steps", &Optimizer::steps);
}

const Registrar bind_model_registrar(50, [](py::module_& m) {
  bind_layers(m);
  bind_model(m);
  bind_training(m);
});

}  // namespace

}  // namespace attnflow::py_bind
