"""What defines one comparison: :class:`Settings`, stored whole in ``results.json``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .strategies import resolve_strategy

__all__ = ["Settings"]


@dataclass
class Settings:
    """Everything that defines an experiment; stored whole in ``results.json``.

    The defaults are the ones ``cnnpool-compare`` runs with no arguments:
    chosen, by measurement on a 2-core machine, to finish in well under a
    minute while still giving several paired seeds.
    """

    dataset: str = "textures"
    pools: tuple = ("max", "mean")
    seeds: tuple = tuple(range(10))
    epochs: int = 6
    batch_size: int = 32
    lr: float = 0.003
    optimizer: str = "adam"
    momentum: float = 0.9
    channels: tuple = (8, 16)
    kernel_size: int = 2
    dtype: str = "float32"
    standardize: bool = True
    jobs: int = 1
    dataset_options: dict = field(default_factory=dict)

    def __post_init__(self):
        self.pools = tuple(self.pools)
        self.seeds = tuple(int(s) for s in self.seeds)
        self.channels = tuple(int(c) for c in self.channels)
        if self.dataset not in ("faces", "textures"):
            raise ValueError(f"dataset must be 'faces' or 'textures', got {self.dataset!r}")
        if not self.pools:
            raise ValueError("pools must name at least one pooling strategy")
        if len(set(self.pools)) != len(self.pools):
            raise ValueError(f"pools must not repeat a strategy, got {self.pools}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be distinct non-negative ints, got {self.seeds}")
        for name in ("epochs", "batch_size", "jobs", "kernel_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if len(self.channels) != 2 or min(self.channels) < 1:
            raise ValueError(f"channels must be two positive ints, got {self.channels}")

    def to_dict(self):
        d = asdict(self)
        d["pools"] = [p if isinstance(p, str) else resolve_strategy(p).spec for p in self.pools]
        d["seeds"] = list(self.seeds)
        d["channels"] = list(self.channels)
        return d
