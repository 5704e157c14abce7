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
