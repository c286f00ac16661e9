"""Type stub of the compiled module ``cnnpool.pooling.strategies._mixed`` (see ``_mixed.pyx``).

Arrays are C-contiguous; ``x``/``mx``/``mean``/``out``/``grad_*``/``to_*``/
``alpha``/``weight`` are float32 or float64 (one dtype per call), shaped
(P, H, W) or (P, OH, OW) for P = N*C planes; ``divisor`` is the mean's
(OH, OW) float64; ``windows, dil_h, ..., stride_w`` are
``PoolGeometry.kernel_args``.  Each entry point checks its arrays (and the
window table) before its loops run without bounds checks.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

_Float = npt.NDArray[np.floating[Any]]
_Float64 = npt.NDArray[np.float64]
_Intp = npt.NDArray[np.intp]

def mixed_blend(mx: _Float, mean: _Float, alpha: _Float, out: _Float, n_threads: int) -> None: ...
def mixed_split(
    grad_out: _Float,
    alpha: _Float,
    mx: _Float,
    mean: _Float,
    to_max: _Float,
    to_mean: _Float,
    alpha_grad: _Float64,
    n_threads: int,
) -> None: ...
def gated_forward(
    x: _Float,
    weight: _Float,
    mx: _Float,
    mean: _Float,
    out: _Float,
    gate: _Float64,
    windows: _Intp,
    dil_h: int,
    dil_w: int,
    kernel_h: int,
    kernel_w: int,
    stride_h: int,
    stride_w: int,
    n_threads: int,
) -> None: ...
def gated_backward(
    x: _Float,
    grad_out: _Float,
    weight: _Float,
    gate: _Float64,
    mx: _Float,
    mean: _Float,
    to_max: _Float,
    grad_in: _Float,
    weight_grad: _Float64,
    divisor: _Float64,
    windows: _Intp,
    dil_h: int,
    dil_w: int,
    kernel_h: int,
    kernel_w: int,
    stride_h: int,
    stride_w: int,
    n_threads: int,
) -> None: ...
