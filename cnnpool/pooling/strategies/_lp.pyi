"""Type stub of the compiled module ``cnnpool.pooling.strategies._lp`` (see ``_lp.pyx``)."""

from ..tiers._strategy import WindowStrategy

class LpWindow(WindowStrategy):
    """Compiled Lp reduction for a finite, non-zero ``norm_type``."""

    @property
    def norm_type(self) -> float: ...
    def __init__(self, norm_type: float) -> None: ...
