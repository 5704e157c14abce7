// Bindings of the core: measures, the seeded generator and samplers, threads, the streaming
// kernel lse_reduce, normalizations and attention (docs/math.md sections 0-2), .npy io.
#include <fmt/format.h>

#include "attnflow/attention/attention.hpp"
#include "attnflow/io/csv.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "attnflow/measure/measure.hpp"
#include "attnflow/attention/normalization.hpp"
#include "attnflow/io/npy.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"
#include "attnflow/base/rng.hpp"
#include "attnflow/measure/sample.hpp"
#include "bind.hpp"

namespace attnflow::py_bind {

namespace {

void bind_measure(py::module_& m) {
  py::class_<Measure>(m, "Measure",
                      "Discrete probability measure mu = sum_i w_i delta_{x_i}: points (n, d), "
                      "weights (n) normalized to sum 1 (uniform when omitted).")
      .def(
          py::init([](const py::object& points, const py::object& weights, const std::string& name) {
            return Measure(points_arg(points, "Measure", "points"),
                           vector_or_empty(weights, "weights"), name);
          }),
          py::arg("points"), py::arg("weights") = py::none(), py::arg("name") = "measure")
      .def_property_readonly("points", &Measure::points,
                             py::return_value_policy::reference_internal,
                             "(n, d) read-only view of the points")
      .def_property_readonly("weights", &Measure::weights,
                             py::return_value_policy::reference_internal,
                             "(n) read-only view of the weights (sum 1)")
      .def_property_readonly("size", &Measure::size, "number of atoms n (= len(points))")
      .def_property_readonly("dim", &Measure::dim, "dimension d (= points.shape[1])")
      .def("__len__", &Measure::size)
      .def("log_weights", &Measure::log_weights, "(n) log w_i (-inf for zero weights)")
      .def("__repr__", [](const Measure& mu) {
        return fmt::format("Measure(n={}, d={})", mu.size(), mu.dim());
      });
  m.def("normalized_weights", &normalized_weights, py::arg("weights"), py::arg("n"),
        py::arg("name") = "weights",
        "Validates weights (n) for a measure of n points and returns them normalized to sum 1; "
        "an empty array means uniform.");
}

void bind_rng(py::module_& m) {
  py::class_<Rng>(m, "Rng",
                  "The project's seeded generator (xoshiro256** + SplitMix64, Box-Muller normals); "
                  "the same seed gives the same numbers as the C++ library and the CLI.")
      .def(py::init<std::uint64_t, std::uint64_t>(), py::arg("seed"), py::arg("stream") = 0)
      .def("next_u64", &Rng::next_u64)
      .def("uniform", &Rng::uniform, "uniform on [0, 1) with 53 random bits")
      .def("normal", &Rng::normal, "standard normal")
      .def(
          "normal_matrix",
          [](Rng& r, Index rows, Index cols) {
            if (rows < 0 || cols < 0) throw_shape("Rng.normal_matrix", rows, cols);
            Matrix a(rows, cols);
            r.fill_normal(a);
            return a;
          },
          py::arg("rows"), py::arg("cols"),
          "(rows, cols) i.i.d. standard normals, row by row (fill_normal)")
      .def("split", &Rng::split, py::arg("stream"), "independent generator for sub-stream `stream`")
      .def("seed", &Rng::seed)
      .def("stream", &Rng::stream);
  m.def("sample_sphere", &sample_sphere, py::arg("n"), py::arg("d"), py::arg("rng"),
        "(n, d) points uniform on the unit sphere S^{d-1}");
  m.def("sample_gaussian", &sample_gaussian, py::arg("n"), py::arg("d"), py::arg("rng"),
        py::arg("sigma") = 1.0, "(n, d) points from N(0, sigma^2 I_d)");
  m.def("equiangular", &equiangular, py::arg("n"), py::arg("d"), py::arg("rho0"),
        "(n, d) exactly equiangular configuration, pairwise cosines rho0 (needs d >= n + 1)");
  m.def(
      "set_num_threads",
      [](long long threads) {
        // 0 and negatives used to be ignored silently; the default is restored by
        // set_num_threads(num_threads()) saved before, as the tests do.
        if (threads < 1 || threads > 1024)
          throw_invalid("set_num_threads", "threads", threads, "in [1, 1024]");
        set_num_threads(static_cast<int>(threads));
      },
      py::arg("threads"), "threads for parallel loops, in [1, 1024]; results do not depend on it");
  m.def("num_threads", &num_threads);
  // The process-wide device beside the thread count (kernel_cuda.hpp, docs/usage/gpu.md).
  m.def(
      "set_device",
      [](const std::string& device, const std::string& precision) {
        set_device(parse_device(device, "set_device"), parse_precision(precision, "set_device"));
      },
      py::arg("device") = "cpu", py::arg("precision") = "float64",
      "device of every kernel reduction (attention, Sinkhorn, flows, ensembles): 'cpu' or 'cuda'; "
      "precision 'float64' or 'float32' (cuda only). Raises where cuda is not built or no GPU");
  m.def(
      "current_device",
      [] {
        const DeviceSetting d = current_device();
        return py::make_tuple(device_name(d.device), precision_name(d.precision));
      },
      "(device, precision) of the kernel reductions, e.g. ('cpu', 'float64')");
  m.def("cuda_compiled", &cuda_compiled, "this build has the CUDA backend");
  m.def("cuda_available", &cuda_available, "CUDA backend built and a GPU usable");
  m.def("cuda_device_description", &cuda_device_description);
}

void bind_kernel(py::module_& m) {
  m.def(
      "lse_reduce",
      [](const MatrixRef& u, const MatrixRef& v, const py::object& col, const py::object& vals) {
        // Zero-copy views for float64 C-order input; conversions happen with the GIL held.
        OptionalRef<VectorRef> c(col, "col");
        OptionalRef<MatrixRef> w(vals, "vals");
        Vector lse;
        Matrix out;
        {
          py::gil_scoped_release release;
          const Vector no_col;
          const Matrix no_vals(v.rows(), 0);
          lse_reduce(u, v, c.present() ? c.get() : VectorRef(no_col),
                     w.present() ? w.get() : MatrixRef(no_vals), lse, out);
        }
        return py::make_tuple(lse, out);
      },
      py::arg("u"), py::arg("v"), py::arg("col") = py::none(), py::arg("vals") = py::none(),
      "The streaming log-sum-exp kernel. u (n, k), v (m, k), col (m) or None, vals (m, p) or "
      "None. s_ij = <u_i, v_j> + col_j; returns (lse (n), out (n, p)) with lse_i = log sum_j "
      "exp(s_ij) and out_i = sum_j exp(s_ij - lse_i) vals_j (p = 0 when vals is None).");
  // Test hook: the address a float64 array argument is seen at in C++ (equals the NumPy data
  // pointer when no copy was made). Used by the zero-copy test.
  m.def(
      "_ref_address", [](const MatrixRef& a) { return reinterpret_cast<std::uintptr_t>(a.data()); },
      py::arg("a"));
}

const Registrar bind_core_registrar(0, [](py::module_& m) {
  bind_measure(m);
  bind_rng(m);
  bind_kernel(m);
  m.def("read_npy_matrix", &read_npy_matrix, py::arg("path"),
        "reads a .npy file (float64/float32, C order) as (n, d); 1-D as (n, 1)");
  m.def("read_npy_vector", &read_npy_vector, py::arg("path"), "reads a 1-D .npy (or (n, 1))");
  m.def("write_npy", py::overload_cast<const std::string&, const Matrix&>(&write_npy),
        py::arg("path"), py::arg("a"), "writes a 2-D float64 .npy atomically");
  py::class_<CsvTable>(m, "CsvTable", "a CSV matrix: header names and values (rows, cols)")
      .def_readonly("header", &CsvTable::header)
      .def_readonly("values", &CsvTable::values);
  m.def("read_csv", &read_csv, py::arg("path"), "CSV of numbers with an optional header line");
  m.def("write_csv", &write_csv, py::arg("path"), py::arg("values"),
        py::arg("header") = std::vector<std::string>{},
        "writes values (rows, cols) with 17 significant digits (round-trips), atomically");
});
}  // namespace

}  // namespace attnflow::py_bind
