"""Python conveniences installed on the extension's classes at import (attnflow/__init__.py):

- every class with fields gets ``to_dict()`` (fields by name; nested results become dicts,
  enums their names, arrays stay NumPy arrays) and, unless it has its own, a readable
  ``__repr__`` (scalars shown, arrays as shape and dtype, lists as their length);
- tabular results (a ``*Result`` whose field holds a list of records: ``rows``, ``history``,
  ``plan``, ...) convert with ``to_pandas()`` or ``pandas.DataFrame(result)`` (iterating
  such a result yields its rows as dicts), and their rows are read-only mappings of their
  fields, so ``pandas.DataFrame(result.history)`` has one column per field too;
- option fields whose type is an enum accept the CLI's strings (``o.kind = "sa"``), and
  ``FlowOptions.scheme = "pre-ln"`` sets the scheme keeping tau and alpha; a bad string raises
  the library's ValueError ("... must be one of ...").
"""
import collections.abc
import re

import numpy as np

_PROP_TYPE = re.compile(r"->\s*attnflow\._attnflow\.(\w+)")


def _is_enum(cls):
    return isinstance(cls, type) and hasattr(cls, "__members__")


def _fields(cls):
    """Names of the public properties of a bound class, in definition order."""
    out = []
    for klass in reversed(cls.__mro__):
        for name, val in vars(klass).items():
            if isinstance(val, property) and not name.startswith("_") and name not in out:
                out.append(name)
    return out


def _plain(value):
    """A field value as plain Python / NumPy data (recursively)."""
    if _is_enum(type(value)):
        return value.name
    if isinstance(value, np.ndarray) or value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(type(value), "to_dict"):
        return value.to_dict()
    return value


def to_dict(self):
    """The fields of this object as a dict (nested objects as dicts, enums as names, arrays
    as NumPy arrays)."""
    out = {}
    for name in _fields(type(self)):
        try:
            out[name] = _plain(getattr(self, name))
        except Exception:  # a field that cannot be read in this state (none today)
            continue
    return out


def _short(value):
    if isinstance(value, np.ndarray):
        if value.size <= 4 and value.ndim <= 1:
            return np.array2string(value, precision=6, separator=", ")
        return f"<{value.dtype} array {value.shape}>"
    if _is_enum(type(value)):
        return repr(value.name)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (int, float, bool)) for v in value) and len(value) <= 6:
            return repr(list(value))
        kinds = {type(v).__name__ for v in value}
        return f"[{len(value)} x {', '.join(sorted(kinds))}]" if value else "[]"
    if isinstance(value, (bool, int)) or value is None:
        return repr(value)
    if type(value).__repr__ is _repr:
        return _repr(value)
    return repr(value)


def _repr(self):
    parts = []
    for name in _fields(type(self)):
        try:
            parts.append(f"{name}={_short(getattr(self, name))}")
        except Exception:
            continue
    return f"{type(self).__name__}({', '.join(parts)})"


def _record_field(cls, obj):
    """The name of the field holding the table's rows (a list of records), or None."""
    for name in _fields(cls):
        value = getattr(obj, name)
        if isinstance(value, list) and value and all(hasattr(type(v), "to_dict") for v in value):
            return name
    return None


def _flat_row(record):
    row = {}
    for k, v in record.to_dict().items():
        if isinstance(v, np.ndarray) and v.ndim == 1 and v.size <= 16:
            for i, x in enumerate(v):  # small vectors become columns k[0], k[1], ...
                row[f"{k}[{i}]"] = x
        else:
            row[k] = v
    return row


def _rows(self):
    name = _record_field(type(self), self)
    if name is None:
        raise TypeError(f"{type(self).__name__} has no table of rows (no list of records)")
    return [_flat_row(r) for r in getattr(self, name)]


def _iter_rows(self):
    """Iterates the rows of the table as dicts (so pandas.DataFrame(result) works)."""
    return iter(_rows(self))


def to_pandas(self):
    """The table of rows as a pandas.DataFrame (one row per record, one column per field;
    vectors of up to 16 entries become columns name[0], name[1], ...). Needs pandas."""
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError("to_pandas() needs pandas (pip install pandas, or apt install "
                          "python3-pandas); to_dict() needs nothing") from e
    return pd.DataFrame(_rows(self))


def _make_record(cls):
    """Rows of a table read as mappings of their fields too (rec["step"], dict(rec)), so that
    pandas.DataFrame(result.history) has one column per field."""
    def keys(self):
        """The field names (a row of a table reads as a mapping of its fields)."""
        return _fields(type(self))

    def __getitem__(self, key):
        if key not in _fields(type(self)):
            raise KeyError(key)
        return getattr(self, key)

    cls.keys = keys
    cls.__getitem__ = __getitem__
    cls.__iter__ = lambda self: iter(_fields(type(self)))
    cls.__len__ = lambda self: len(_fields(type(self)))
    collections.abc.Mapping.register(cls)


def _enum_setter(prop, enum_cls):
    def fset(self, value):
        if isinstance(value, str):
            value = enum_cls(value)  # the library's parse_*: ValueError "... must be one of ..."
        prop.fset(self, value)
    return property(prop.fget, fset, prop.fdel, prop.__doc__)


def _nested_setter(prop, field):
    """A struct-valued option set from a string sets its `field` (keeping the others)."""
    def fset(self, value):
        if isinstance(value, str):
            inner = prop.fget(self)
            setattr(inner, field, value)
            value = inner
        prop.fset(self, value)
    return property(prop.fget, fset, prop.fdel, prop.__doc__)


def _property_class(ext, prop):
    doc = (prop.fget.__doc__ or "") if prop.fget else ""
    m = _PROP_TYPE.search(doc.splitlines()[0] if doc else "")
    return getattr(ext, m.group(1), None) if m else None


def install(ext):
    """Adds the conveniences above to every class of the extension module `ext`."""
    classes = [getattr(ext, n) for n in dir(ext) if isinstance(getattr(ext, n), type)]
    classes = [c for c in classes if not _is_enum(c)]
    # String-valued options first (they read other classes' properties).
    for cls in classes:
        for name, prop in list(vars(cls).items()):
            if not isinstance(prop, property) or prop.fset is None:
                continue
            target = _property_class(ext, prop)
            if _is_enum(target):
                setattr(cls, name, _enum_setter(prop, target))
            elif target is not None and name in vars(target) and \
                    _is_enum(_property_class(ext, vars(target)[name])):
                setattr(cls, name, _nested_setter(prop, name))  # FlowOptions.scheme = "pre-ln"
    for cls in classes:
        if not _fields(cls):
            continue
        cls.to_dict = to_dict
        if cls.__repr__ is object.__repr__:  # not its own (Measure has one)
            cls.__repr__ = _repr
    # Tabular results: a *Result class with a field documented as a list of records (options
    # such as FlowOptions.heads are lists of records too, but not tables).
    for cls in classes:
        if "to_dict" not in vars(cls) or not cls.__name__.endswith("Result"):
            continue
        for name in _fields(cls):
            prop = vars(cls).get(name) or getattr(cls, name)
            doc = (prop.fget.__doc__ or "") if prop.fget else ""
            first = doc.splitlines()[0] if doc else ""
            m = re.search(r"-> List\[attnflow\._attnflow\.(\w+)\]", first)
            if m and getattr(ext, m.group(1), None) in classes:
                cls.to_pandas = to_pandas
                cls.__iter__ = _iter_rows
                _make_record(getattr(ext, m.group(1)))
                break
