"""Type stub of the compiled module ``cnnpool._direct_conv`` (see ``_direct_conv.pyx``).

Arrays are C-contiguous and float32 or float64 (one dtype per call); padded
images are passed as flat buffers with :data:`MARGIN` spare elements at the
end.  The kernels re-check the shapes and raise ``ValueError`` otherwise.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

_Float = npt.NDArray[np.floating[Any]]

SIMD: bool
MARGIN: int

def pad(x: _Float, xp: _Float, pad_h: int, pad_w: int, n_threads: int) -> None: ...
def forward(
    xp: _Float,
    n_img: int,
    Hp: int,
    Wp: int,
    weight: _Float,
    bias: _Float,
    has_bias: bool,
    out: _Float,
    dil_h: int,
    dil_w: int,
    n_threads: int,
) -> None: ...
def grad_input(
    grad_out: _Float,
    weight: _Float,
    grad_x: _Float,
    pad_h: int,
    pad_w: int,
    dil_h: int,
    dil_w: int,
    scratch: _Float,
    n_threads: int,
) -> None: ...
def grad_weight(
    xp: _Float,
    Hp: int,
    Wp: int,
    grad_out: _Float,
    weight_parts: _Float,
    bias_parts: _Float,
    with_bias: bool,
    kernel_h: int,
    kernel_w: int,
    dil_h: int,
    dil_w: int,
    n_threads: int,
) -> None: ...
