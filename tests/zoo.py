"""Every public layer, built fresh and deterministically, for the reliability tests.

``layers(dtype)`` returns ``(name, factory, input_kind)`` triples: the
factory builds a new, seeded layer; ``input_kind`` is ``"image"`` for
(N, C, H, W) inputs, ``"signal"`` for (N, C, L), ``"volume"`` for
(N, C, D, H, W) and ``"flat"`` for (N, features).  Used by
``test_threads.py`` (concurrency, OpenMP determinism), ``test_leaks.py``
and ``test_aliasing.py``.  Every factory is built once here, so a layer
whose constructor breaks fails every test that uses the zoo instead of
silently leaving it.
"""

from __future__ import annotations

import numpy as np

import cnnpool as cp

C = 4  # image channels; flat inputs have FEATURES features
FEATURES = 48


def _pool(cls, *args, fast=True, **kwargs):
    def make():
        layer = cls(*args, **kwargs)
        layer.use_fast_path = fast
        return layer

    return make


def _gated(*args):
    """A GatedPool2d whose gate differs between windows (its weight starts at 0)."""
    layer = cp.pooling.GatedPool2d(*args)
    layer.weight.data[:] = np.linspace(-0.5, 0.5, layer.weight.data.size)
    return layer


def layers(dtype=np.float64):
    zoo = [
        ("max2x2", _pool(cp.MaxPool2d, 2), "image"),
        ("max3x3s2p1", _pool(cp.MaxPool2d, 3, 2, 1), "image"),
        ("max3x3s1-overlap", _pool(cp.MaxPool2d, 3, 1, 1), "image"),
        ("max-dilated-ceil", _pool(cp.MaxPool2d, (3, 2), (2, 1), (1, 0), (2, 1), True), "image"),
        ("max-generic", _pool(cp.MaxPool2d, 3, 2, 1, fast=False), "image"),
        ("mean2x2", _pool(cp.MeanPool2d, 2), "image"),
        ("mean3x3s1-overlap", _pool(cp.MeanPool2d, 3, 1, 1), "image"),
        ("mean-ceil-nopad", _pool(cp.MeanPool2d, 3, 2, 1, True, count_include_pad=False), "image"),
        ("mean-generic", _pool(cp.MeanPool2d, 3, 2, 1, fast=False), "image"),
        ("conv3x3", lambda: cp.Conv2d(C, 3, 3, padding=1, dtype=dtype, rng=0), "image"),
        (
            "conv-strided-dilated",
            lambda: cp.Conv2d(C, 2, 3, stride=2, padding=2, dilation=2, dtype=dtype, rng=1),
            "image",
        ),
        ("conv1x1", lambda: cp.Conv2d(C, 2, 1, dtype=dtype, rng=2), "image"),
        ("lp2", lambda: cp.pooling.LpPool2d(2, 3, 2), "image"),
        ("mixed", lambda: cp.pooling.MixedPool2d(2), "image"),
        ("mixed-per-channel", lambda: cp.pooling.MixedPool2d(3, 2, 1, channels=C), "image"),
        ("gated", lambda: cp.pooling.GatedPool2d(2), "image"),
        ("stochastic", lambda: cp.pooling.StochasticPool2d(2, rng=0), "image"),
        ("stochastic-overlap", lambda: cp.pooling.StochasticPool2d(3, 2, 1, rng=0), "image"),
        ("stochastic-eval", lambda: cp.pooling.StochasticPool2d(3, 1, 1, rng=0).eval(), "image"),
        ("gated-overlap", lambda: _gated(3, 2, 1), "image"),
        ("fractional", lambda: cp.FractionalMaxPool2d(2, output_ratio=0.7, rng=0), "image"),
        ("fractional-overlap", lambda: cp.FractionalMaxPool2d(3, (7, 6), rng=0), "image"),
        ("adaptive-max", lambda: cp.pooling.AdaptiveMaxPool2d((3, 5)), "image"),
        ("adaptive-mean", lambda: cp.pooling.AdaptiveMeanPool2d((5, 3)), "image"),
        ("global-max", lambda: cp.GlobalMaxPool2d(), "image"),
        ("global-mean", lambda: cp.GlobalMeanPool2d(), "image"),
        # 1-D and 3-D pooling, asymmetric and "same" padding (issue 17)
        ("max1d", _pool(cp.MaxPool1d, 3, 2, 1), "signal"),
        ("max1d-generic", _pool(cp.MaxPool1d, 3, 2, 1, fast=False), "signal"),
        ("mean1d-asym-ceil", _pool(cp.MeanPool1d, 4, 2, (1, 2), True), "signal"),
        ("lp1d", lambda: cp.LpPool1d(2, 3, 2), "signal"),
        ("adaptive-max1d", lambda: cp.AdaptiveMaxPool1d(7), "signal"),
        ("adaptive-mean1d", lambda: cp.AdaptiveMeanPool1d(7), "signal"),
        ("max3d", _pool(cp.MaxPool3d, 3, 2, 1), "volume"),
        ("max3d-same", _pool(cp.MaxPool3d, 2, 2, "same"), "volume"),
        ("mean3d", _pool(cp.MeanPool3d, 3, 2, 1, count_include_pad=False), "volume"),
        ("mean3d-generic", _pool(cp.MeanPool3d, 2, fast=False), "volume"),
        ("lp3d", lambda: cp.LpPool3d(2, 2), "volume"),
        ("adaptive-max3d", lambda: cp.AdaptiveMaxPool3d(3), "volume"),
        ("adaptive-mean3d", lambda: cp.AdaptiveMeanPool3d((2, 3, 4)), "volume"),
        ("max-same-lower", _pool(cp.MaxPool2d, 3, 2, "same_lower"), "image"),
        ("mean-asym", _pool(cp.MeanPool2d, 3, 2, (0, 2, 1, 0)), "image"),
        ("linear", lambda: cp.Linear(FEATURES, 5, dtype=dtype, rng=0), "flat"),
        ("relu", lambda: cp.ReLU(), "image"),
        ("tanh", lambda: cp.Tanh(), "image"),
        ("sigmoid", lambda: cp.Sigmoid(), "image"),
        ("flatten", lambda: cp.Flatten(), "image"),
    ]
    for name, make, _ in zoo:
        try:
            make()
        except Exception as exc:
            raise AssertionError(f"zoo layer {name!r} cannot be built: {exc!r}") from exc
    return zoo


def make_input(kind, rng, dtype, n, size):
    """A random input of the layer's kind: (n, C, size, size) for images,
    (n, C, size * size) for signals, (n, C, v, v + 1, v + 2) with
    ``v = size // 2`` for volumes, (n, FEATURES) for flat inputs."""
    v = max(size // 2, 4)
    shape = {
        "image": (n, C, size, size),
        "signal": (n, C, size * size),
        "volume": (n, C, v, v + 1, v + 2),
        "flat": (n, FEATURES),
    }[kind]
    return rng.standard_normal(shape).astype(dtype)
