"""Type stub of the compiled module ``cnnpool.pooling.tiers._strategy`` (see ``_strategy.pyx``).

``WindowStrategy`` is subclassed in Cython (its ``reduce`` and ``route``
are ``cdef`` methods, invisible from Python; see ``_strategy.pxd``).
Arrays are C-contiguous; data arrays are float32 or float64 (one dtype per
call), the compact tap table and its counts intp (see ``WindowPlan`` in
``compiled.py``).
"""

from typing import Any

import numpy as np
import numpy.typing as npt

_Float = npt.NDArray[np.floating[Any]]
_Intp = npt.NDArray[np.intp]

class WindowStrategy:
    """Abstract base of a compiled pooling strategy."""

def forward(
    strategy: WindowStrategy,
    x: _Float,
    taps: _Intp,
    counts: _Intp,
    full: bool,
    out: _Float,
    n_threads: int,
) -> None: ...
def backward(
    strategy: WindowStrategy,
    x: _Float,
    taps: _Intp,
    counts: _Intp,
    full: bool,
    disjoint: bool,
    pooled: _Float,
    grad_out: _Float,
    grad_x: _Float,
    n_threads: int,
) -> None: ...
