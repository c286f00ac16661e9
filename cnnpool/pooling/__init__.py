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

# 1-D and 3-D pooling (issue 17): the same strategies over other ranks.
from .strategies.adaptive import (  # noqa: E402
    AdaptiveAvgPool1d,
    AdaptiveAvgPool3d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool3d,
    AdaptiveMeanPool1d,
    AdaptiveMeanPool3d,
)
from .strategies.lp import LpPool1d, LpPool3d  # noqa: E402
from .strategies.max import MaxPool1d, MaxPool3d  # noqa: E402
from .strategies.mean import AvgPool1d, AvgPool3d, MeanPool1d, MeanPool3d  # noqa: E402
from .strategies.unpool import MaxUnpool1d, MaxUnpool3d  # noqa: E402

__all__ += [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool3d",
    "AdaptiveMeanPool1d",
    "AdaptiveMeanPool3d",
    "AvgPool1d",
    "AvgPool3d",
    "LpPool1d",
    "LpPool3d",
    "MaxPool1d",
    "MaxPool3d",
    "MaxUnpool1d",
    "MaxUnpool3d",
    "MeanPool1d",
    "MeanPool3d",
]
