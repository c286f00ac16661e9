"""Pooling layers: the :class:`Pool2d` base and its strategies."""

from ..registry import make_pool
from .base import Pool2d
from .geometry import PoolGeometry, output_size
from .strategies.adaptive import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    AdaptiveMeanPool2d,
    GlobalAvgPool2d,
    GlobalMaxPool2d,
    GlobalMeanPool2d,
)
from .strategies.fractional import FractionalMaxPool2d
from .strategies.lp import LpPool2d
from .strategies.max import MaxPool2d
from .strategies.mean import AvgPool2d, MeanPool2d
from .strategies.mixed import GatedPool2d, MixedPool2d
from .strategies.stochastic import StochasticPool2d
from .strategies.unpool import MaxUnpool2d
from .tiers.compiled import CompiledPool2d, WindowStrategy
from .tiers.jit import JitPool2d, JitStrategyError

__all__ = ["Pool2d", "PoolGeometry", "output_size", "MaxPool2d", "MeanPool2d", "AvgPool2d"]
__all__ += [
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AdaptiveMeanPool2d",
    "CompiledPool2d",
    "FractionalMaxPool2d",
    "GatedPool2d",
    "GlobalAvgPool2d",
    "GlobalMaxPool2d",
    "GlobalMeanPool2d",
    "JitPool2d",
    "JitStrategyError",
    "LpPool2d",
    "MaxUnpool2d",
    "MixedPool2d",
    "StochasticPool2d",
    "WindowStrategy",
    "make_pool",
]
