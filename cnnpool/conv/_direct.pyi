"""Type stub of the compiled module ``cnnpool.conv._direct`` (see ``_direct.pyx``).

Arrays are C-contiguous and float32 or float64 (one dtype per call); padded
images are passed as flat buffers with :data:`MARGIN` spare elements at the
end.  The kernels re-check the shapes and raise ``ValueError`` otherwise.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

_Float = npt.NDArray[np.floating[Any]]

SIMD: bool
AVX512: bool
MARGIN: int

def forward(
    x: _Float,
    xp: _Float,
    weight: _Float,
    bias: _Float | None,
    out: _Float,
    pad_h: int,
    pad_w: int,
    dil_h: int,
    dil_w: int,
    n_threads: int,
    pad_bottom: int = -1,
    pad_right: int = -1,
    groups: int = 1,
) -> None: ...
def backward(
    xp: _Float,
    grad_out: _Float,
    weight: _Float,
    grad_x: _Float,
    weight_grad: _Float,
    bias_grad: _Float | None,
    scratch: _Float,
    pad_h: int,
    pad_w: int,
    dil_h: int,
    dil_w: int,
    n_threads: int,
    pad_bottom: int = -1,
    pad_right: int = -1,
    groups: int = 1,
) -> None: ...
def depthwise_forward(
    x: _Float,
    xp: _Float,
    weight: _Float,
    bias: _Float | None,
    out: _Float,
    pad_top: int,
    pad_bottom: int,
    pad_left: int,
    pad_right: int,
    dil_h: int,
    dil_w: int,
    n_threads: int,
    stride_h: int = 1,
    stride_w: int = 1,
) -> None: ...
def depthwise_backward(
    xp: _Float,
    grad_out: _Float,
    weight: _Float,
    grad_x: _Float,
    weight_grad: _Float,
    bias_grad: _Float | None,
    pad_top: int,
    pad_bottom: int,
    pad_left: int,
    pad_right: int,
    dil_h: int,
    dil_w: int,
    n_threads: int,
    stride_h: int = 1,
    stride_w: int = 1,
) -> None: ...
