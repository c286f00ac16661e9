"""Short names for the built-in pooling strategies.

The comparison tool (``cnnpool-compare --pool lp --pool mixed``) and any
configuration file name a strategy by one of these; each name maps to a
factory ``factory(kernel_size, stride=None, *, seed=None)`` that returns a
fresh layer.  Factories are plain module-level functions so they pickle
into worker processes.

======================  =====================================================
``max``                 :class:`MaxPool2d`
``mean`` (``avg``)      :class:`MeanPool2d`
``lp``                  :class:`LpPool2d` with ``norm_type = 2``
``stochastic``          :class:`StochasticPool2d`, drawing from
                        ``numpy.random.default_rng(seed)`` (seed 0 unless
                        given, so that runs are reproducible)
``mixed``               :class:`MixedPool2d`, one learned blend, ``a = 0.5``
``gated``               :class:`GatedPool2d`, gate weights starting at 0
======================  =====================================================

:func:`register` adds a name (for your own strategy); :func:`make_pool`
builds a layer by name.
"""

from __future__ import annotations

from .strategies.lp import LpPool2d
from .strategies.max import MaxPool2d
from .strategies.mean import MeanPool2d
from .strategies.mixed import GatedPool2d, MixedPool2d
from .strategies.stochastic import StochasticPool2d

__all__ = ["POOLS", "available", "make_pool", "register"]


def max_pool(kernel_size, stride=None, *, seed=None):
    """``MaxPool2d(kernel_size, stride)``."""
    return MaxPool2d(kernel_size, stride)


def mean_pool(kernel_size, stride=None, *, seed=None):
    """``MeanPool2d(kernel_size, stride)``."""
    return MeanPool2d(kernel_size, stride)


def lp_pool(kernel_size, stride=None, *, seed=None):
    """``LpPool2d(2, kernel_size, stride)``: the L2 norm of each window."""
    return LpPool2d(2, kernel_size, stride)


def stochastic_pool(kernel_size, stride=None, *, seed=None):
    """``StochasticPool2d(kernel_size, stride, rng=seed)``, seed 0 by default."""
    return StochasticPool2d(kernel_size, stride, rng=0 if seed is None else seed)


def mixed_pool(kernel_size, stride=None, *, seed=None):
    """``MixedPool2d(kernel_size, stride)``: learned ``a * max + (1 - a) * mean``."""
    return MixedPool2d(kernel_size, stride)


def gated_pool(kernel_size, stride=None, *, seed=None):
    """``GatedPool2d(kernel_size, stride)``: blend gated by each window's content."""
    return GatedPool2d(kernel_size, stride)


#: Short name -> factory ``(kernel_size, stride=None, *, seed=None) -> Pool2d``.
POOLS = {
    "max": max_pool,
    "mean": mean_pool,
    "avg": mean_pool,
    "lp": lp_pool,
    "stochastic": stochastic_pool,
    "mixed": mixed_pool,
    "gated": gated_pool,
}


def available():
    """The registered short names, sorted."""
    return sorted(POOLS)


def register(name, factory):
    """Register ``factory(kernel_size, stride=None, *, seed=None)`` under ``name``.

    Raises ``ValueError`` if ``name`` is taken by another factory.
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"a strategy name must be a non-empty string without ':', got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {factory!r}")
    known = POOLS.get(name)
    if known is not None and known is not factory:
        raise ValueError(f"pooling strategy name {name!r} is already registered ({known!r})")
    POOLS[name] = factory
    return factory


def make_pool(name, kernel_size, stride=None, *, seed=None):
    """Build the strategy registered as ``name`` (see the table above)."""
    try:
        factory = POOLS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown pooling strategy {name!r}; known: {', '.join(available())}"
        ) from None
    return factory(kernel_size, stride, seed=seed)
