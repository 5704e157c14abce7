// Bindings of the particle flows (docs/math.md sections 4-5): fields, normalization schemes,
// integrators (also for Python-defined fields), observables and ensembles.
#include "attnflow/flow/ensemble.hpp"
#include "attnflow/flow/flow.hpp"
#include "attnflow/flow/integrate.hpp"
#include "attnflow/flow/observe.hpp"
#include "attnflow/flow/scheme.hpp"
#include "bind.hpp"

namespace attnflow::py_bind {

namespace {

// A Python callable f(t, x) -> dxdt (same shape) as a Field; the GIL is re-acquired for each
// call because advance() runs with it released.
Field python_field(py::function f) {
  return [f = share_callable(std::move(f))](double t, const Matrix& x, Matrix& dxdt) {
    py::gil_scoped_acquire gil;
    const py::object out = (*f)(t, x);
    check_returned_array(out, "advance", "field(t, x)");
    const Matrix r = out.cast<Matrix>();
    if (r.rows() != x.rows() || r.cols() != x.cols())
      throw std::invalid_argument("advance: field returned shape (" + std::to_string(r.rows()) +
                                  ", " + std::to_string(r.cols()) + "), must equal the state's (" +
                                  std::to_string(x.rows()) + ", " + std::to_string(x.cols()) + ")");
    dxdt = r;
  };
}

void bind_integrate(py::module_& m) {
  py::enum_<Method> me(m, "Method", "euler | rk4 | dopri5 | residual");
  me.value("euler", Method::euler).value("rk4", Method::rk4).value("dopri5", Method::dopri5)
      .value("residual", Method::residual);
  accept_names(me, [](const std::string& s) { return parse_method(s); });
  m.def("parse_method", &parse_method, py::arg("name"), py::arg("context") = "integrate");
  py::class_<IntegratorOptions>(m, "IntegratorOptions")
      .def(py::init<>())
      .def(py::init([](Method method, double dt) {
             return IntegratorOptions{method, dt};
           }),
           py::arg("method"), py::arg("dt") = 0.01)
      .def_readwrite("method", &IntegratorOptions::method)
      .def_readwrite("dt", &IntegratorOptions::dt)
      .def_readwrite("rtol", &IntegratorOptions::rtol)
      .def_readwrite("atol", &IntegratorOptions::atol)
      .def_readwrite("dt_min", &IntegratorOptions::dt_min)
      .def_readwrite("max_steps", &IntegratorOptions::max_steps)
      .def("validate", &IntegratorOptions::validate);
  py::class_<IntegratorState>(m, "IntegratorState")
      .def(py::init<>())
      .def_readwrite("t", &IntegratorState::t)
      .def_readwrite("dt_next", &IntegratorState::dt_next)
      .def_readwrite("steps", &IntegratorState::steps)
      .def_readwrite("rejected", &IntegratorState::rejected)
      .def_readwrite("evaluations", &IntegratorState::evaluations)
      .def_readwrite("grid_origin", &IntegratorState::grid_origin)
      .def_readwrite("grid_steps", &IntegratorState::grid_steps);
  py::class_<Ode>(m, "Ode", "A field and retraction (from Flow.ode(), icl_flow_ode(), ...)");
  m.def(
      "advance",
      [](const Ode& ode, Matrix x, IntegratorState& state, double t_end,
         const IntegratorOptions& o) {
        py::gil_scoped_release release;
        advance(ode, x, state, t_end, o);
        return x;
      },
      py::arg("ode"), py::arg("x"), py::arg("state"), py::arg("t_end"), py::arg("options"),
      "Advances x (rows, cols) from state.t to t_end; returns the new x and updates state.");
  m.def(
      "advance",
      [](py::function field, Matrix x, IntegratorState& state, double t_end,
         const IntegratorOptions& o, const py::object& retract) {
        Ode ode{python_field(std::move(field)), {}};
        if (!retract.is_none()) {
          ode.retract =
              [r = share_callable(py::reinterpret_borrow<py::function>(retract))](Matrix& y) {
                py::gil_scoped_acquire gil;
                const py::object out = (*r)(y);
                check_returned_array(out, "advance", "retract(x)");
                y = out.cast<Matrix>();
              };
        }
        py::gil_scoped_release release;
        advance(ode, x, state, t_end, o);
        return x;
      },
      py::arg("field"), py::arg("x"), py::arg("state"), py::arg("t_end"), py::arg("options"),
      py::arg("retract") = py::none(),
      "Integrates a Python field f(t, x) -> dx/dt (x (rows, cols)) with the library's schemes; "
      "retract(x) -> x optional. Returns the new x and updates state.");
}

void bind_scheme(py::module_& m) {
  py::enum_<Scheme> se(m, "Scheme",
                       "none | post_ln | pre_ln | mix_ln | peri_ln | ngpt | sqrt_scaling");
  se.value("none", Scheme::none)
      .value("post_ln", Scheme::post_ln)
      .value("pre_ln", Scheme::pre_ln)
      .value("mix_ln", Scheme::mix_ln)
      .value("peri_ln", Scheme::peri_ln)
      .value("ngpt", Scheme::ngpt)
      .value("sqrt_scaling", Scheme::sqrt_scaling);
  accept_names(se, [](const std::string& s) { return parse_scheme(s); });
  m.def("parse_scheme", &parse_scheme, py::arg("name"), py::arg("context") = "flow",
        py::arg("field") = "scheme");
  py::class_<SchemeOptions>(m, "SchemeOptions")
      .def(py::init<>())
      .def_readwrite("scheme", &SchemeOptions::scheme)
      .def_readwrite("tau", &SchemeOptions::tau)
      .def_readwrite("alpha", &SchemeOptions::alpha)
      .def("validate", &SchemeOptions::validate);
  m.def(
      "scheme_rates",
      [](const SchemeOptions& o, double t, const Matrix& theta, const Vector& r, const Matrix& a) {
        Matrix dtheta;
        Vector dr;
        scheme_rates(o, t, theta, r, a, dtheta, dr);
        return py::make_tuple(dtheta, dr);
      },
      py::arg("options"), py::arg("t"), py::arg("theta"), py::arg("r"), py::arg("a"),
      "(dtheta (n, d), dr (n)) of the scheme for directions theta (n, d), radii r (n), averages a "
      "(n, d)");
  m.def("scheme_state", &scheme_state, py::arg("x"), "points (n, d) -> [x/|x| | |x|] (n, d + 1)");
  m.def("scheme_positions", &scheme_positions, py::arg("state"), "[theta | r] -> r theta (n, d)");
  m.def(
      "scheme_retract",
      [](Matrix s) {
        scheme_retract(s);
        return s;
      },
      py::arg("state"), "renormalizes the theta columns of [theta | r]");
}

void bind_flow_options(py::module_& m) {
  py::enum_<FieldKind> fk(m, "FieldKind",
                          "sa | usa | sinkhorn | kuramoto | meanshift | hardmax | vlasov");
  fk.value("sa", FieldKind::sa)
      .value("usa", FieldKind::usa)
      .value("sinkhorn", FieldKind::sinkhorn)
      .value("kuramoto", FieldKind::kuramoto)
      .value("meanshift", FieldKind::meanshift)
      .value("hardmax", FieldKind::hardmax)
      .value("vlasov", FieldKind::vlasov);
  accept_names(fk, [](const std::string& s) { return parse_field_kind(s); });
  m.def("parse_field_kind", &parse_field_kind, py::arg("name"), py::arg("context") = "flow",
        py::arg("field") = "kind");
  py::enum_<Interaction> ie(m, "Interaction", "gaussian | power | custom");
  ie.value("gaussian", Interaction::gaussian)
      .value("power", Interaction::power)
      .value("custom", Interaction::custom);
  accept_names(ie, [](const std::string& s) { return parse_interaction(s); });
  m.def("parse_interaction", &parse_interaction, py::arg("name"), py::arg("context") = "flow",
        py::arg("field") = "vlasov.interaction");
}

void bind_flow_structs(py::module_& m) {
  // A flow head is the one Head (bound with attention): q, k (d_k, d), v (d_v, d), w (d, d_v)
  // (w empty: v is (d, d)). FlowHead stays as its name in attnflow.flow.
  m.attr("FlowHead") = m.attr("Head");
  m.def("make_heads", &make_heads, py::arg("count"), py::arg("d"), py::arg("qkv"), py::arg("seed"),
        "count heads for dimension d: qkv 'identity' | 'gaussian' | 'goe', seeded");
  // The custom InteractionKernel (a C++ callback on raw pointers) is not exposed: a Python
  // callback per pair would be O(n^2) interpreter calls; use advance(field, ...) instead.
  py::class_<VlasovOptions>(m, "VlasovOptions")
      .def(py::init<>())
      .def_readwrite("interaction", &VlasovOptions::interaction)
      .def_readwrite("sigma", &VlasovOptions::sigma)
      .def_readwrite("a", &VlasovOptions::a)
      .def_readwrite("b", &VlasovOptions::b);
  py::class_<FlowOptions>(m, "FlowOptions")
      .def(py::init<>())
      .def_readwrite("kind", &FlowOptions::kind)
      .def_readwrite("beta", &FlowOptions::beta)
      .def_readwrite("heads", &FlowOptions::heads)
      .def_readwrite("weights", &FlowOptions::weights)
      .def_readwrite("sphere", &FlowOptions::sphere)
      .def_readwrite("kappa", &FlowOptions::kappa)
      .def_readwrite("noise_seed", &FlowOptions::noise_seed)
      .def_readwrite("noise_stream", &FlowOptions::noise_stream)
      .def_readwrite("scheme", &FlowOptions::scheme)
      .def_readwrite("sinkhorn", &FlowOptions::sinkhorn)
      .def_readwrite("kuramoto_normalization", &FlowOptions::kuramoto_normalization)
      .def_readwrite("usa_log_shift", &FlowOptions::usa_log_shift)
      .def_readwrite("vlasov", &FlowOptions::vlasov)
      .def("validate", &FlowOptions::validate, py::arg("n"), py::arg("d"));
  py::class_<FlowState>(m, "FlowState", "integrator state + noise stream (checkpointable)")
      .def(py::init<>())
      .def_readwrite("integrator", &FlowState::integrator);
  py::class_<FlowDiagnostics>(m, "FlowDiagnostics")
      .def_readonly("evaluations", &FlowDiagnostics::evaluations)
      .def_readonly("sinkhorn_not_converged", &FlowDiagnostics::sinkhorn_not_converged)
      .def_readonly("sinkhorn_marginal_error", &FlowDiagnostics::sinkhorn_marginal_error)
      .def_readonly("message", &FlowDiagnostics::message);
}

void bind_flow_class(py::module_& m) {
  py::class_<Flow>(m, "Flow",
                   "A flow for n tokens in dimension d (state: points, angles or [theta | r])")
      .def(py::init<FlowOptions, Index, Index>(), py::arg("options"), py::arg("n"), py::arg("d"))
      .def(
          "field",
          [](const Flow& f, double t, const Matrix& state) {
            Matrix dxdt(state.rows(), state.cols());
            py::gil_scoped_release release;
            f.field(t, state, dxdt);
            return dxdt;
          },
          py::arg("t"), py::arg("state"), "dstate/dt at (t, state), same shape as state")
      .def(
          "retract",
          [](const Flow& f, Matrix s) {
            f.retract(s);
            return s;
          },
          py::arg("state"))
      .def("ode", &Flow::ode, py::keep_alive<0, 1>(), "the Ode (keeps this Flow alive)")
      .def("initial_state", &Flow::initial_state, py::arg("points"), "points (n, d) -> state")
      .def("positions", &Flow::positions, py::arg("state"), "state -> points (n, d)")
      .def("initial_flow_state", &Flow::initial_flow_state, py::arg("t0") = 0.0)
      .def(
          "advance",
          [](const Flow& f, Matrix state, FlowState& st, double t_end, const IntegratorOptions& o) {
            py::gil_scoped_release release;
            f.advance(state, st, t_end, o);
            return state;
          },
          py::arg("state"), py::arg("flow_state"), py::arg("t_end"), py::arg("integrator"),
          "advances to t_end; returns the new state and updates flow_state")
      .def("options", &Flow::options)
      .def("n", &Flow::n)
      .def("d", &Flow::d)
      .def("state_cols", &Flow::state_cols)
      .def("noisy", &Flow::noisy)
      .def("diagnostics", &Flow::diagnostics);
  m.def(
      "project_tangent",
      [](const Matrix& x, Matrix dx) {
        project_tangent(x, dx);
        return dx;
      },
      py::arg("x"), py::arg("dx"), "dx_i - <x_i, dx_i> x_i for every row (x rows unit)");
  m.def(
      "normalize_rows",
      [](Matrix x) {
        normalize_rows(x);
        return x;
      },
      py::arg("x"), "rows scaled to unit length (zero rows kept)");
}

void bind_observe(py::module_& m) {
  py::class_<ObserveOptions>(m, "ObserveOptions")
      .def(py::init<>())
      .def(py::init([](double beta, double delta) {
             ObserveOptions o;
             o.beta = beta;
             o.delta = delta;
             return o;
           }),
           py::arg("beta"), py::arg("delta") = 1e-3)
      .def_readwrite("beta", &ObserveOptions::beta)
      .def_readwrite("delta", &ObserveOptions::delta)
      .def_readwrite("pair_limit", &ObserveOptions::pair_limit)
      .def_readwrite("sphere", &ObserveOptions::sphere)
      .def("validate", &ObserveOptions::validate);
  py::class_<Observables>(m, "Observables")
      .def_readonly("t", &Observables::t)
      .def_readonly("log_energy", &Observables::log_energy)
      .def_readonly("energy", &Observables::energy)
      .def_readonly("mean_cosine", &Observables::mean_cosine)
      .def_readonly("order", &Observables::order)
      .def_readonly("pairs_computed", &Observables::pairs_computed)
      .def_readonly("min_cosine", &Observables::min_cosine)
      .def_readonly("clusters", &Observables::clusters)
      .def_readonly("cluster_sizes", &Observables::cluster_sizes)
      .def_readonly("clustered_pairs", &Observables::clustered_pairs)
      .def_readonly("radius_mean", &Observables::radius_mean)
      .def_readonly("radius_min", &Observables::radius_min)
      .def_readonly("radius_max", &Observables::radius_max);
  m.def(
      "observe",
      [](const Matrix& x, const py::object& w, const ObserveOptions& o, double t) {
        const Vector wv = vector_or_empty(w, "w");
        py::gil_scoped_release release;
        return observe(x, wv, o, t);
      },
      py::arg("x"), py::arg("w") = py::none(), py::arg("options") = ObserveOptions(),
      py::arg("t") = 0.0, "Observables of points x (n, d), weights w (n) or None (uniform)");
  m.def(
      "log_energy",
      [](const Matrix& x, const py::object& w, double beta) {
        const Vector wv = vector_or_empty(w, "w");
        py::gil_scoped_release release;
        return log_energy(x, wv, beta);
      },
      py::arg("x"), py::arg("w") = py::none(), py::arg("beta") = 1.0,
      "log E_beta, E_beta = (1/(2 beta)) sum_ij w_i w_j e^{beta <x_i, x_j>}");
  m.def("observable_names", &observable_names);
  m.def("observable_values", &observable_values, py::arg("observables"));
}

void bind_ensemble(py::module_& m) {
  py::class_<Ensemble>(m, "Ensemble", "many independent flows advanced together")
      .def(py::init<std::vector<FlowOptions>, std::vector<Matrix>, IntegratorOptions>(),
           py::arg("flows"), py::arg("initial_points"), py::arg("integrator"))
      .def("advance", &Ensemble::advance, py::arg("t_end"), release_gil())
      .def("observe", &Ensemble::observe, py::arg("options"), py::arg("clusters") = true, release_gil())
      .def("advance_observe", &Ensemble::advance_observe, py::arg("t_end"), py::arg("options"),
           py::arg("clusters") = true, release_gil(),
           "advance(t_end) then observe(options, clusters), the same results; the batched path "
           "observes each block right after its steps, while its state is in cache")
      .def(
          "advance_observe_each",
          [](Ensemble& e, const std::vector<double>& times, const ObserveOptions& options, bool clusters) {
            std::vector<std::vector<Observables>> out(times.size());
            py::gil_scoped_release release;
            e.advance_observe_each(times, options, clusters,
                                   [&](std::size_t k, const std::vector<Observables>& obs) { out[k] = obs; });
            return out;
          },
          py::arg("times"), py::arg("options"), py::arg("clusters") = true,
          "advance_observe at each of times (non-decreasing) in turn: one list of observables per "
          "time, the same as one advance_observe per time; on the GPU path many times per launch, "
          "on the CPU's batched path many times per pass over the blocks")
      .def_readwrite("gpu_launch_observations", &Ensemble::gpu_launch_observations,
                     "observation times per GPU launch in advance_observe_each (0: automatic)")
      .def_readwrite("cpu_pass_observations", &Ensemble::cpu_pass_observations,
                     "observation times per pass over the blocks in advance_observe_each on the CPU's "
                     "batched path (0: automatic, 65536 systems' observations)")
      .def("observations_per_pass", &Ensemble::observations_per_pass, py::arg("options"),
           "the times advance_observe_each takes per pass over the blocks with these options on the CPU "
           "(1 off the batched path on the sphere)")
      .def("batchable", &Ensemble::batchable)
      .def_readwrite("batched", &Ensemble::batched)
      .def_readwrite("batch_n", &Ensemble::batch_n)
      .def("size", &Ensemble::size)
      .def("flow", &Ensemble::flow, py::arg("s"), py::return_value_policy::reference_internal)
      .def("state", &Ensemble::state, py::arg("s"))
      .def("flow_state", &Ensemble::flow_state, py::arg("s"))
      .def("positions", &Ensemble::positions, py::arg("s"))
      .def("set_state", &Ensemble::set_state, py::arg("s"), py::arg("state"), py::arg("flow_state"))
      .def("saved_state", &Ensemble::saved_state, py::arg("s"),
           "what continues system s bit for bit: its state, or on the reduced path (d > n) its "
           "coordinates and basis [C | B], (n, n + d), the points being C B")
      .def("restore_state", &Ensemble::restore_state, py::arg("s"), py::arg("saved"), py::arg("flow_state"))
      .def_readwrite("reduce_span", &Ensemble::reduce_span,
                     "d > n on the batched path: advance coordinates in a basis of the points' span")
      .def("reduces_span", &Ensemble::reduces_span)
      .def_property(
          "precision", [](const Ensemble& e) { return std::string(precision_name(e.precision)); },
          [](Ensemble& e, const std::string& p) { e.precision = parse_precision(p, "Ensemble.precision"); },
          "\"float64\" (default) or \"float32\": the batched path on the sphere in single precision "
          "(16 systems per AVX-512 vector; advance() refuses it where precision_refusal() says why)")
      .def("precision_refusal", &Ensemble::precision_refusal,
           "why float32 does not apply to these systems (\"\" when it does)")
      .def_readwrite("parallel_n", &Ensemble::parallel_n);
  py::class_<ObservableStats>(m, "ObservableStats")
      .def_readonly("name", &ObservableStats::name)
      .def_readonly("count", &ObservableStats::count)
      .def_readonly("mean", &ObservableStats::mean)
      .def_readonly("standard_error", &ObservableStats::standard_error)
      .def_readonly("quantiles", &ObservableStats::quantiles);
  py::class_<EnsembleStats>(m, "EnsembleStats")
      .def_readonly("probs", &EnsembleStats::probs)
      .def_readonly("stats", &EnsembleStats::stats);
  m.def("quantile", &quantile, py::arg("values"), py::arg("p"));
  m.def("summarize", &summarize, py::arg("per_system"),
        py::arg("probs") = std::vector<double>{0.1, 0.5, 0.9});
}

const Registrar bind_flow_registrar(20, [](py::module_& m) {
  bind_integrate(m);
  bind_scheme(m);
  bind_flow_options(m);
  bind_flow_structs(m);
  bind_flow_class(m);
  bind_observe(m);
  bind_ensemble(m);
});

}  // namespace

}  // namespace attnflow::py_bind
