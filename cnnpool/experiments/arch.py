"""The network of the comparison: the same CNN for every strategy, only the pooling differs."""

from __future__ import annotations

import numpy as np

__all__ = ["build_model", "describe"]


def build_model(pool_factory, image_shape, num_classes, channels=(8, 16), dtype=np.float32, seed=0):
    """The comparison CNN: conv → ReLU → pool → conv → ReLU → pool → flatten → linear.

    Parameters
    ----------
    pool_factory : callable
        Called twice, with no arguments, for the two pooling layers.
    image_shape : (C, H, W)
    num_classes : int
    channels : (int, int)
        Output channels of the two 3x3 convolutions (padding 1).
    dtype : float32 or float64
    seed : int
        Seeds the initial weights.  Layers with weights draw from one
        generator in order, so the weights do not depend on the pooling.

    Returns
    -------
    cnnpool.Sequential
    """
    import cnnpool as cp

    rng = np.random.default_rng(seed)
    c, h, w = image_shape
    c1, c2 = channels
    pool1, pool2 = pool_factory(), pool_factory()
    conv1 = cp.Conv2d(c, c1, 3, padding=1, dtype=dtype, rng=rng)
    _, _, h1, w1 = pool1.output_shape((1, c1, h, w))
    conv2 = cp.Conv2d(c1, c2, 3, padding=1, dtype=dtype, rng=rng)
    _, _, h2, w2 = pool2.output_shape((1, c2, h1, w1))
    linear = cp.Linear(c2 * h2 * w2, num_classes, dtype=dtype, rng=rng)
    return cp.Sequential(conv1, cp.ReLU(), pool1, conv2, cp.ReLU(), pool2, cp.Flatten(), linear)


def describe(settings, num_classes):
    """The architecture of ``settings`` as a dict for ``results.json``."""
    c1, c2 = settings.channels
    k = settings.kernel_size
    return {
        "description": f"conv3x3({c1}) → ReLU → pool{k}x{k} → conv3x3({c2}) → ReLU → "
        f"pool{k}x{k} → flatten → linear({num_classes})",
        "pool": "the strategy under comparison",
        "kernel_size": k,
        "stride": k,
        "conv_padding": 1,
    }
