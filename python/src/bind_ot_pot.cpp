// POT-shaped entry points: the call shapes and meanings of POT's ot.emd, ot.emd2
// and ot.sinkhorn2 on weights a (n), b (m) (empty = uniform) and a cost matrix M (n, m), so
// that code written for POT gives the same numbers. (sinkhorn(a, b, M, reg) is an overload of
// sinkhorn in bind_ot.cpp.)
#include "attnflow/ot/exact_ot.hpp"
#include "attnflow/ot/ot.hpp"
#include "bind.hpp"

namespace attnflow::py_bind {

namespace {

struct PotArgs {
  Vector a, b;
  Matrix m;
};

PotArgs pot_args(const py::object& a, const py::object& b, const py::object& m) {
  PotArgs p{vector_or_empty(a, "a"), vector_or_empty(b, "b"), Matrix()};
  refuse_lossy_dtype(m, "M");
  OptionalRef<MatrixRef> ref(m, "M");
  if (!ref.present()) throw_not_array(m, "M", 2);
  p.m = Matrix(ref.get());
  return p;
}

const Registrar bind_ot_pot_registrar(12, [](py::module_& m) {
  m.def(
      "emd",
      [](const py::object& a, const py::object& b, const py::object& cost) {
        const PotArgs p = pot_args(a, b, cost);
        py::gil_scoped_release release;
        return exact_ot(p.a, p.b, p.m).dense_plan();
      },
      py::arg("a"), py::arg("b"), py::arg("M"),
      "POT's ot.emd(a, b, M): the exact optimal plan (n, m) for weights a (n), b (m) (empty = "
      "uniform; normalized to mass 1) and cost matrix M (n, m), by network simplex.");
  m.def(
      "emd2",
      [](const py::object& a, const py::object& b, const py::object& cost) {
        const PotArgs p = pot_args(a, b, cost);
        py::gil_scoped_release release;
        return exact_ot(p.a, p.b, p.m).cost;
      },
      py::arg("a"), py::arg("b"), py::arg("M"),
      "POT's ot.emd2(a, b, M): the exact OT cost <M, pi*>. With M the squared Euclidean "
      "distances (POT's ot.dist default) this is W_2 squared; wasserstein(x, y) returns W_2.");
  m.def(
      "sinkhorn2",
      [](const py::object& a, const py::object& b, const py::object& cost, double reg,
         double tol, int max_iterations) {
        const PotArgs p = pot_args(a, b, cost);
        SinkhornOptions o;
        o.eps = reg;
        o.tol = tol;
        o.max_iterations = max_iterations;
        py::gil_scoped_release release;
        return sinkhorn(p.a, p.b, TransportCost::dense(p.m), o).cost;
      },
      py::arg("a"), py::arg("b"), py::arg("M"), py::arg("reg"), py::kw_only(),
      py::arg("tol") = SinkhornOptions{}.tol, py::arg("max_iterations") = SinkhornOptions{}.max_iterations,
      "POT's ot.sinkhorn2(a, b, M, reg): <M, pi> for the entropic plan pi with eps = reg (the "
      "linear term, as POT returns; the entropic objective is sinkhorn(a, b, M, reg)"
      ".objective). Log-domain with eps-scaling, so small reg does not underflow.");
});

}  // namespace

}  // namespace attnflow::py_bind
