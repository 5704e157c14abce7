// The _attnflow extension module: runs every registered binder (one per library module).
#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>
#include <utility>
#include <vector>

#include "bind.hpp"

#ifndef ATTNFLOW_VERSION
#define ATTNFLOW_VERSION "0.0.0"
#endif

namespace attnflow::py_bind {

namespace {
struct Entry {
  int order;
  std::function<void(py::module_&)> bind;
};
std::vector<Entry>& registry() {
  static std::vector<Entry> entries;  // function-local: safe from static-init order
  return entries;
}
}  // namespace

Registrar::Registrar(int order, std::function<void(py::module_&)> bind) {
  registry().push_back({order, std::move(bind)});
}

void bind_all(py::module_& m) {
  auto entries = registry();
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return a.order < b.order; });
  for (auto& e : entries) e.bind(m);
}

void refuse_lossy_dtype(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) return;
  const py::dtype dt = py::reinterpret_borrow<py::array>(obj).dtype();
  if (dt.kind() == 'f' && dt.itemsize() != 8)
    throw py::type_error(fmt::format(
        "{}: dtype = {}, must be float64 (attnflow computes in float64 and does not convert "
        "silently: pass {}.astype(numpy.float64))",
        name, dt.attr("name").cast<std::string>(), name));
}

[[noreturn]] void throw_not_array(const py::handle& obj, const char* name, int ndim) {
  const char* want = ndim == 1 ? "a 1-D float array (n)" : "a 2-D float array (n, d)";
  if (py::isinstance<py::array>(obj)) {
    const auto arr = py::reinterpret_borrow<py::array>(obj);
    std::string shape = "(";
    for (py::ssize_t i = 0; i < arr.ndim(); ++i)
      shape += std::to_string(arr.shape(i)) + (arr.ndim() == 1 ? "," : i + 1 < arr.ndim() ? ", " : "");
    shape += ")";
    throw py::value_error(fmt::format("{}: array of shape {} and dtype {}, must be {}", name,
                                      shape, arr.dtype().attr("name").cast<std::string>(), want));
  }
  throw py::type_error(fmt::format("{}: {} given, must be {} of numbers", name,
                                   std::string(py::str(obj.get_type())), want));
}

Matrix points_arg(const py::object& obj, const char* ctx, const char* name) {
  refuse_lossy_dtype(obj, name);
  if (py::isinstance<py::array>(obj)) {
    const auto arr = py::reinterpret_borrow<py::array>(obj);
    if (arr.ndim() == 1)
      throw py::value_error(fmt::format(
          "{}: {} has shape ({},), must be (n, d) points: a 1-D array here is a weight vector, "
          "not points (weights go in a=/b= or wx=/wy=; POT-style calls take weights and a cost "
          "matrix: sinkhorn(a, b, M, reg), emd2(a, b, M); for 1-D points pass {}[:, None])",
          ctx, name, arr.shape(0), name));
  }
  OptionalRef<MatrixRef> ref(obj, name);
  if (!ref.present()) throw_not_array(obj, name, 2);
  return Matrix(ref.get());
}

Matrix matrix_or_empty(const py::object& obj, const char* name) {
  if (obj.is_none()) return Matrix();
  OptionalRef<MatrixRef> ref(obj, name);
  return Matrix(ref.get());
}

Vector vector_or_empty(const py::object& obj, const char* name) {
  if (obj.is_none()) return Vector();
  OptionalRef<VectorRef> ref(obj, name);
  return Vector(ref.get());
}

void throw_shape(const char* ctx, Index rows, Index cols) {
  throw std::invalid_argument(fmt::format("{}: shape = ({}, {}), must be >= 0", ctx, rows, cols));
}

}  // namespace attnflow::py_bind

PYBIND11_MODULE(_attnflow, m) {
  m.doc() =
      "attnflow: attention as an operator on probability measures (C++ core). Arrays are "
      "float64 (n, d) row-major; float32 and complex input are refused, non-contiguous input is "
      "converted once.";
  m.attr("__version__") = ATTNFLOW_VERSION;
  attnflow::py_bind::bind_all(m);
  attnflow::py_bind::guard_arguments(m);
}
