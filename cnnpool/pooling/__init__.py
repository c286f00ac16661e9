"""Pooling layers: the :class:`Pool2d` base and its strategies."""

from . import registry
from .adaptive import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    AdaptiveMeanPool2d,
    GlobalAvgPool2d,
    GlobalMaxPool2d,
    GlobalMeanPool2d,
)
from .base import Pool2d
from .compiled import CompiledPool2d, WindowStrategy
from .geometry import PoolGeometry, output_size
from .lp import LpPool2d
from .max import MaxPool2d
from .mean import AvgPool2d, MeanPool2d
from .mixed import GatedPool2d, MixedPool2d
from .registry import make_pool
from .stochastic import StochasticPool2d
from .unpool import MaxUnpool2d

__all__ = ["Pool2d", "PoolGeometry", "output_size", "MaxPool2d", "MeanPool2d", "AvgPool2d"]
__all__ += [
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AdaptiveMeanPool2d",
    "CompiledPool2d",
    "GatedPool2d",
    "GlobalAvgPool2d",
    "GlobalMaxPool2d",
    "GlobalMeanPool2d",
    "LpPool2d",
    "MaxUnpool2d",
    "MixedPool2d",
    "StochasticPool2d",
    "WindowStrategy",
    "make_pool",
    "registry",
]
