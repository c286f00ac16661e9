"""Pooling layers: the :class:`Pool2d` base and its strategies."""

from .base import Pool2d
from .geometry import PoolGeometry, output_size
from .max import MaxPool2d
from .mean import AvgPool2d, MeanPool2d

__all__ = ["Pool2d", "PoolGeometry", "output_size", "MaxPool2d", "MeanPool2d", "AvgPool2d"]
