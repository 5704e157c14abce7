"""attnflow: attention as an operator on probability measures.

Submodules by topic, each with an explicit ``__all__``: ``attnflow.measure``, ``.attention``
(also callable as the attention function), ``.ot``, ``.flow``, ``.theory``, ``.icl``,
``.model``, ``.io``, ``.run``; every name is also re-exported here (``attnflow.sinkhorn`` is
``attnflow.ot.sinkhorn``).

NumPy in, NumPy out: arrays are float64 (n, d) row-major; float64 C-contiguous input is
used without a copy where the library takes views; float32 (any float other than float64)
arrays are refused by every function, method, constructor and field (TypeError naming the
argument; convert with ``x.astype(np.float64)``), never silently promoted, and complex input
is refused (ValueError), never silently made real. Invalid input raises ValueError with the
library's message ("context: name = value, must be rule"); a bad option string, in a field or
a constructor, gives the CLI's "... must be one of ..." ValueError. Results have ``to_dict()`` and a readable repr; tables
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
    from . import _attnflow as _ext
except ImportError as _e:
    try:
        from ._build_info import PYTHON_VERSION as _built_for
    except ImportError:
        _built_for = "?"
    raise ImportError(
        f"attnflow's extension (_attnflow) does not load in {_sys.executable} (Python "
        f"{_sys.version.split()[0]}; built for Python {_built_for}): {_e}. Reinstall it for "
        "this interpreter: `python -m pip install .` in the attnflow source tree.") from _e
from ._attnflow import __version__  # noqa: E402
from ._attnflow import num_threads, set_num_threads  # noqa: E402
# The device of the kernel's reductions, process-wide like the thread count (docs/usage/gpu.md).
from ._attnflow import (cuda_available, cuda_compiled, cuda_device_description,  # noqa: E402
                        current_device, set_device)
from . import _pyext  # noqa: E402

_pyext.install(_ext)

# The submodules, one per group of the library (its C++ modules, python/src/bind_<module>.cpp);
# the flat namespace re-exports exactly their __all__ (tests/python/test_py_submodules.py).
# Complex and non-float64 float input is refused by the extension itself, for every binding
# (python/src/dtype_guard.cpp).
from . import attention, flow, icl, io, measure, model, ot, run, theory  # noqa: E402
from .attention import *  # noqa: E402,F401,F403
from .flow import *  # noqa: E402,F401,F403
from .icl import *  # noqa: E402,F401,F403
from .io import *  # noqa: E402,F401,F403
from .measure import *  # noqa: E402,F401,F403
from .model import *  # noqa: E402,F401,F403
from .ot import *  # noqa: E402,F401,F403
from .run import *  # noqa: E402,F401,F403
from .theory import *  # noqa: E402,F401,F403

# `from .attention import *` bound the name to the function: the flat attnflow.attention is the
# submodule, which is callable as that function.
attention = _sys.modules[__name__ + ".attention"]

_SUBMODULES = ("measure", "attention", "ot", "flow", "theory", "icl", "model", "io", "run")
# Public names only the package has (not in a submodule's __all__).
_TOP_LEVEL = ("__version__", "set_num_threads", "num_threads", "set_device", "current_device",
              "cuda_compiled", "cuda_available", "cuda_device_description")
# Star-import: every submodule's names (attention: the callable submodule) and the helpers;
# not the submodule names themselves (attnflow.io would shadow the standard io).
__all__ = sorted({n for m in _SUBMODULES for n in _sys.modules[f"{__name__}.{m}"].__all__}
                 | set(_TOP_LEVEL[1:]))


def __getattr__(name):
    """attnflow.view(run_dir) (the viewer, inline in Jupyter), attnflow.animate and attnflow.plot
    are imported on first use (they need matplotlib / the viewer's assets, the core does not)."""
    if name in ("view", "animate", "plot"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'attnflow' has no attribute {name!r}")
