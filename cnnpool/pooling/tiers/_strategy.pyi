"""Type stub of the compiled module ``cnnpool.pooling.tiers._strategy`` (see ``_strategy.pyx``).

``WindowStrategy`` is subclassed in Cython (its ``reduce`` and ``route``
are ``cdef`` methods, invisible from Python; see ``_strategy.pxd``).
Arrays are C-contiguous; data arrays are float32 or float64 (one dtype per
call), the tap table intp, the scratch space float64.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

_Float = npt.NDArray[np.floating[Any]]
_Intp = npt.NDArray[np.intp]
_Float64 = npt.NDArray[np.float64]

class WindowStrategy:
    """Abstract base of a compiled pooling strategy."""

def forward(
    strategy: WindowStrategy,
    x: _Float,
    taps: _Intp,
    out: _Float,
    work: _Float64,
    n_threads: int,
) -> None: ...
def backward(
    strategy: WindowStrategy,
    x: _Float,
    taps: _Intp,
    pooled: _Float,
    grad_out: _Float,
    grad_x: _Float,
    work: _Float64,
    n_threads: int,
) -> None: ...
