"""Parameter initialisation shared by the layers that have weights.

One idea: turn the user's ``rng`` argument into a NumPy ``Generator`` and
draw He (Kaiming) normal weights from it, so that the same seed gives the
same network in float32 and float64 alike.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import numbers

import numpy as np

# While a saved model is loaded, the most weight elements a layer's constructor
# may draw: what the file declares for that layer.  A tampered configuration
# (say in_channels=10**6) then fails fast instead of allocating gigabytes of
# random weights that the file's arrays would overwrite anyway.  Within the
# budget nothing is drawn either: the weights are zeros, which the file's
# arrays replace (drawing them in float64 cost twice their size for nothing).
_BUDGET: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "cnnpool_weight_budget", default=None
)


@contextlib.contextmanager
def weight_budget(elements):
    """Within the block, :func:`he_normal` refuses shapes of more than ``elements``
    and returns zeros (to be overwritten) instead of drawing."""
    token = _BUDGET.set(int(elements))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def make_rng(rng, name="rng"):
    """Return a ``numpy.random.Generator`` for ``rng``.

    Parameters
    ----------
    rng : None, int or numpy.random.Generator
        ``None`` draws fresh OS entropy (not reproducible); an int seeds a new
        generator; a ``Generator`` is used as is (and advanced).
    name : str
        The argument's name, for the error message.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        if rng is not None and rng < 0:
            raise ValueError(f"{name} must be a non-negative seed, got {rng!r}")
        return np.random.default_rng(rng)
    raise TypeError(
        f"{name} must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}"
    )


def he_normal(shape, fan_in, dtype, rng):
    """He (Kaiming) normal weights: ``N(0, 2 / fan_in)``, shape ``shape``.

    The right scale for layers followed by ReLU (He et al., 2015).  Drawn in
    float64 and then rounded to ``dtype``, so a float32 layer holds exactly
    the rounded weights of the float64 layer built from the same seed.
    """
    budget = _BUDGET.get()
    if budget is not None:
        if math.prod(shape) > budget:
            raise ValueError(
                f"a weight of shape {tuple(shape)} has more elements than the {budget} "
                f"the saved file declares for this layer"
            )
        return np.zeros(shape, dtype)
    std = np.sqrt(2.0 / fan_in)
    return (rng.standard_normal(shape) * std).astype(dtype)
