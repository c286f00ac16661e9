"""Hypothesis strategies for pooling geometries and inputs, shared by the test modules."""

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from reference import pool_output_size


@st.composite
def pool_geometry(draw, dilation=True, max_kernel=5):
    """A random valid (kernel, stride, padding, dilation, ceil_mode, H, W)."""
    k = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    s = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilation else (1, 1)
    ceil = draw(st.booleans())
    H = draw(st.integers(1, 13))
    W = draw(st.integers(1, 13))
    for size, kk, ss, pp, dd in zip((H, W), k, s, p, d):
        out = pool_output_size(size, kk, ss, pp, dd, ceil)
        assume(out >= 1)
        # every window must hold an input element (else the layer refuses it)
        for o in range(out):
            taps = [o * ss - pp + i * dd for i in range(kk)]
            assume(any(0 <= t < size for t in taps))
    return k, s, p, d, ceil, H, W


@st.composite
def pool_input(draw, H, W, dtype=None):
    """An (N, C, H, W) input with ties, NaN, -inf and odd memory layouts."""
    n = draw(st.integers(0, 2))
    c = draw(st.integers(1, 3))
    dtype = dtype or draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["normal", "ties", "nan", "neginf"]))
    if kind == "ties":
        x = rng.integers(0, 3, size=(n, c, H, W)).astype(dtype)
    else:
        x = rng.standard_normal((n, c, H, W)).astype(dtype)
    if kind == "nan":
        x[rng.random(x.shape) < 0.15] = np.nan
    if kind == "neginf":
        x[rng.random(x.shape) < 0.5] = -np.inf
    layout = draw(st.sampled_from(["C", "F", "reversed", "sliced"]))
    if layout == "F":
        x = np.asfortranarray(x)
    elif layout == "reversed":
        x = x[:, :, ::-1, ::-1].copy()[:, :, ::-1, ::-1]  # negative strides
    elif layout == "sliced":
        big = np.zeros((n, c, H * 2, W + 1), dtype=dtype)
        big[:, :, ::2, 1:] = x
        x = big[:, :, ::2, 1:]
    return x


@st.composite
def pool_geometry_nd(draw, rank, forms=("int",), dilation=True, max_kernel=4, max_size=9):
    """A random valid N-d pooling geometry.

    Returns ``(k, s, padding, pads, d, ceil, spatial)``: ``padding`` as the
    layer takes it (a form drawn from ``forms``: ``"int"`` -- one int per
    axis, PyTorch's; ``"asym"`` -- ``2n`` ints (before, after) per axis;
    ``"same"``, ``"same_lower"``, ``"valid"``) and ``pads`` the resolved
    ``(before, after)`` per axis, computed here independently of cnnpool.
    """
    from reference import pool_output_size_nd, same_pads

    k = tuple(draw(st.integers(1, max_kernel)) for _ in range(rank))
    s = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    d = tuple(draw(st.integers(1, 2)) for _ in range(rank)) if dilation else (1,) * rank
    ceil = draw(st.booleans())
    spatial = tuple(draw(st.integers(1, max_size)) for _ in range(rank))
    form = draw(st.sampled_from(forms))
    if form == "int":
        padding = tuple(draw(st.integers(0, kk // 2)) for kk in k)
        pads = tuple((p, p) for p in padding)
    elif form == "asym":
        pads = tuple(
            (draw(st.integers(0, dd * (kk - 1))), draw(st.integers(0, dd * (kk - 1))))
            for kk, dd in zip(k, d)
        )
        padding = tuple(p for pair in pads for p in pair)
    elif form == "valid":
        padding, pads = "valid", ((0, 0),) * rank
    else:
        padding = form
        pads = tuple(
            same_pads(L, kk, ss, dd, lower=form == "same_lower")
            for L, kk, ss, dd in zip(spatial, k, s, d)
        )
    for L, kk, ss, (pb, pa), dd in zip(spatial, k, s, pads, d):
        out = pool_output_size_nd(L, kk, ss, (pb, pa), dd, ceil)
        assume(out >= 1)
        for o in range(out):  # every window must hold an input element
            assume(any(0 <= o * ss - pb + i * dd < L for i in range(kk)))
    return k, s, padding, pads, d, ceil, spatial


@st.composite
def pool_input_nd(draw, spatial, dtype=None, batch=True):
    """An ``(N, C, *spatial)`` input (``(C, *spatial)`` unless ``batch``) with
    ties, NaN, inf and odd memory layouts."""
    n = draw(st.integers(0 if batch else 1, 2))
    c = draw(st.integers(1, 3))
    dtype = dtype or draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (n, c) + tuple(spatial)
    kind = draw(st.sampled_from(["normal", "ties", "nan", "inf"]))
    if kind == "ties":
        x = rng.integers(0, 3, size=shape).astype(dtype)
    else:
        x = rng.standard_normal(shape).astype(dtype)
    if kind == "nan":
        x[rng.random(shape) < 0.15] = np.nan
    if kind == "inf":
        x[rng.random(shape) < 0.3] = -np.inf
        x[rng.random(shape) < 0.1] = np.inf
    layout = draw(st.sampled_from(["C", "F", "reversed"]))
    if layout == "F":
        x = np.asfortranarray(x)
    elif layout == "reversed":
        x = np.flip(np.flip(x, -1).copy(), -1)  # negative strides
    return x if batch else x[0]
