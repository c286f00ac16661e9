"""Type stub of the compiled module ``cnnpool.pooling._ext._adaptive`` (see ``_adaptive.pyx``).

Arrays are C-contiguous; data arrays are float32 or float64 (one dtype per
call), window ranges intp, max indices int64.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

_Float = npt.NDArray[np.floating[Any]]
_Intp = npt.NDArray[np.intp]
_Int64 = npt.NDArray[np.int64]

def max_forward(
    x: _Float,
    out: _Float,
    indices: _Int64,
    row_start: _Intp,
    row_end: _Intp,
    col_start: _Intp,
    col_end: _Intp,
    n_threads: int,
) -> None: ...
def max_backward(grad_out: _Float, indices: _Int64, grad_in: _Float, n_threads: int) -> None: ...
def mean_forward(
    x: _Float,
    out: _Float,
    row_start: _Intp,
    row_end: _Intp,
    col_start: _Intp,
    col_end: _Intp,
    n_threads: int,
) -> None: ...
def mean_backward(
    grad_out: _Float,
    grad_in: _Float,
    row_start: _Intp,
    row_end: _Intp,
    col_start: _Intp,
    col_end: _Intp,
    n_threads: int,
) -> None: ...
