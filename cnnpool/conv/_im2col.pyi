"""Type stub of the compiled module ``cnnpool.conv._im2col`` (see ``_im2col.pyx``).

Arrays are C-contiguous and float32 or float64 (one dtype per call).  The
kernels re-check that the shapes agree with the geometry and raise
``ValueError`` otherwise.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

_Float = npt.NDArray[np.floating[Any]]

def im2col(
    x: _Float,
    cols: _Float,
    kernel_h: int,
    kernel_w: int,
    stride_h: int,
    stride_w: int,
    pad_h: int,
    pad_w: int,
    dil_h: int,
    dil_w: int,
    out_h: int,
    out_w: int,
    n_threads: int,
    pad_bottom: int = -1,
    pad_right: int = -1,
) -> None: ...
def col2im(
    cols: _Float,
    x: _Float,
    kernel_h: int,
    kernel_w: int,
    stride_h: int,
    stride_w: int,
    pad_h: int,
    pad_w: int,
    dil_h: int,
    dil_w: int,
    out_h: int,
    out_w: int,
    n_threads: int,
    pad_bottom: int = -1,
    pad_right: int = -1,
) -> None: ...
