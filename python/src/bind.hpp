// Shared helpers for the pybind11 module _attnflow: a registry so that each library module
// has its own bind_<module>.cpp (added to the build only when that module exists), and
// argument helpers that keep float64 C-order NumPy arrays zero-copy.
//
// Conventions: C++ names are kept; arrays are (n, d) row-major float64; float32 (and other
// non-float64 float) and complex arrays are refused for every binding (guard_arguments);
// non-contiguous and integer arrays are converted (one copy); std::invalid_argument arrives in Python as
// ValueError with the same text (pybind11's built-in translation); the GIL is released while
// the library computes.
#pragma once

#include <pybind11/eigen.h>
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <typeinfo>

#include "attnflow/base/types.hpp"

namespace attnflow::py_bind {

namespace py = pybind11;

// Registers a binder; `order` fixes the order in which binders run (classes used by later
// binders must be registered first: core = 0, capabilities 10-60, runner 90).
struct Registrar {
  Registrar(int order, std::function<void(py::module_&)> bind);
};
void bind_all(py::module_& m);

// Releases the GIL for the computation of a bound function (arguments are converted before,
// results after, with the GIL held).
using release_gil = py::call_guard<py::gil_scoped_release>;

// An optional array argument (None allowed) viewed as Eigen::Ref without copying when it is
// float64 and C-contiguous; otherwise converted once and the copy is owned here. Keep the
// object alive while the Ref is used (the Ref may point into it).
// float32 (and other non-float64 floating) arrays are refused with a TypeError naming the
// argument: attnflow computes in float64 and never promotes silently.
void refuse_lossy_dtype(const py::handle& obj, const char* name);
// The TypeError/ValueError for an argument that is not an array of the expected dimension,
// naming the argument, what was given (shape and dtype, or type) and the rule.
[[noreturn]] void throw_not_array(const py::handle& obj, const char* name, int ndim);

template <typename RefT>
class OptionalRef {
 public:
  OptionalRef(const py::object& obj, const char* name) {
    if (obj.is_none()) return;
    refuse_lossy_dtype(obj, name);
    if (!caster_.load(obj, true)) throw_not_array(obj, name, RefT::IsVectorAtCompileTime ? 1 : 2);
    present_ = true;
  }
  bool present() const { return present_; }
  RefT get() { return py::detail::cast_op<RefT>(caster_); }

 private:
  py::detail::make_caster<RefT> caster_;
  bool present_ = false;
};

// A required (n, d) points argument of `ctx` as an owning Matrix: refuses float32 and 1-D
// arrays (a 1-D array where points are expected is almost always a weight vector) with a
// ValueError that says so.
Matrix points_arg(const py::object& obj, const char* ctx, const char* name);

// The optional array as an owning Matrix / Vector (empty when None).
Matrix matrix_or_empty(const py::object& obj, const char* name);
Vector vector_or_empty(const py::object& obj, const char* name);
// Throws the invalid_argument for a negative shape.
[[noreturn]] void throw_shape(const char* ctx, Index rows, Index cols);

}  // namespace attnflow::py_bind
namespace attnflow {
struct SinkhornOptions;
}  // namespace attnflow
namespace attnflow::py_bind {

// SinkhornOptions (ot.hpp) from the keyword arguments every OT binding takes
// (SINKHORN_OPTION_ARGS); ctx names the call in the error for eps = None.
SinkhornOptions sinkhorn_options(const char* ctx, const py::object& eps, double tol, int max_iterations,
                                 bool eps_scaling, double scaling, double eps_start, double overrelax);

// Those keyword arguments, with the library's defaults (ot.hpp, sinkhorn.hpp), never restated.
#define SINKHORN_OPTION_ARGS                                                            \
  py::arg("eps") = py::none(), py::arg("tol") = SinkhornOptions{}.tol, py::kw_only(),   \
  py::arg("max_iterations") = SinkhornOptions{}.max_iterations,                         \
  py::arg("eps_scaling") = SinkhornOptions{}.eps_scaling,                               \
  py::arg("scaling") = SinkhornOptions{}.scaling,                                       \
  py::arg("eps_start") = SinkhornOptions{}.eps_start,                                   \
  py::arg("overrelax") = SinkhornOptions{}.overrelax

}  // namespace attnflow::py_bind

namespace attnflow::py_bind {

// Registers the string -> enum conversion used by accept_names (dtype_guard.cpp): a str given
// for the enum is parsed by the enum's constructor, and a bad name raises the parser's
// ValueError instead of pybind11's overload signature dump.
void accept_strings_strictly(const std::type_info& enum_type);

// Lets a bound enum be given as its name: FieldKind("sa") and, implicitly, any argument or
// attribute of that enum type accepts "sa" (parsed by the library's parse_* function, so an
// unknown name is the library's ValueError "... must be one of ...", in constructors and
// function arguments too).
template <typename Enum, typename Parse>
void accept_names(py::enum_<Enum>& e, Parse parse) {
  e.def(py::init([parse](const std::string& name) { return parse(name); }), py::arg("name"));
  accept_strings_strictly(typeid(Enum));
}

// Run once after all binders (dtype_guard.cpp): every public function, method, constructor and
// property setter of the module refuses float arrays other than float64 (the TypeError of
// refuse_lossy_dtype, naming the argument) and complex input (ValueError), before pybind11's
// casters could convert them silently.
void guard_arguments(py::module_& m);
// The same check for a value a Python callback returned (converted to a Matrix by the caller).
void check_returned_array(const py::handle& value, const char* where, const char* name);

}  // namespace attnflow::py_bind

namespace attnflow::py_bind {

// A Python callable held by C++ std::function copies: the library may copy a callback while
// the GIL is released, so copies share one reference (an atomic shared_ptr count, not the
// Python refcount), and the last owner drops it with the GIL held. Calls acquire the GIL.
inline std::shared_ptr<py::function> share_callable(py::function f) {
  return std::shared_ptr<py::function>(new py::function(std::move(f)), [](py::function* p) {
    py::gil_scoped_acquire gil;
    delete p;
  });
}

}  // namespace attnflow::py_bind
