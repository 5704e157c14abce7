"""attnflow: attention as an operator on probability measures.

NumPy in, NumPy out: arrays are float64 (n, d) row-major; float64 C-contiguous input is
used without a copy where the library takes views, float32 / non-contiguous input is
converted once. Invalid input raises ValueError with the library's message
("context: name = value, must be rule"). Plots: ``attnflow.plot`` (matplotlib, imported
lazily) and ``python3 -m attnflow.plot DIR``.
"""

from ._attnflow import *  # noqa: F401,F403  (the C++ names, kept as they are)
from ._attnflow import __version__  # noqa: F401
from . import _attnflow as _ext

__all__ = [name for name in dir(_ext) if not name.startswith("_")]


# Complex input is refused, never silently made real (issue 14, S4): NumPy's conversion to
# float64 would drop the imaginary part. Every exported function and constructor checks its
# array arguments first; the error is a ValueError naming the function and the argument.
def _install_complex_guard():
    import functools

    import numpy as np

    def complex_dtype(value, depth=0):
        # Arrays, complex scalars, and lists / tuples of them (rows, batches; not converted
        # with np.asarray, which fails on ragged batches).
        if isinstance(value, np.ndarray):
            return value.dtype if np.iscomplexobj(value) else None
        if isinstance(value, (complex, np.complexfloating)):
            return type(value).__name__
        if isinstance(value, (list, tuple)) and depth < 3:
            for item in value:
                found = complex_dtype(item, depth + 1)
                if found is not None:
                    return found
        return None

    def check(where, args, kwargs):
        named = [(f"argument {i + 1}", a) for i, a in enumerate(args)] + list(kwargs.items())
        for name, value in named:
            dtype = complex_dtype(value)
            if dtype is not None:
                raise ValueError(f"{where}: {name} has complex dtype {dtype}, must be real "
                                 "(the imaginary part would be dropped; pass .real explicitly)")

    def guard(fn, where, skip=0):  # skip = 1: a constructor's self
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            check(where, args[skip:], kwargs)
            return fn(*args, **kwargs)
        return wrapper

    for name in __all__:
        obj = getattr(_ext, name)
        if isinstance(obj, type):
            init = obj.__dict__.get("__init__")
            if init is not None and not getattr(init, "_complex_guard", False):
                wrapped = guard(init, f"{name}()", skip=1)
                wrapped._complex_guard = True
                obj.__init__ = wrapped
        elif callable(obj) and type(obj).__name__ == "builtin_function_or_method":
            globals()[name] = guard(obj, name)


_install_complex_guard()
