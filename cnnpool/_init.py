"""Parameter initialisation shared by the layers that have weights.

One idea: turn the user's ``rng`` argument into a NumPy ``Generator`` and
draw He (Kaiming) normal weights from it, so that the same seed gives the
same network in float32 and float64 alike.
"""

from __future__ import annotations

import numbers

import numpy as np


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
        f"{name} must be None, an int seed or a numpy.random.Generator, got "
        f"{type(rng).__name__}"
    )


def he_normal(shape, fan_in, dtype, rng):
    """He (Kaiming) normal weights: ``N(0, 2 / fan_in)``, shape ``shape``.

    The right scale for layers followed by ReLU (He et al., 2015).  Drawn in
    float64 and then rounded to ``dtype``, so a float32 layer holds exactly
    the rounded weights of the float64 layer built from the same seed.
    """
    std = np.sqrt(2.0 / fan_in)
    return (rng.standard_normal(shape) * std).astype(dtype)
