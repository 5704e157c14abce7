"""attnflow: attention as an operator on probability measures.

NumPy in, NumPy out: arrays are float64 (n, d) row-major; float64 C-contiguous input is
used without a copy where the library takes views; float32 arrays are refused by the array
entry points (TypeError naming the argument; convert with ``x.astype(np.float64)``), never
silently promoted. Invalid input raises ValueError with the library's message ("context:
name = value, must be rule"). Results have ``to_dict()`` and a readable repr; tables
(``rows``, ``history``) convert with ``to_pandas()`` / ``pandas.DataFrame(result)``. Plots:
``attnflow.plot`` (matplotlib, imported lazily). PyTorch: ``attnflow.torch`` (imported on
request: ``import attnflow.torch``).
"""
import sys as _sys

import os as _os

# Passive OpenMP waiting unless the user chose (as the CLI does): libgomp reads it when the
# extension loads it, so this works when attnflow is the first OpenMP user in the process.
_os.environ.setdefault("OMP_WAIT_POLICY", "passive")

try:
    import numpy as _np
except ImportError as _e:  # before the extension, whose initialization needs NumPy
    raise ImportError(
        f"attnflow needs NumPy, which this interpreter ({_sys.executable}) cannot import "
        f"({_e}). Install it for this interpreter: `{_sys.executable} -m pip install numpy` "
        "(or, for Debian's /usr/bin/python3, `apt install python3-numpy`).") from _e


def _check_numpy_abi():
    """pybind11 < 2.12 reads NumPy 1.x array structures only: refuse NumPy 2 clearly."""
    try:
        from ._build_info import PYBIND11_VERSION
    except ImportError:  # a build tree older than _build_info.py
        return
    numpy_major = int(_np.__version__.split(".")[0])
    pb = tuple(int(p) for p in PYBIND11_VERSION.split(".")[:2] if p.isdigit())
    if numpy_major >= 2 and pb and pb < (2, 12):
        raise ImportError(
            f"attnflow was built with pybind11 {PYBIND11_VERSION}, which supports NumPy 1.x "
            f"only, and NumPy {_np.__version__} is installed: install numpy<2 or rebuild "
            "attnflow with pybind11 >= 2.12 (`pip install 'pybind11>=2.12'` then `pip install .`)")


_check_numpy_abi()

try:
    from ._attnflow import *  # noqa: F401,F403  (the C++ names, kept as they are)
except ImportError as _e:
    try:
        from ._build_info import PYTHON_VERSION as _built_for
    except ImportError:
        _built_for = "?"
    raise ImportError(
        f"attnflow's extension (_attnflow) does not load in {_sys.executable} (Python "
        f"{_sys.version.split()[0]}; built for Python {_built_for}): {_e}. Reinstall it for "
        "this interpreter: `python -m pip install .` in the attnflow source tree.") from _e
from ._attnflow import __version__  # noqa: F401,E402
from . import _attnflow as _ext  # noqa: E402
from . import _pyext  # noqa: E402

_pyext.install(_ext)

__all__ = [name for name in dir(_ext) if not name.startswith("_")]


# Complex input is refused, never silently made real (S4): NumPy's conversion to
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


def __getattr__(name):
    """attnflow.view(run_dir) (the viewer, inline in Jupyter), attnflow.animate and attnflow.plot
    are imported on first use (they need matplotlib / the viewer's assets, the core does not)."""
    if name in ("view", "animate", "plot"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'attnflow' has no attribute {name!r}")
