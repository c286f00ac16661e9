"""cnnpool: compiled CNN layers for understanding and comparing pooling.

NumPy arrays in NCHW layout, float32 and float64, gradients that match
PyTorch.  Start with :class:`MaxPool2d`, :class:`MeanPool2d` and the
:class:`Pool2d` base for your own strategy; check any layer with
:func:`gradcheck`.
"""

from ._version import __version__

try:
    from . import _parallel  # noqa: F401  (the smallest compiled module)
except ImportError as exc:  # pragma: no cover - depends on how it was installed
    import os as _os

    raise ImportError(
        "cnnpool's compiled extensions are not built in "
        f"{_os.path.dirname(__file__)}. If this is the source checkout, install it "
        "first ('pip install .' or 'pip install -e .') and run the tests with "
        "'pytest' (not 'python -m pytest', which imports the unbuilt source folder)."
    ) from exc

# Before any kernel module is imported: importing _dispatch installs the
# finder that gives each kernel module its best CPU variant.
from . import _dispatch  # noqa: F401

# datasets and experiments (the max-vs-mean comparison) are light to import:
# scikit-image, scipy, matplotlib and joblib load only when they are used.
from . import datasets as datasets
from . import experiments as experiments
from . import registry as registry
from ._config import show_config
from ._parallel import get_num_threads, set_num_threads
from .activations import ReLU, Sigmoid, Tanh
from .conv import Conv2d
from .gradcheck import gradcheck
from .layer import BackwardBeforeForwardError, Layer, Parameter
from .linear import Flatten, Linear
from .losses import MSELoss, SoftmaxCrossEntropy
from .model import Sequential, load
from .optim import SGD, Adam
from .pooling import (  # 1-D and 3-D pooling
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveAvgPool3d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AdaptiveMaxPool3d,
    AdaptiveMeanPool1d,
    AdaptiveMeanPool2d,
    AdaptiveMeanPool3d,
    AvgPool1d,
    AvgPool2d,
    AvgPool3d,
    CompiledPool2d,
    FractionalMaxPool2d,
    GatedPool2d,
    GlobalAvgPool2d,
    GlobalMaxPool2d,
    GlobalMeanPool2d,
    JitPool2d,
    JitStrategyError,
    LpPool1d,
    LpPool2d,
    LpPool3d,
    MaxPool1d,
    MaxPool2d,
    MaxPool3d,
    MaxUnpool1d,
    MaxUnpool2d,
    MaxUnpool3d,
    MeanPool1d,
    MeanPool2d,
    MeanPool3d,
    MixedPool2d,
    Pool2d,
    PoolGeometry,
    StochasticPool2d,
    make_pool,
)
from .registry import register, unregister

__all__ = [
    "__version__",
    "Adam",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AdaptiveMeanPool2d",
    "AvgPool2d",
    "BackwardBeforeForwardError",
    "CompiledPool2d",
    "Conv2d",
    "Flatten",
    "FractionalMaxPool2d",
    "GatedPool2d",
    "get_num_threads",
    "GlobalAvgPool2d",
    "GlobalMaxPool2d",
    "GlobalMeanPool2d",
    "gradcheck",
    "JitPool2d",
    "JitStrategyError",
    "Layer",
    "Linear",
    "load",
    "LpPool2d",
    "make_pool",
    "MaxPool2d",
    "MaxUnpool2d",
    "MeanPool2d",
    "MixedPool2d",
    "MSELoss",
    "Parameter",
    "Pool2d",
    "PoolGeometry",
    "register",
    "ReLU",
    "Sequential",
    "set_num_threads",
    "show_config",
    "SGD",
    "Sigmoid",
    "SoftmaxCrossEntropy",
    "StochasticPool2d",
    "Tanh",
    "unregister",
]

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
