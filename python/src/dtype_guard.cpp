// One argument policy for every binding of the module (run once, after all binders):
//
// - float arrays other than float64 (float32, float16, longdouble) are refused with the
//   TypeError the array entry points give ("x: dtype = float32, must be float64 ..."), and
//   complex arrays / complex scalars with a ValueError ("f: x has complex dtype complex128,
//   must be real ..."), before pybind11 converts anything. pybind11's Eigen caster would
//   otherwise convert float32 (and drop imaginary parts) silently for every function, method,
//   constructor and field taking an Eigen matrix; checking here, at the dispatcher, covers
//   them all, including bindings added later, without a per-binding call.
// - an enum given as a string is parsed by the enum's own constructor (the library's parse_*)
//   and a bad name raises that ValueError ("... must be one of ..."), where pybind11's
//   implicitly_convertible would swallow it and print the overload signatures.
//
// How: every pybind11 function record reachable from the module (functions, methods,
// constructors, static methods, property setters) gets its `impl` replaced by guarded_impl,
// which checks the call's arguments by name and then calls the original impl.
#include <fmt/format.h>

#include <string>
#include <typeinfo>
#include <unordered_map>

#include "bind.hpp"

namespace attnflow::py_bind {

namespace {

using Impl = py::handle (*)(py::detail::function_call&);

struct Guarded {
  Impl impl;
  std::string where;   // "attention", "Flow.step", "Measure()", "FlowOptions.W"
  std::string setter;  // a property setter: the field's name (its value argument's name)
};

// Filled at import (with the GIL held), read-only afterwards.
std::unordered_map<const py::detail::function_record*, Guarded>& guarded() {
  static auto* table = new std::unordered_map<const py::detail::function_record*, Guarded>();
  return *table;
}

const py::object& numpy_attr(const char* name) {
  // Leaked on purpose: destroyed after the interpreter would be undefined.
  static auto* numpy = new py::object(py::module_::import("numpy"));
  static std::unordered_map<std::string, py::object*> cache;
  auto it = cache.find(name);
  if (it == cache.end()) it = cache.emplace(name, new py::object(numpy->attr(name))).first;
  return *it->second;
}

[[noreturn]] void throw_complex(const std::string& where, const std::string& name,
                                const std::string& dtype) {
  throw py::value_error(fmt::format(
      "{}: {} has complex dtype {}, must be real (the imaginary part would be dropped; pass "
      ".real explicitly)",
      where, name, dtype));
}

void check_array(const py::handle& arr, const std::string& where, const std::string& name) {
  const py::dtype dt = py::reinterpret_borrow<py::array>(arr).dtype();
  if (dt.kind() == 'c') throw_complex(where, name, dt.attr("name").cast<std::string>());
  refuse_lossy_dtype(arr, name.c_str());  // the array entry points' TypeError
}

// Arrays, array-likes (__array__: torch tensors, pandas), NumPy / Python complex scalars,
// and lists / tuples of them (heads, batches), named name, name[i], name[i][j].
void check_value(const py::handle& v, const std::string& where, const std::string& name,
                 int depth) {
  PyObject* o = v.ptr();
  if (o == nullptr || o == Py_None || PyFloat_CheckExact(o) || PyLong_CheckExact(o) ||
      PyUnicode_Check(o) || PyBool_Check(o))
    return;
  if (PyList_Check(o) || PyTuple_Check(o)) {
    if (depth >= 3) return;
    const auto n = static_cast<size_t>(PySequence_Fast_GET_SIZE(o));
    for (size_t i = 0; i < n; ++i) {
      PyObject* item = PySequence_Fast_GET_ITEM(o, static_cast<py::ssize_t>(i));
      if (PyFloat_CheckExact(item) || PyLong_CheckExact(item)) continue;  // rows of numbers
      check_value(item, where, fmt::format("{}[{}]", name, i), depth + 1);
    }
    return;
  }
  if (PyComplex_Check(o)) throw_complex(where, name, "complex");
  // Objects of the module's own classes (Measure, options, ...): nothing to convert.
  if (py::detail::get_type_info(Py_TYPE(o)) != nullptr) return;
  if (py::isinstance<py::array>(v)) {
    check_array(v, where, name);
    return;
  }
  if (py::isinstance(v, numpy_attr("generic"))) {  // a NumPy scalar: exact unless complex
    if (py::isinstance(v, numpy_attr("complexfloating")))
      throw_complex(where, name, std::string(py::str(v.get_type().attr("__name__"))));
    return;
  }
  if (PyObject_HasAttrString(o, "__array__") && !PyType_Check(o)) {
    py::object arr;
    try {
      arr = numpy_attr("asarray")(v);
    } catch (py::error_already_set&) {
      return;  // not convertible: the binding's own caster says so
    }
    check_array(arr, where, name);
  }
}

py::handle guarded_impl(py::detail::function_call& call) {
  const auto& rec = call.func;
  const Guarded& g = guarded().at(&rec);
  // Methods and constructors: argument 0 is self (for new-style constructors, a placeholder).
  const size_t first = rec.is_method || rec.is_constructor ? 1 : 0;
  for (size_t i = first; i < call.args.size(); ++i) {
    std::string name;
    if (!g.setter.empty())
      name = g.setter;
    else if (i < rec.args.size() && rec.args[i].name != nullptr)
      name = rec.args[i].name;
    else
      name = fmt::format("argument {}", i + 1 - first);
    check_value(call.args[i], g.where, name, 0);
  }
  return g.impl(call);
}

py::detail::function_record* record_of(const py::handle& f) {
  const py::handle h = py::detail::get_function(f);
  if (!h || !PyCFunction_Check(h.ptr())) return nullptr;
  PyObject* self = PyCFunction_GET_SELF(h.ptr());
  if (self == nullptr || !py::isinstance<py::capsule>(self)) return nullptr;
  const auto cap = py::reinterpret_borrow<py::capsule>(self);
  if (!py::detail::is_function_record_capsule(cap)) return nullptr;
  return cap.get_pointer<py::detail::function_record>();
}

void guard(const py::handle& f, const std::string& where, const std::string& setter = {}) {
  for (auto* r = record_of(f); r != nullptr; r = r->next) {
    if (guarded().count(r) != 0 || r->impl == nullptr) continue;
    guarded().emplace(r, Guarded{r->impl, where, setter});
    r->impl = &guarded_impl;
  }
}

void guard_class(const py::handle& cls, const std::string& cname) {
  const py::dict members = py::reinterpret_borrow<py::dict>(
      py::handle(reinterpret_cast<PyTypeObject*>(cls.ptr())->tp_dict));
  for (const auto& item : members) {
    const std::string name = py::str(item.first);
    const py::handle value = item.second;
    if (name == "__init__") {
      guard(value, cname + "()");
    } else if (py::isinstance<py::staticmethod>(value)) {
      guard(value.attr("__func__"), cname + "." + name);
    } else if (PyObject_HasAttrString(value.ptr(), "fset") && !PyType_Check(value.ptr())) {
      const py::object fset = value.attr("fset");
      if (!fset.is_none()) guard(fset, cname + "." + name, name);
    } else {
      guard(value, cname + "." + name);
    }
  }
}

PyObject* enum_from_string(PyObject* obj, PyTypeObject* type) {
  if (!PyUnicode_Check(obj)) return nullptr;
  PyObject* result = PyObject_CallFunctionObjArgs(reinterpret_cast<PyObject*>(type), obj, nullptr);
  if (result == nullptr) throw py::error_already_set();  // the parser's "must be one of"
  return result;
}

}  // namespace

void accept_strings_strictly(const std::type_info& enum_type) {
  auto* tinfo = py::detail::get_type_info(enum_type);
  if (tinfo == nullptr) py::pybind11_fail("accept_names: enum type not registered");
  tinfo->implicit_conversions.emplace_back(&enum_from_string);
}

void guard_arguments(py::module_& m) {
  const py::dict members = m.attr("__dict__");
  for (const auto& item : members) {
    const std::string name = py::str(item.first);
    if (name.empty() || name[0] == '_') continue;  // private test hooks keep pybind's rules
    if (PyType_Check(item.second.ptr()))
      guard_class(item.second, name);
    else
      guard(item.second, name);
  }
}

void check_returned_array(const py::handle& value, const char* where, const char* name) {
  check_value(value, where, name, 0);
}

}  // namespace attnflow::py_bind
