"""What defines one comparison: :class:`Settings`, stored whole in ``results.json``."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

from .arch import DEFAULT_ARCH, parse_arch
from .strategies import resolve_strategy

#: The built-in data sets (``--dataset``); anything else is a folder or an .npz file.
BUILTIN_DATASETS = ("faces", "textures")

#: Learning rates ``--tune-lr`` tries when no grid is given: the rate and its
#: neighbours a factor of 3 away.
LR_GRID_STEPS = (1 / 3, 1.0, 3.0)

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
    arch: str = DEFAULT_ARCH
    kernel_size: int = 2
    dtype: str = "float32"
    standardize: bool = True
    jobs: int = 1
    color: str | None = None
    size: tuple | None = None
    fit: str = "resize"
    test_fraction: float = 0.25
    strict: bool = False
    tune_lr: bool = False
    lr_grid: tuple | None = None
    val_fraction: float = 0.2
    dataset_options: dict = field(default_factory=dict)

    def __post_init__(self):
        from ..datasets.images import COLORS, FIT_MODES, parse_size

        self.pools = tuple(self.pools)
        self.seeds = tuple(int(s) for s in self.seeds)
        if isinstance(self.dataset, os.PathLike):
            self.dataset = os.fspath(self.dataset)
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"dataset must be a name or a path, got {self.dataset!r}")
        if self.dataset not in BUILTIN_DATASETS:
            if not (os.path.isdir(self.dataset) or os.path.isfile(self.dataset)):
                raise ValueError(
                    f"dataset must be 'faces', 'textures', a folder of class subfolders or an "
                    f".npz file; {self.dataset!r} does not exist"
                )
            self.dataset = os.path.abspath(self.dataset)
        elif self.color is not None or self.size is not None:
            raise ValueError(
                "color and size apply to your own data (a folder or an .npz file), not to "
                f"the built-in {self.dataset!r}"
            )
        if self.color is not None and self.color not in COLORS:
            raise ValueError(f"color must be one of {COLORS} or None, got {self.color!r}")
        self.size = parse_size(self.size)
        if self.fit not in FIT_MODES:
            raise ValueError(f"fit must be one of {FIT_MODES}, got {self.fit!r}")
        for name in ("test_fraction", "val_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
        parse_arch(self.arch)
        if isinstance(self.arch, (tuple, list)):
            self.arch = f"c{self.arch[0]}-p-c{self.arch[1]}-p-fc"
        if self.lr_grid is not None:
            grid = tuple(self.lr_grid)
            if not grid or not all(
                isinstance(v, (int, float))
                and not isinstance(v, bool)
                and math.isfinite(v)
                and v > 0
                for v in grid
            ):
                raise ValueError(f"lr_grid must be positive numbers, got {self.lr_grid!r}")
            if len(set(grid)) != len(grid):
                raise ValueError(f"lr_grid must not repeat a rate, got {self.lr_grid!r}")
            self.lr_grid = tuple(float(v) for v in grid)
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

    def to_dict(self):
        d = asdict(self)
        d["pools"] = [p if isinstance(p, str) else resolve_strategy(p).spec for p in self.pools]
        d["seeds"] = list(self.seeds)
        d["size"] = list(self.size) if self.size is not None else None
        d["lr_grid"] = list(self.grid()) if self.tune_lr else None
        return d

    def grid(self):
        """The learning rates ``tune_lr`` tries: ``lr_grid``, or ``lr`` x (1/3, 1, 3)."""
        if self.lr_grid is not None:
            return tuple(sorted(self.lr_grid))
        return tuple(float(f"{self.lr * f:.3g}") for f in LR_GRID_STEPS)
