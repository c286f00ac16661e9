"""The max-vs-mean pooling comparison: training runs, statistics and plots.

Submodules, each imported on first use so that ``import cnnpool`` stays
light (scipy, matplotlib and joblib are optional dependencies, installed by
``pip install "cnnpool[examples]"``):

``stats``
    Mean ± 95% confidence interval over seeds; paired differences and tests.
``plots``
    ``curves.png`` (loss and accuracy per epoch) and ``routing.png`` (where
    the gradient flows back through max versus mean pooling).
``run``
    The paired training experiment: same architecture, same initial weights,
    same batch order per seed; only the pooling layer changes.
``cli``
    The ``cnnpool-compare`` command.
"""

import importlib

__all__ = ["stats", "plots", "run", "cli"]


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
