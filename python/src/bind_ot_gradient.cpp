// Bindings of the envelope-theorem gradients of entropic OT values (ot_gradient.hpp), used by
// attnflow.torch.ot_cost and attnflow.torch.sinkhorn_divergence.
#include "attnflow/attention/attention_grad.hpp"
#include "attnflow/ot/ot_gradient.hpp"
#include "bind.hpp"

namespace attnflow::py_bind {

namespace {

using GradientFn = OtGradient (*)(const Measure&, const Measure&, const SinkhornOptions&);

py::dict call(GradientFn fn, const char* ctx, const MatrixRef& x, const MatrixRef& y,
              const py::object& a, const py::object& b, const py::object& eps, double tol,
              int max_iterations, bool eps_scaling, double scaling, double eps_start,
              double overrelax) {
  const SinkhornOptions o =
      sinkhorn_options(ctx, eps, tol, max_iterations, eps_scaling, scaling, eps_start, overrelax);
  const Vector wa = vector_or_empty(a, "a"), wb = vector_or_empty(b, "b");
  const Measure mu(Matrix(x), wa, std::string(ctx) + ": mu (x, a)");
  const Measure nu(Matrix(y), wb, std::string(ctx) + ": nu (y, b)");
  OtGradient g;
  {
    py::gil_scoped_release release;
    g = fn(mu, nu, o);
  }
  py::dict d;
  d["value"] = g.value;
  d["dx"] = g.dx;
  d["dy"] = g.dy;
  // With respect to the weights as given (their normalization to sum 1 included).
  d["da"] = a.is_none() ? py::none() : py::cast(normalized_weights_gradient(wa, g.da));
  d["db"] = b.is_none() ? py::none() : py::cast(normalized_weights_gradient(wb, g.db));
  d["converged"] = g.converged;
  d["iterations"] = g.iterations;
  d["message"] = g.message;
  return d;
}

#define OT_GRADIENT_ARGS \
  py::arg("x"), py::arg("y"), py::arg("a") = py::none(), py::arg("b") = py::none(), SINKHORN_OPTION_ARGS

const Registrar bind_ot_gradient_registrar(11, [](py::module_& m) {
  m.def(
      "ot_cost_gradient",
      [](const MatrixRef& x, const MatrixRef& y, const py::object& a, const py::object& b,
         const py::object& eps, double tol, int max_iterations, bool eps_scaling, double scaling,
         double eps_start, double overrelax) {
        return call(&ot_cost_gradient, "ot_cost_gradient", x, y, a, b, eps, tol, max_iterations,
                    eps_scaling, scaling, eps_start, overrelax);
      },
      OT_GRADIENT_ARGS,
      "OT_eps(mu, nu) for |x - y|^2 (= sinkhorn(x, y, a, b, eps=...).objective) and its "
      "envelope-theorem gradient: dict value, dx (n, d), dy (m, d), da, db (with respect to the "
      "weights as given; None when not given), converged, iterations, message.");
  m.def(
      "sinkhorn_divergence_gradient",
      [](const MatrixRef& x, const MatrixRef& y, const py::object& a, const py::object& b,
         const py::object& eps, double tol, int max_iterations, bool eps_scaling, double scaling,
         double eps_start, double overrelax) {
        return call(&sinkhorn_divergence_gradient, "sinkhorn_divergence_gradient", x, y, a, b,
                    eps, tol, max_iterations, eps_scaling, scaling, eps_start, overrelax);
      },
      OT_GRADIENT_ARGS,
      "The Sinkhorn divergence (= sinkhorn_divergence(...).value) and its envelope-theorem "
      "gradient: dict value, dx, dy, da, db, converged, iterations, message.");
});

}  // namespace

}  // namespace attnflow::py_bind
