"""Type stub of the compiled module ``cnnpool.pooling.strategies._lp`` (see ``_lp.pyx``)."""

import numpy as np

from ..tiers._strategy import WindowStrategy

class LpWindow(WindowStrategy):
    """Compiled Lp reduction for a finite, non-zero ``norm_type``."""

    @property
    def norm_type(self) -> float: ...
    def __init__(self, norm_type: float) -> None: ...

def lp_forward(
    strategy: LpWindow,
    x: np.ndarray,
    out: np.ndarray,
    copy: np.ndarray,
    kh: int,
    kw: int,
    sh: int,
    sw: int,
    n_threads: int,
) -> None: ...
def lp_backward(
    strategy: LpWindow,
    x: np.ndarray,
    grad_out: np.ndarray,
    grad_x: np.ndarray,
    kh: int,
    kw: int,
    sh: int,
    sw: int,
    n_threads: int,
) -> None: ...
