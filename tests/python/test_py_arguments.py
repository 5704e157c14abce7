"""One argument policy for every binding (python/src/dtype_guard.cpp), checked on every binding:
the callables are enumerated from the module itself (functions, methods, constructors, static
methods, property setters, with their pybind11 signatures), so a binding added later is
covered without editing this test.

- float32 arrays are refused with the array entry points' TypeError ("x: dtype = float32, must
  be float64 ...") and complex arrays with a ValueError, wherever an array can be passed
  (pybind11's Eigen caster used to convert both silently: float32 promoted, imaginary part
  dropped);
- an enum parameter or field given a bad string raises the CLI's ValueError ("... must be one
  of ..."), not pybind11's signature dump.
"""
import inspect
import re

import numpy as np
import pytest

import attnflow
from attnflow import _attnflow as ext

SIG = re.compile(r"^\s*(?:\d+\.\s*)?(\w+)\((.*)\)\s*->\s*(.*)$")


def split_top(s):
    out, depth, cur = [], 0, ""
    for ch in s:
        depth += ch in "[("
        depth -= ch in "])"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [p for p in out + [cur.strip()] if p]


def parameters(line):
    """[(name, type, has_default, keyword_only)] of one pybind11 signature line."""
    m = SIG.match(line)
    out, kw_only = [], False
    for p in split_top(m.group(2)):
        if p == "*":
            kw_only = True
            continue
        if p == "/":
            continue
        pm = re.match(r"^(\*{0,2}\w+)(?:\s*:\s*(.*?))?(\s*=\s*.*)?$", p, re.S)
        out.append((pm.group(1), (pm.group(2) or "object").strip(), pm.group(3) is not None,
                    kw_only))
    return out


def signature_lines(fn, name):
    doc = fn.__doc__ or ""
    lines = [l for l in doc.splitlines() if SIG.match(l) and SIG.match(l).group(1) == name]
    numbered = [l for l in lines if re.match(r"^\s*\d+\.", l)]
    return numbered or lines[:1]


def default_instance(cls):
    try:
        return cls()
    except Exception:  # no default constructor
        return None


def blank(cls):
    """An instance of cls that was never initialized: pybind11 refuses None for self before the
    call, and the argument check runs before self is converted."""
    return cls.__new__(cls)


def callables():
    """(label, kind, target, name, signature line) for every public binding: kind is
    'function' (target called with the arguments), 'method' (target is (class, function)),
    'init' (target is the class) or 'setter' (target is (class, property))."""
    out = []
    for name in sorted(n for n in dir(ext) if not n.startswith("_")):
        obj = getattr(ext, name)
        if inspect.isclass(obj) and obj.__name__ != name and getattr(ext, obj.__name__, None) is obj:
            continue  # another name of a class enumerated under its own (FlowHead = Head)
        if inspect.isclass(obj):
            for attr, val in vars(obj).items():
                if attr == "__init__":
                    for line in signature_lines(val, "__init__"):
                        out.append((f"{name}()", "init", obj, "__init__", line))
                elif attr.startswith("_"):
                    continue
                elif isinstance(val, staticmethod):
                    for line in signature_lines(val.__func__, attr):
                        out.append((f"{name}.{attr}", "function", val.__func__, attr, line))
                elif isinstance(val, property):
                    if val.fset is not None:
                        doc = (val.fget.__doc__ or "").splitlines()[0] if val.fget else ""
                        m = re.search(r"\) -> (.*)", doc)
                        typ = m.group(1).strip() if m else "object"
                        out.append((f"{name}.{attr}", "setter", (obj, val), attr,
                                    f"{attr}(self, {attr}: {typ}) -> None"))
                elif callable(val):
                    fn = getattr(obj, attr)
                    for line in signature_lines(fn, attr):
                        out.append((f"{name}.{attr}", "method", (obj, fn), attr, line))
        elif callable(obj):
            for line in signature_lines(obj, name):
                out.append((name, "function", obj, name, line))
    return out


ALL = callables()


def is_array_type(t):
    return "numpy.ndarray" in t or t == "object"


def bad_array(t, dtype):
    """An array of dtype where a parameter of type t is expected (a list for List[...])."""
    one_d = re.search(r"numpy\.\w+\[m, 1\]", t) is not None
    arr = (np.arange(3.0) if one_d else np.arange(6.0).reshape(3, 2)).astype(dtype)
    if dtype == np.complex128:
        arr = arr * (1 + 1j)
    return [arr] if t.startswith("List[") else arr


def call(kind, target, name, params, values):
    """Calls the binding with params (from its signature; self excluded) set to values: by
    keyword where the parameter is named, by position for pybind11's unnamed argN."""
    pos = [values[p[0]] for p in params if re.fullmatch(r"arg\d+", p[0])]
    kw = {p[0]: values[p[0]] for p in params if not re.fullmatch(r"arg\d+", p[0])}
    if kind == "init":
        return target(*pos, **kw)
    if kind == "method":
        cls, fn = target
        return fn(values["self"] if "self" in values else blank(cls), *pos, **kw)
    if kind == "setter":
        cls, prop = target
        inst = default_instance(cls)
        if inst is not None:
            return setattr(inst, name, (pos + list(kw.values()))[0])
        return prop.fset(None, (pos + list(kw.values()))[0])
    return target(*pos, **kw)


def array_slots():
    """(label, kind, target, name, params, index) for every parameter that takes an array."""
    out = []
    for label, kind, target, name, line in ALL:
        params = parameters(line)
        if kind in ("method", "init", "setter") and params and params[0][0] == "self":
            params = params[1:]
        params = [p for p in params if not p[0].startswith("*")]
        for i, (pname, ptype, _, _) in enumerate(params):
            if is_array_type(ptype) and "Callable" not in ptype:
                out.append((label, kind, target, name, params, i))
    return out


SLOTS = array_slots()


def expected_name(kind, name, params, i):
    pname = params[i][0]
    if kind == "setter":
        return name
    if re.fullmatch(r"arg\d+", pname):
        return f"argument {i + 1}"
    return pname


def test_the_enumeration_finds_the_bindings_that_take_matrices():
    labels = {s[0] for s in SLOTS}
    # Bindings declared with Eigen matrix parameters (converted by pybind11's caster), which
    # are the ones the old per-entry-point check missed, and the array entry points.
    for must in ("lse_reduce", "TransportCost.dense", "Flow.advance", "PromptOperator()",
                 "attention", "sinkhorn", "Measure()", "Head.q", "advance"):
        assert any(l == must or l.startswith(must) for l in labels), must
    assert len(SLOTS) > 100, len(SLOTS)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_every_array_parameter_refuses_lossy_float(dtype):
    missed = []
    for label, kind, target, name, params, i in SLOTS:
        values = {p[0]: None for p in params}
        values[params[i][0]] = bad_array(params[i][1], dtype)
        arg = expected_name(kind, name, params, i)
        if params[i][1].startswith("List["):
            arg += "[0]"
        try:
            call(kind, target, name, params, values)
            missed.append(f"{label}({params[i][0]}): accepted")
        except TypeError as e:
            want = (f"{arg}: dtype = {np.dtype(dtype).name}, must be float64 (attnflow computes "
                    f"in float64 and does not convert silently: pass {arg}.astype(numpy.float64))")
            if str(e) != want:
                missed.append(f"{label}({params[i][0]}): {str(e)[:200]}")
        except Exception as e:  # noqa: BLE001
            missed.append(f"{label}({params[i][0]}): {type(e).__name__}: {str(e)[:200]}")
    assert not missed, "\n".join(missed)


def test_every_array_parameter_refuses_complex():
    missed = []
    for label, kind, target, name, params, i in SLOTS:
        values = {p[0]: None for p in params}
        values[params[i][0]] = bad_array(params[i][1], np.complex128)
        arg = expected_name(kind, name, params, i)
        try:
            call(kind, target, name, params, values)
            missed.append(f"{label}({params[i][0]}): accepted")
        except ValueError as e:
            if not re.match(rf"^{re.escape(label)}: {re.escape(arg)}(\[0\])? has complex dtype "
                            r"complex128, must be real", str(e)):
                missed.append(f"{label}({params[i][0]}): {str(e)[:200]}")
        except Exception as e:  # noqa: BLE001
            missed.append(f"{label}({params[i][0]}): {type(e).__name__}: {str(e)[:200]}")
    assert not missed, "\n".join(missed)


def test_float32_is_refused_end_to_end_where_pybind11_converted_silently():
    # Real calls (valid other arguments) of functions and methods bound with Eigen parameters.
    x = np.random.default_rng(0).standard_normal((6, 3))
    x32 = x.astype(np.float32)
    with pytest.raises(TypeError, match=r"^u: dtype = float32, must be float64 .*u\.astype\(numpy\.float64\)"):
        ext.lse_reduce(x32, x, None, None)
    flow = ext.Flow(ext.FlowOptions(), 6, 3)
    with pytest.raises(TypeError, match=r"^points: dtype = float32, must be float64"):
        flow.initial_state(x32)
    np.testing.assert_array_equal(flow.positions(flow.initial_state(x)),
                                  flow.positions(flow.initial_state(x.astype(np.float64))))
    opts = ext.FlowOptions()
    with pytest.raises(TypeError, match=r"^weights: dtype = float32, must be float64"):
        opts.weights = np.ones(3, dtype=np.float32)
    with pytest.raises(TypeError, match=r"^u: dtype = float32"):
        ext.PromptOperator(x32[:3, :3], x[:1, :3])
    with pytest.raises(TypeError, match=r"^q: dtype = float32"):
        ext.AttentionHead(x32[:2], x[:2])
    with pytest.raises(TypeError, match=r"^initial_points\[1\]: dtype = float32"):  # a list
        ext.Ensemble([ext.FlowOptions()] * 2, [x, x32], ext.IntegratorOptions())
    # Complex scalars and array-likes (torch tensors, via __array__) are covered too.
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"^x: dtype = float32, must be float64"):
        attnflow.attention(torch.tensor(x32))
    with pytest.raises(ValueError, match=r"^attention: beta has complex dtype complex, must be real"):
        attnflow.attention(x, beta=1j)
    # float64, int and non-contiguous input still work (int converts exactly).
    np.testing.assert_array_equal(attnflow.attention(np.asfortranarray(x)), attnflow.attention(x))
    xi = np.arange(12).reshape(6, 2)
    np.testing.assert_array_equal(attnflow.attention(xi), attnflow.attention(xi.astype(float)))


def test_a_python_field_returning_float32_is_refused():
    st = ext.IntegratorState()
    opts = ext.IntegratorOptions("rk4", 0.1)
    x = np.ones((2, 2))
    with pytest.raises(TypeError, match=r"^field\(t, x\): dtype = float32, must be float64"):
        ext.advance(lambda t, y: (-y).astype(np.float32), x, st, 0.2, opts)
    st = ext.IntegratorState()
    out = ext.advance(lambda t, y: -y, x, st, 0.2, opts)
    assert out.dtype == np.float64 and np.all(out < 1)


# --- enums given as strings -------------------------------------------------------------------

def enum_classes():
    return {n: getattr(ext, n) for n in dir(ext)
            if inspect.isclass(getattr(ext, n)) and hasattr(getattr(ext, n), "__members__")}


ENUMS = enum_classes()
ENUM_TYPE = re.compile(r"^attnflow\._attnflow\.(\w+)$")


# Classes without a default constructor that precede an enum parameter somewhere.
FACTORIES = {"IclData": lambda: ext.IclData(np.eye(2), 0.1, ext.TaskPrior.__members__[
    next(iter(ext.TaskPrior.__members__))], 1.0)}


def sample(ptype):
    """A valid value of a parameter type (for the parameters before an enum parameter)."""
    m = ENUM_TYPE.match(ptype)
    if m and m.group(1) in ENUMS:
        return next(iter(ENUMS[m.group(1)].__members__.values()))
    if m and m.group(1) in FACTORIES:
        return FACTORIES[m.group(1)]()
    if m:
        inst = default_instance(getattr(ext, m.group(1)))
        if inst is None:
            raise LookupError(ptype)
        return inst
    if ptype == "float":
        return 0.5
    if ptype == "int":
        return 1
    if ptype == "bool":
        return False
    if ptype == "str":
        return "x"
    if "numpy.ndarray" in ptype:
        return np.ones(2) if "[m, 1]" in ptype else np.ones((2, 2))
    if ptype.startswith(("Optional[", "object")):
        return None
    if ptype.startswith("List["):
        return []
    if ptype.startswith("Dict["):
        return {}
    raise LookupError(ptype)


def enum_slots():
    out = []
    for label, kind, target, name, line in ALL:
        params = parameters(line)
        if kind in ("method", "init", "setter") and params and params[0][0] == "self":
            params = params[1:]
        for i, (pname, ptype, _, _) in enumerate(params):
            m = ENUM_TYPE.match(ptype)
            if m and m.group(1) in ENUMS and not (kind == "init" and label[:-2] in ENUMS):
                out.append((label, kind, target, name, params, i, m.group(1)))
    return out


ENUM_SLOTS = enum_slots()


def test_the_enumeration_finds_the_option_constructors_and_fields():
    labels = {s[0] for s in ENUM_SLOTS}
    for must in ("IntegratorOptions()", "IntegratorOptions.method", "FlowOptions.kind",
                 "SchemeOptions.scheme", "IclData()"):
        assert must in labels, (must, sorted(labels))
    assert len(ENUM_SLOTS) > 15, len(ENUM_SLOTS)


def test_every_enum_parameter_and_field_gives_the_cli_message_for_a_bad_string():
    missed = []
    for label, kind, target, name, params, i, enum in ENUM_SLOTS:
        # The CLI's message is the parser's: the enum's own constructor from a string.
        with pytest.raises(ValueError) as parsed:
            ENUMS[enum]("no-such-name")
        want = str(parsed.value)
        assert "must be one of" in want, (enum, want)
        try:
            values = {p[0]: sample(p[1]) for p in params[:i]}
        except LookupError as e:
            missed.append(f"{label}: no sample value for {e}")
            continue
        values[params[i][0]] = "no-such-name"
        values.update({p[0]: None for p in params[i + 1:] if not p[2]})
        used = [p for p in params if p[0] in values]
        if kind == "method":
            inst = default_instance(getattr(ext, label.split(".")[0]))
            if inst is None:
                missed.append(f"{label}: no default instance for self")
                continue
            values["self"] = inst
        try:
            call(kind, target, name, used, values)
            missed.append(f"{label}({params[i][0]}): accepted 'no-such-name'")
        except ValueError as e:
            if str(e) != want:
                missed.append(f"{label}({params[i][0]}): {str(e)[:200]}")
        except Exception as e:  # noqa: BLE001
            missed.append(f"{label}({params[i][0]}): {type(e).__name__}: {str(e)[:200]}")
    assert not missed, "\n".join(missed)


def test_nested_scheme_field_and_enum_arguments_of_functions():
    o = ext.FlowOptions()
    o.scheme = "pre-ln"  # sets SchemeOptions.scheme (keeping tau, alpha)
    assert o.scheme.scheme == ext.Scheme.pre_ln
    with pytest.raises(ValueError, match=r'flow: scheme = "pre-lnx", must be one of'):
        o.scheme = "pre-lnx"
    assert ext.decay_variable("power", 2.0, 0.5) == ext.decay_variable(ext.DecayKind.power, 2.0, 0.5)
    with pytest.raises(ValueError, match=r'theory: kind = "powr", must be one of exponential, power, stretched'):
        ext.decay_variable("powr", 2.0, 0.5)


def test_good_strings_still_work_in_constructors_and_fields():
    o = ext.IntegratorOptions("dopri5", 0.05)
    assert o.method == ext.Method.dopri5 and o.dt == 0.05
    o.method = "rk4"
    assert o.method == ext.Method.rk4
    with pytest.raises(ValueError, match=r'"rk4x", must be one of'):
        ext.IntegratorOptions("rk4x", 0.05)
