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
      "float64 (n, d) row-major; float32 or non-contiguous input is converted once.";
  m.attr("__version__") = ATTNFLOW_VERSION;
  attnflow::py_bind::bind_all(m);
}
