"""Type stub of ``cnnpool.pooling.strategies._stochastic`` (see ``_stochastic.pyx``).

Arrays are C-contiguous; ``x``/``out``/``grad_*`` are float32 or float64
(one dtype per call), shaped (P, H, W) or (P, OH, OW) for P = N*C planes;
``windows, dil_h, ..., stride_w`` are ``PoolGeometry.kernel_args``.  Each
entry point checks its arrays and the window table before its loops run
without bounds checks.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

_Float = npt.NDArray[np.floating[Any]]
_Intp = npt.NDArray[np.intp]
# Drawn tap numbers: uint8 for windows of at most 255 taps, else int64.
_Taps = npt.NDArray[np.uint8] | npt.NDArray[np.int64]

def train_forward(
    x: _Float,
    u: npt.NDArray[np.float64],
    out: _Float,
    taps: _Taps,
    live: npt.NDArray[np.uint8],
    windows: _Intp,
    dil_h: int,
    dil_w: int,
    kernel_h: int,
    kernel_w: int,
    stride_h: int,
    stride_w: int,
    n_threads: int,
) -> None: ...
def train_backward(
    grad_out: _Float,
    taps: _Taps,
    live: npt.NDArray[np.uint8],
    grad_in: _Float,
    windows: _Intp,
    dil_h: int,
    dil_w: int,
    kernel_h: int,
    kernel_w: int,
    stride_h: int,
    stride_w: int,
    n_threads: int,
) -> None: ...
def eval_forward(
    x: _Float,
    out: _Float,
    windows: _Intp,
    dil_h: int,
    dil_w: int,
    kernel_h: int,
    kernel_w: int,
    stride_h: int,
    stride_w: int,
    n_threads: int,
) -> None: ...
def eval_backward(
    x: _Float,
    grad_out: _Float,
    grad_in: _Float,
    windows: _Intp,
    dil_h: int,
    dil_w: int,
    kernel_h: int,
    kernel_w: int,
    stride_h: int,
    stride_w: int,
    n_threads: int,
) -> None: ...
