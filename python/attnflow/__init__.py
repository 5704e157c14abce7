"""attnflow: attention as an operator on probability measures.

NumPy in, NumPy out: arrays are float64 (n, d) row-major; float64 C-contiguous input is
used without a copy where the library takes views, float32 / non-contiguous input is
converted once. Invalid input raises ValueError with the library's message
("context: name = value, must be rule"). Plots: ``attnflow.plot`` (matplotlib, imported
lazily) and ``python3 -m attnflow.plot DIR``.
"""

import os as _os

# Passive OpenMP waiting unless the user chose (as the CLI does): libgomp reads it when the
# extension loads it, so this works when attnflow is the first OpenMP user in the process.
_os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from ._attnflow import *  # noqa: F401,F403,E402  (the C++ names, kept as they are)
from ._attnflow import __version__  # noqa: F401
from . import _attnflow as _ext

__all__ = [name for name in dir(_ext) if not name.startswith("_")]


def __getattr__(name):
    """attnflow.view(run_dir) (the viewer, inline in Jupyter), attnflow.animate and attnflow.plot
    are imported on first use (they need matplotlib / the viewer's assets, the core does not)."""
    if name in ("view", "animate", "plot"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'attnflow' has no attribute {name!r}")
