"""Type stub of the compiled module ``cnnpool._elementwise`` (see ``_elementwise.pyx``).

``x``/``grad`` and ``out`` are C-contiguous arrays of one float dtype,
``positive`` a bool array, all of one size; the functions raise
``TypeError``/``ValueError`` otherwise.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

_Float = npt.NDArray[np.floating[Any]]
_Bool = npt.NDArray[np.bool_]

def relu_forward(x: _Float, out: _Float, positive: _Bool, n_threads: int) -> None: ...
def relu_backward(grad: _Float, positive: _Bool, out: _Float, n_threads: int) -> None: ...
