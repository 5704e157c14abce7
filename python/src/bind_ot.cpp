// Bindings of entropic and exact optimal transport (docs/math.md section 3): log-domain Sinkhorn
// with eps-scaling, divergences, barycentric maps, plans, network-simplex OT and W_p.
#include "attnflow/ot/divergence.hpp"
#include "attnflow/ot/exact_ot.hpp"
#include "attnflow/ot/ot.hpp"
#include "bind.hpp"

namespace attnflow::py_bind {

// bind.hpp: shared by every OT binding (and bind_ot_gradient.cpp).
SinkhornOptions sinkhorn_options(const char* ctx, const py::object& eps, double tol, int max_iterations,
                                 bool eps_scaling, double scaling, double eps_start, double overrelax) {
  if (eps.is_none())
    throw std::invalid_argument(std::string(ctx) +
                                ": eps = None, must be > 0 (in cost units; no default because it depends on "
                                "the cost scale)");
  SinkhornOptions o;
  o.eps = eps.cast<double>();
  o.tol = tol;
  o.max_iterations = max_iterations;
  o.eps_scaling = eps_scaling;
  o.scaling = scaling;
  o.eps_start = eps_start;
  o.overrelax = overrelax;
  return o;
}

namespace {

// POT's call shape sinkhorn(a, b, M, reg): two weight vectors (1-D, or empty for uniform) and
// an (n, m) cost matrix in the places of x, y, a (reg in b's place or as eps=).
bool is_pot_call(const py::object& x, const py::object& y, const py::object& a) {
  auto ndim = [](const py::object& o) {
    if (o.is_none()) return -1;
    const py::array arr = py::array::ensure(o);
    if (!arr) {
      PyErr_Clear();
      return -1;
    }
    return static_cast<int>(arr.ndim());
  };
  return ndim(x) == 1 && ndim(y) == 1 && ndim(a) == 2;
}

SinkhornResult pot_sinkhorn(const py::object& wa, const py::object& wb, const py::object& cost,
                            const py::object& reg, const py::object& eps, double tol,
                            int max_iterations, bool eps_scaling, double scaling,
                            double eps_start, double overrelax) {
  if (!reg.is_none() && !eps.is_none())
    throw std::invalid_argument("sinkhorn: reg (4th argument) and eps both given, must give one");
  const SinkhornOptions o = sinkhorn_options("sinkhorn", reg.is_none() ? eps : reg, tol, max_iterations,
                                             eps_scaling, scaling, eps_start, overrelax);
  const Vector a = vector_or_empty(wa, "a"), b = vector_or_empty(wb, "b");
  const TransportCost c = TransportCost::dense(matrix_or_empty(cost, "M"));
  py::gil_scoped_release release;
  return sinkhorn(a, b, c, o);
}

void bind_ot_types(py::module_& m) {
  py::enum_<CostType> ct(m, "CostType", "sqeuclidean | bilinear | dense");
  ct.value("sqeuclidean", CostType::sqeuclidean)
      .value("bilinear", CostType::bilinear)
      .value("dense", CostType::dense);
  accept_names(ct, [](const std::string& s) { return parse_cost_type(s); });
  m.def("parse_cost_type", &parse_cost_type, py::arg("name"), py::arg("context") = "ot");

  py::class_<TransportCost>(m, "TransportCost",
                            "A cost C (n, m), kept factored for point costs (never materialized)")
      .def_static("sqeuclidean", &TransportCost::sqeuclidean, py::arg("x"), py::arg("y"),
                  "C_ij = |x_i - y_j|^2; x (n, d), y (m, d)")
      .def_static(
          "bilinear",
          [](const Matrix& x, const Matrix& y, double beta, const py::object& q,
             const py::object& k) {
            return TransportCost::bilinear(x, y, beta, matrix_or_empty(q, "q"),
                                           matrix_or_empty(k, "k"));
          },
          py::arg("x"), py::arg("y"), py::arg("beta"), py::arg("q") = py::none(),
          py::arg("k") = py::none(),
          "C_ij = -beta <Q x_i, K y_j> (the attention affinity as a cost)")
      .def_static("dense", &TransportCost::dense, py::arg("c"), "a dense cost matrix (n, m)")
      .def("type", &TransportCost::type)
      .def("rows", &TransportCost::rows)
      .def("cols", &TransportCost::cols)
      .def("scale", &TransportCost::scale, "upper bound of max C - min C")
      .def("__call__", &TransportCost::operator(), py::arg("i"), py::arg("j"), "C_ij")
      .def("max_cost", &TransportCost::max_cost, release_gil())
      .def("to_dense", &TransportCost::to_dense, py::arg("max_entries") = kMaxPlanEntries,
           release_gil(), "(n, m) dense matrix (refused above max_entries)");
}

void bind_results(py::module_& m) {
  py::class_<SinkhornOptions>(m, "SinkhornOptions")
      .def(py::init<>())
      .def_readwrite("eps", &SinkhornOptions::eps)
      .def_readwrite("tol", &SinkhornOptions::tol)
      .def_readwrite("max_iterations", &SinkhornOptions::max_iterations)
      .def_readwrite("eps_scaling", &SinkhornOptions::eps_scaling)
      .def_readwrite("scaling", &SinkhornOptions::scaling)
      .def_readwrite("eps_start", &SinkhornOptions::eps_start)
      .def_readwrite("overrelax", &SinkhornOptions::overrelax)
      .def_property(
          "on_iteration",
          [](const SinkhornOptions& o) { return static_cast<bool>(o.on_iteration); },
          [](SinkhornOptions& o, const py::object& f) {
            if (f.is_none()) {
              o.on_iteration = nullptr;
              return;
            }
            o.on_iteration = [fn = share_callable(py::reinterpret_borrow<py::function>(f))](
                                 int it, double eps, double err) {
              py::gil_scoped_acquire gil;
              (*fn)(it, eps, err);
            };
          },
          "set a callable(iterations, eps, marginal_error) called after every full iteration "
          "(reads: whether one is set)")
      .def("validate", &SinkhornOptions::validate);
  py::class_<SinkhornResult>(m, "SinkhornResult")
      .def_readonly("f", &SinkhornResult::f,
                    "(n) potential, cost units (unique up to f + t, g - t)")
      .def_readonly("g", &SinkhornResult::g, "(m) potential")
      .def_readonly("eps", &SinkhornResult::eps)
      .def_readonly("cost", &SinkhornResult::cost, "<C, pi>")
      .def_readonly("objective", &SinkhornResult::objective, "<C, pi> + eps KL(pi | a x b)")
      .def_readonly("iterations", &SinkhornResult::iterations)
      .def_readonly("stages", &SinkhornResult::stages)
      .def_readonly("marginal_error", &SinkhornResult::marginal_error)
      .def_readonly("converged", &SinkhornResult::converged)
      .def_readonly("message", &SinkhornResult::message)
      .def_readonly("a", &SinkhornResult::a)
      .def_readonly("b", &SinkhornResult::b);
  py::class_<SinkhornDivergence>(m, "SinkhornDivergence")
      .def_readonly("value", &SinkhornDivergence::value)
      .def_readonly("ot_xy", &SinkhornDivergence::ot_xy)
      .def_readonly("ot_xx", &SinkhornDivergence::ot_xx)
      .def_readonly("ot_yy", &SinkhornDivergence::ot_yy)
      .def_readonly("converged", &SinkhornDivergence::converged)
      .def_readonly("iterations", &SinkhornDivergence::iterations)
      .def_readonly("message", &SinkhornDivergence::message);
  py::class_<PlanEntry>(m, "PlanEntry")
      .def_readonly("i", &PlanEntry::i)
      .def_readonly("j", &PlanEntry::j)
      .def_readonly("mass", &PlanEntry::mass);
  py::class_<ExactOtResult>(m, "ExactOtResult")
      .def_readonly("cost", &ExactOtResult::cost)
      .def_readonly("plan", &ExactOtResult::plan, "nonzero entries of pi, row-major order")
      .def_readonly("f", &ExactOtResult::f)
      .def_readonly("g", &ExactOtResult::g)
      .def_readonly("marginal_error", &ExactOtResult::marginal_error)
      .def_readonly("converged", &ExactOtResult::converged)
      .def_readonly("message", &ExactOtResult::message)
      .def_readonly("cost_quantum", &ExactOtResult::cost_quantum,
                    "costs are solved in multiples of this")
      .def_readonly("n", &ExactOtResult::n)
      .def_readonly("m", &ExactOtResult::m)
      .def("dense_plan", &ExactOtResult::dense_plan, "(n, m) plan");
  m.attr("kMaxPlanEntries") = kMaxPlanEntries;
  m.attr("kExactMaxPairs") = kExactMaxPairs;
}

// Overloads are tried in registration order: the typed ones (TransportCost, Measure) come
// first because the array form takes py::object arguments, which accept anything.
void bind_sinkhorn(py::module_& m) {
  m.def(
      "sinkhorn",
      [](const Vector& a, const Vector& b, const TransportCost& cost,
         const SinkhornOptions& options, const py::object& g_init) {
        const Vector g0 = vector_or_empty(g_init, "g_init");
        py::gil_scoped_release release;
        return sinkhorn(a, b, cost, options, g_init.is_none() ? nullptr : &g0);
      },
      py::arg("a"), py::arg("b"), py::arg("cost"), py::arg("options"),
      py::arg("g_init") = py::none(),
      "Sinkhorn for a TransportCost with weights a (n), b (m) (empty = uniform); g_init (m) "
      "warm-starts.");
  m.def("sinkhorn",
        py::overload_cast<const Measure&, const Measure&, const SinkhornOptions&>(&sinkhorn),
        py::arg("mu"), py::arg("nu"), py::arg("options"), release_gil(),
        "Sinkhorn between two Measures, squared Euclidean cost.");
  m.def(
      "sinkhorn",
      [](const py::object& x, const py::object& y, const py::object& a, const py::object& b,
         const py::object& eps_arg, double tol, int max_iterations, bool eps_scaling,
         double scaling, double eps_start, double overrelax, const py::object& reg) {
        // reg= is POT's keyword for eps.
        if (!reg.is_none() && !eps_arg.is_none())
          throw std::invalid_argument("sinkhorn: reg and eps both given, must give one");
        const py::object eps = reg.is_none() ? eps_arg : reg;
        if (is_pot_call(x, y, a))
          return pot_sinkhorn(x, y, a, b, eps, tol, max_iterations, eps_scaling, scaling,
                              eps_start, overrelax);
        const SinkhornOptions o =
            sinkhorn_options("sinkhorn", eps, tol, max_iterations, eps_scaling, scaling, eps_start, overrelax);
        const Measure mu(points_arg(x, "sinkhorn", "x"), vector_or_empty(a, "a"),
                         "sinkhorn: mu (x, a)");
        const Measure nu(points_arg(y, "sinkhorn", "y"), vector_or_empty(b, "b"),
                         "sinkhorn: nu (y, b)");
        py::gil_scoped_release release;
        return sinkhorn(mu, nu, o);
      },
      py::arg("x"), py::arg("y"), py::arg("a") = py::none(), py::arg("b") = py::none(),
      SINKHORN_OPTION_ARGS, py::arg("reg") = py::none(),
      "Entropic OT between mu = (x (n, d), a (n)) and nu = (y (m, d), b (m)) (uniform weights "
      "when None) for C_ij = |x_i - y_j|^2: min <C, pi> + eps KL(pi | a x b). Returns "
      "SinkhornResult (cost, objective, converged, iterations, marginal_error, f (n), g (m)).\n"
      "POT's call shape sinkhorn(a, b, M, reg) also works: a (n), b (m) weights (empty = "
      "uniform), M (n, m) a cost matrix, reg = eps (same meaning as POT's reg; reg= is "
      "accepted as a keyword for eps in both forms). Difference: "
      "POT's ot.sinkhorn returns the plan; this returns the SinkhornResult (plan: "
      "transport_plan(TransportCost.dense(M), r); POT's ot.sinkhorn2 value: r.cost or "
      "sinkhorn2(a, b, M, reg)). Two 1-D arrays without a cost matrix are weights, not "
      "points: ValueError.");
  m.def("sinkhorn_divergence", &sinkhorn_divergence, py::arg("mu"), py::arg("nu"),
        py::arg("options"), release_gil());
  m.def(
      "sinkhorn_divergence",
      [](const py::object& x, const py::object& y, const py::object& a, const py::object& b,
         const py::object& eps, double tol, int max_iterations, bool eps_scaling, double scaling,
         double eps_start, double overrelax) {
        const SinkhornOptions o =
            sinkhorn_options("sinkhorn", eps, tol, max_iterations, eps_scaling, scaling, eps_start, overrelax);
        const Measure mu(points_arg(x, "sinkhorn_divergence", "x"), vector_or_empty(a, "a"),
                         "sinkhorn_divergence: mu (x, a)");
        const Measure nu(points_arg(y, "sinkhorn_divergence", "y"), vector_or_empty(b, "b"),
                         "sinkhorn_divergence: nu (y, b)");
        py::gil_scoped_release release;
        return sinkhorn_divergence(mu, nu, o);
      },
      py::arg("x"), py::arg("y"), py::arg("a") = py::none(), py::arg("b") = py::none(),
      SINKHORN_OPTION_ARGS,
      "Debiased Sinkhorn divergence S = OT_eps(mu, nu) - OT_eps(mu, mu)/2 - OT_eps(nu, nu)/2 for "
      "C_ij = |x_i - y_j|^2, where OT_eps is the ENTROPIC OBJECTIVE min <C, pi> + eps KL(pi | a x b) "
      "(Feydy et al. 2019, as GeomLoss does; GeomLoss's p = 2 cost is |x - y|^2 / 2, so its "
      "value at blur = sqrt(eps / 2) is half of this one): S >= 0, S = 0 iff mu = nu. POT's empirical_sinkhorn_divergence "
      "debiases the TRANSPORT COST <C, pi_eps> of the entropic plans instead (no KL term, no "
      "positivity guarantee; clipped at 0), so its values differ from these by O(eps). The self-terms "
      "OT_eps(mu, mu), OT_eps(nu, nu) are solved with the symmetric (averaged) update. Returns "
      "SinkhornDivergence (value, ot_xy, ot_xx, ot_yy, converged, iterations, message).");
  m.def("barycentric_map", &barycentric_map, py::arg("cost"), py::arg("solution"),
        py::arg("targets"), release_gil(),
        "T(x_i) = sum_j pi_ij targets_j / a_i: (n, p) for targets (m, p)");
  m.def("transport_plan", &transport_plan, py::arg("cost"), py::arg("solution"),
        py::arg("max_entries") = kMaxPlanEntries, release_gil(), "dense plan pi (n, m)");
}

void bind_exact(py::module_& m) {
  m.def(
      "exact_ot",
      [](const Vector& a, const Vector& b, const Matrix& cost) {
        py::gil_scoped_release release;
        return exact_ot(a, b, cost);
      },
      py::arg("a"), py::arg("b"), py::arg("cost"),
      "Exact OT by network simplex: a (n), b (m) (empty = uniform), cost (n, m) -> ExactOtResult");
  m.def(
      "wasserstein",
      [](const Measure& mu, const Measure& nu, int p) { return wasserstein(mu, nu, p); },
      py::arg("mu"), py::arg("nu"), py::arg("p") = 2, release_gil(), "W_p(mu, nu), p = 1 or 2");
  m.def(
      "wasserstein",
      [](const py::object& x, const py::object& y, int p, const py::object& a, const py::object& b) {
        const Measure mu(points_arg(x, "wasserstein", "x"), vector_or_empty(a, "a"),
                         "wasserstein: mu (x, a)");
        const Measure nu(points_arg(y, "wasserstein", "y"), vector_or_empty(b, "b"),
                         "wasserstein: nu (y, b)");
        py::gil_scoped_release release;
        return wasserstein(mu, nu, p);
      },
      py::arg("x"), py::arg("y"), py::arg("p") = 2, py::arg("a") = py::none(),
      py::arg("b") = py::none(), "W_p between point clouds x (n, d), y (m, d), p = 1 or 2. Difference from POT: "
      "POT's ot.emd2(a, b, M) with M = ot.dist(x, y) (squared Euclidean) is W_2 squared; "
      "emd2(a, b, M) here has POT's meaning. Two 1-D arrays are weights, not points: "
      "ValueError.");
}

const Registrar bind_ot_registrar(10, [](py::module_& m) {
  bind_ot_types(m);
  bind_results(m);
  bind_sinkhorn(m);
  bind_exact(m);
});

}  // namespace

}  // namespace attnflow::py_bind
