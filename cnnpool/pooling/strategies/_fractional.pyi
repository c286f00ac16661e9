"""Type stub of ``cnnpool.pooling.strategies._fractional`` (see ``_fractional.pyx``).

Arrays are C-contiguous; ``x``/``samples``/``out``/``grad_*`` are float32 or
float64 (one dtype per call), shaped (P, H, W) or (P, OH, OW) for P = N*C
planes; ``samples`` is (P, 2), each plane's ``(u_w, u_h)`` in [0, 1).  Each
entry point checks its arrays before its loops run without bounds checks.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

_Float = npt.NDArray[np.floating[Any]]

def forward(
    x: _Float,
    samples: _Float,
    out: _Float,
    indices: npt.NDArray[np.int64],
    kernel_h: int,
    kernel_w: int,
    n_threads: int,
) -> None: ...
def backward(
    grad_out: _Float,
    indices: npt.NDArray[np.int64],
    grad_in: _Float,
    n_threads: int,
) -> None: ...
