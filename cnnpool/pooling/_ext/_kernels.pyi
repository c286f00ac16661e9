"""Type stub of the compiled module ``cnnpool.pooling._ext._kernels`` (see ``_kernels.pyx``).

Arrays are C-contiguous; ``x``/``out``/``grad_*`` are float32 or float64
(one dtype per call), ``windows`` is intp, ``PoolGeometry.windows`` (the six window
arrays of ``PoolGeometry.ranges`` end to end).
Each entry point checks its arrays (type, dtype, rank, layout, matching
shapes) with the NumPy C API before its loops run without bounds checks.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

_Float = npt.NDArray[np.floating[Any]]
_Intp = npt.NDArray[np.intp]
# Max's saved tap numbers: uint8 for windows of at most 255 taps, else int64.
_Taps = npt.NDArray[np.uint8] | npt.NDArray[np.int64]
_Float64 = npt.NDArray[np.float64]

def max_forward(
    x: _Float,
    out: _Float,
    taps: _Taps,
    windows: _Intp,
    dil_h: int,
    dil_w: int,
    kernel_h: int,
    kernel_w: int,
    stride_h: int,
    stride_w: int,
    n_threads: int,
) -> None: ...
def max_backward(
    grad_out: _Float,
    taps: _Taps,
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
def mean_forward(
    x: _Float,
    out: _Float,
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
def mean_backward(
    grad_out: _Float,
    grad_in: _Float,
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
def set_stream_min_bytes(nbytes: int) -> int: ...
def stream_count() -> int: ...

STREAM_STORES: bool
