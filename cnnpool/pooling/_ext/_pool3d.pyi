"""Type stub of the compiled module ``cnnpool.pooling._ext._pool3d`` (see ``_pool3d.pyx``).

Planes are (P, D, H, W), C-contiguous, float32 or float64 (one dtype per
call); 1-D signals are (P, L).  Each axis's windows are ``(start, lo, hi)``,
three intp arrays of the output's length (``PoolGeometry.ranges`` per axis):
the input taps of output ``o`` are ``start[o] + i * dil`` for ``i`` in
``[lo[o], hi[o])``.  Every array and every window is checked before the
loops run; argmax is int64, the flat in-plane index ``d*H*W + h*W + w``.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

_Float = npt.NDArray[np.floating[Any]]
_Intp = npt.NDArray[np.intp]
_Int64 = npt.NDArray[np.int64]
_Float64 = npt.NDArray[np.float64]
_Ranges = tuple[_Intp, _Intp, _Intp]

def max_forward_3d(
    x: _Float,
    d: _Ranges,
    h: _Ranges,
    w: _Ranges,
    dilation: tuple[int, int, int],
    n_threads: int = 1,
    *,
    out: _Float | None = None,
    argmax: _Int64 | None = None,
    indices: bool = True,
) -> tuple[_Float, _Int64 | None]: ...
def max_backward_3d(
    grad_out: _Float,
    argmax: _Int64,
    in_size: tuple[int, int, int],
    n_threads: int = 1,
    *,
    out: _Float | None = None,
) -> _Float: ...
def mean_forward_3d(
    x: _Float,
    d: _Ranges,
    h: _Ranges,
    w: _Ranges,
    dilation: tuple[int, int, int],
    divisor: _Float64,
    n_threads: int = 1,
    *,
    out: _Float | None = None,
) -> _Float: ...
def mean_backward_3d(
    grad_out: _Float,
    in_size: tuple[int, int, int],
    d: _Ranges,
    h: _Ranges,
    w: _Ranges,
    dilation: tuple[int, int, int],
    divisor: _Float64,
    n_threads: int = 1,
    *,
    out: _Float | None = None,
) -> _Float: ...
def max_forward_1d(
    x: _Float,
    w: _Ranges,
    dilation: int,
    n_threads: int = 1,
    *,
    out: _Float | None = None,
    argmax: _Int64 | None = None,
    indices: bool = True,
) -> tuple[_Float, _Int64 | None]: ...
def max_backward_1d(
    grad_out: _Float,
    argmax: _Int64,
    length: int,
    n_threads: int = 1,
    *,
    out: _Float | None = None,
) -> _Float: ...
def mean_forward_1d(
    x: _Float,
    w: _Ranges,
    dilation: int,
    divisor: _Float64,
    n_threads: int = 1,
    *,
    out: _Float | None = None,
) -> _Float: ...
def mean_backward_1d(
    grad_out: _Float,
    length: int,
    w: _Ranges,
    dilation: int,
    divisor: _Float64,
    n_threads: int = 1,
    *,
    out: _Float | None = None,
) -> _Float: ...
def set_separable_max(elements: int) -> int: ...
