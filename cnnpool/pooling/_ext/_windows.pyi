"""Type stub of the compiled module ``cnnpool.pooling._ext._windows`` (see ``_windows.pyx``).

Arrays are C-contiguous and float32 or float64 (one dtype per call);
the tap table intp; the module checks that the shapes agree.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

_Float = npt.NDArray[np.floating[Any]]
_Intp = npt.NDArray[np.intp]

def gather(x: _Float, taps: _Intp, pad_value: float, windows: _Float, n_threads: int) -> None: ...
def scatter_add(grad_windows: _Float, taps: _Intp, grad_x: _Float, n_threads: int) -> None: ...
