"""The network of the comparison: the same CNN for every strategy, only the pooling differs.

A network is written as a short spec, layers separated by ``-``:

``c16``
    3x3 convolution with 16 output channels (padding 1), then ReLU.
``c16k5``
    The same with a 5x5 kernel (padding 2; kernels are odd, so that the
    padding keeps the size).
``p``
    A pooling layer: the strategy under comparison, with the experiment's
    kernel size (``--pool-size``, stride equal to it).
``fc64``
    A hidden fully connected layer of 64 units, then ReLU (the feature
    maps are flattened before the first one).
``fc``
    The last layer, fully connected to one output per class (flattening
    first if needed).  Every spec ends with it.

The default ``c8-p-c16-p-fc`` is the network the comparison has always
used.  Layers with weights draw their initial values from one generator
seeded by the run's seed, in the order they appear, so the weights on a
seed do not depend on the pooling (``results.json`` proves it with a
checksum per run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_ARCH", "Layer", "parse_arch", "build_model", "describe"]

#: The network ``cnnpool-compare`` trains when ``--arch`` is not given.
DEFAULT_ARCH = "c8-p-c16-p-fc"

# Bounds against typos that would allocate gigabytes or never finish.
MAX_LAYERS = 32
MAX_WIDTH = 4096
MAX_KERNEL = 15

_TOKEN = re.compile(r"^(?:c(?P<conv>\d+)(?:k(?P<k>\d+))?|(?P<pool>p)|fc(?P<fc>\d*))$")


@dataclass(frozen=True)
class Layer:
    """One element of a parsed spec.

    ``kind`` is ``"conv"``, ``"pool"``, ``"hidden"`` or ``"fc"``; ``width``
    the output channels or units; ``kernel`` a convolution's kernel size.
    """

    kind: str
    width: int = 0
    kernel: int = 0

    def text(self, pool_size=2, num_classes=None):
        """How the layer reads in a description: ``conv3x3(8) → ReLU``, ``pool2x2``, ..."""
        if self.kind == "conv":
            return f"conv{self.kernel}x{self.kernel}({self.width}) → ReLU"
        if self.kind == "pool":
            return f"pool{pool_size}x{pool_size}"
        if self.kind == "hidden":
            return f"linear({self.width}) → ReLU"
        return f"linear({num_classes if num_classes is not None else 'classes'})"


def parse_arch(spec):
    """``"c8-p-c16-p-fc"`` -> a tuple of :class:`Layer`.

    Also accepts a pair of ints ``(c1, c2)``: the default shape with those
    channel counts (``c{c1}-p-c{c2}-p-fc``).

    Raises
    ------
    ValueError
        Saying which element is wrong and what is accepted.
    """
    if (
        isinstance(spec, (tuple, list))
        and len(spec) == 2
        and all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in spec)
    ):
        spec = f"c{int(spec[0])}-p-c{int(spec[1])}-p-fc"
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"arch must be a spec such as {DEFAULT_ARCH!r}, got {spec!r}")
    tokens = [t.strip().lower() for t in spec.strip().split("-")]
    if len(tokens) > MAX_LAYERS:
        raise ValueError(f"arch {spec!r}: at most {MAX_LAYERS} layers, got {len(tokens)}")
    layers = []
    for i, tok in enumerate(tokens, 1):
        m = _TOKEN.match(tok)
        if m is None:
            raise ValueError(
                f"arch {spec!r}: element {i} {tok!r} is not one of cN (3x3 conv with N "
                "channels + ReLU), cNkK (KxK conv), p (the pooling under comparison), fcN "
                f"(hidden linear + ReLU), fc (the output layer); e.g. {DEFAULT_ARCH!r}"
            )
        if m["conv"] is not None:
            width, k = int(m["conv"]), int(m["k"] or 3)
            if not 1 <= width <= MAX_WIDTH:
                raise ValueError(f"arch {spec!r}: {tok!r} needs 1 to {MAX_WIDTH} channels")
            if k % 2 == 0 or not 1 <= k <= MAX_KERNEL:
                raise ValueError(
                    f"arch {spec!r}: {tok!r} needs an odd kernel size from 1 to {MAX_KERNEL} "
                    "(the padding k // 2 then keeps the image size)"
                )
            layers.append(Layer("conv", width, k))
        elif m["pool"]:
            layers.append(Layer("pool"))
        elif m["fc"]:
            width = int(m["fc"])
            if not 1 <= width <= MAX_WIDTH:
                raise ValueError(f"arch {spec!r}: {tok!r} needs 1 to {MAX_WIDTH} units")
            layers.append(Layer("hidden", width))
        else:
            layers.append(Layer("fc"))
    kinds = [layer.kind for layer in layers]
    if kinds[-1] != "fc" or kinds.count("fc") != 1:
        raise ValueError(
            f"arch {spec!r}: end with exactly one 'fc' (the output layer, one unit per class)"
        )
    if "pool" not in kinds:
        raise ValueError(f"arch {spec!r} has no pooling layer 'p': the strategies would not differ")
    first_fc = min(i for i, k in enumerate(kinds) if k in ("hidden", "fc"))
    if any(k in ("conv", "pool") for k in kinds[first_fc:]):
        raise ValueError(
            f"arch {spec!r}: convolutions and pooling come before the fully connected layers"
        )
    return tuple(layers)


def build_model(
    pool_factory, image_shape, num_classes, arch=DEFAULT_ARCH, dtype=np.float32, seed=0, pool_size=2
):
    """The comparison CNN of ``arch``, with ``pool_factory()`` at every ``p``.

    Parameters
    ----------
    pool_factory : callable
        Called with no arguments once per ``p`` of the spec, in order.
    image_shape : (C, H, W)
    num_classes : int
    arch : str or (int, int)
        The spec (see the module docs); a pair of ints ``(c1, c2)`` means
        ``c{c1}-p-c{c2}-p-fc``.
    dtype : float32 or float64
    seed : int
        Seeds the initial weights.  Layers with weights draw from one
        generator in order, so the weights do not depend on the pooling.
    pool_size : int
        Only used in error messages (the factory sets the kernel size).

    Returns
    -------
    cnnpool.Sequential

    Raises
    ------
    ValueError
        A bad spec, or one whose pooling shrinks the images to nothing.
    """
    import cnnpool as cp

    layers = parse_arch(arch)
    rng = np.random.default_rng(seed)
    c, h, w = image_shape
    out = []
    flat = None
    for i, layer in enumerate(layers, 1):
        if layer.kind == "conv":
            pad = layer.kernel // 2
            out += [
                cp.Conv2d(c, layer.width, layer.kernel, padding=pad, dtype=dtype, rng=rng),
                cp.ReLU(),
            ]
            c = layer.width
        elif layer.kind == "pool":
            pool = pool_factory()
            try:
                _, _, h2, w2 = pool.output_shape((1, c, h, w))
            except ValueError as exc:
                h2 = w2 = 0
                why = str(exc)
            else:
                why = ""
            if min(h2, w2) < 1:
                raise ValueError(
                    f"arch {arch!r}: pooling layer {i} gets {h}x{w} feature maps, too small "
                    f"for {pool_size}x{pool_size} pooling; use fewer 'p' or larger images"
                    + (f" ({why})" if why else "")
                )
            h, w = h2, w2
            out.append(pool)
        else:
            if flat is None:
                flat = c * h * w
                out.append(cp.Flatten())
            width = layer.width if layer.kind == "hidden" else num_classes
            out.append(cp.Linear(flat, width, dtype=dtype, rng=rng))
            if layer.kind == "hidden":
                out.append(cp.ReLU())
            flat = width
    return cp.Sequential(*out)


def describe(settings, num_classes):
    """The architecture of ``settings`` as a dict for ``results.json``."""
    layers = parse_arch(settings.arch)
    k = settings.kernel_size
    parts = []
    for layer in layers:
        if layer.kind in ("hidden", "fc") and "flatten" not in parts:
            parts.append("flatten")
        parts.append(layer.text(k, num_classes))
    return {
        "spec": settings.arch,
        "description": " → ".join(parts),
        "pool": "the strategy under comparison",
        "kernel_size": k,
        "stride": k,
        "conv_padding": "k // 2 (size kept)",
    }
