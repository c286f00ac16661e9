"""1-D and 3-D pooling, asymmetric and "same"/"valid" padding, unbatched input.

Every new layer against ``torch.nn.functional`` (values, indices, input
gradients) and against the plain-NumPy N-d reference of ``reference.py``
(which also pads explicitly for the ONNX ``SAME_UPPER``/``SAME_LOWER`` modes);
both tiers (compiled kernels and the generic NumPy tier); a user's strategy of
each kind (NumPy, compiled WindowStrategy, JIT) run in 1-D and 3-D through
``for_dims`` against its own NumPy tier; save/load; bad arguments.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import (
    max_pool_nd,
    max_pool_nd_backward,
    mean_divisor_nd,
    mean_pool_nd,
    mean_pool_nd_backward,
    same_pads,
)
from strategies import pool_geometry_nd, pool_input_nd

import cnnpool as cp
from cnnpool.pooling.strategies._lp import LpWindow

torch = pytest.importorskip("torch")
F = torch.nn.functional

MAX = {1: cp.MaxPool1d, 2: cp.MaxPool2d, 3: cp.MaxPool3d}
MEAN = {1: cp.MeanPool1d, 2: cp.MeanPool2d, 3: cp.MeanPool3d}
T_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
T_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
TIERS = pytest.mark.parametrize("fast", [True, False], ids=["kernel", "numpy"])


def _torch_grad(fn, x, g):
    tx = torch.tensor(x.copy(), requires_grad=True)  # a fresh array: no negative strides
    out = fn(tx)
    y = out[0] if isinstance(out, tuple) else out
    y.backward(torch.tensor(g))
    return out, tx.grad.numpy()


def _torch_pads(pads):
    """(before, after) per axis in axis order -> F.pad's order (last axis first)."""
    return [p for pair in reversed(pads) for p in pair]


def _tol(dtype):
    return 1e-5 if dtype == np.float32 else 1e-12


# --------------------------------------------------------------- PyTorch forms
@TIERS
@pytest.mark.parametrize("rank", [1, 3])
@given(data=st.data())
def test_max_pool_nd_matches_torch(rank, fast, data):
    k, s, p, _, d, ceil, spatial = data.draw(
        pool_geometry_nd(rank, max_size=7 if rank == 3 else 13)
    )
    x = data.draw(pool_input_nd(spatial))
    pool = MAX[rank](k, s, p, d, ceil)
    pool.use_fast_path = fast
    y = pool(x)
    g = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
    (ty, ti), tgx = _torch_grad(
        lambda t: T_MAX[rank](t, k, s, p, d, ceil, return_indices=True), x, g
    )
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(pool.indices, ti.numpy())
    np.testing.assert_allclose(pool.backward(g), tgx, rtol=_tol(x.dtype), atol=_tol(x.dtype))


@TIERS
@pytest.mark.parametrize("rank", [1, 3])
@given(data=st.data())
def test_mean_pool_nd_matches_torch(rank, fast, data):
    k, s, p, _, _, ceil, spatial = data.draw(
        pool_geometry_nd(rank, dilation=False, max_size=7 if rank == 3 else 13)
    )
    x = data.draw(pool_input_nd(spatial))
    x[~np.isfinite(x)] = 0.0  # inf - inf sums are NaN either way; finite sums here
    include = data.draw(st.booleans())
    override = data.draw(st.none() | st.integers(1, 9)) if rank == 3 else None
    pool = MEAN[rank](k, s, p, ceil, include, override)
    pool.use_fast_path = fast
    y = pool(x)
    g = np.random.default_rng(2).standard_normal(y.shape).astype(x.dtype)
    extra = (override,) if rank == 3 else ()  # avg_pool1d has no divisor_override
    tol = _tol(x.dtype)
    if rank == 3 and any(n < kk for n, kk in zip(spatial, k)):
        # avg_pool3d refuses an input smaller than the kernel even when the
        # padding or ceil_mode makes the windows fit (max_pool3d and the 1-D and
        # 2-D poolings do not): the plain-NumPy reference is the oracle there.
        div = mean_divisor_nd(spatial, k, s, p, ceil, include, override)
        ty = mean_pool_nd(x, k, s, p, ceil, div)
        tgx = mean_pool_nd_backward(g, x.shape, k, s, p, ceil, div)
        with pytest.raises(RuntimeError, match="smaller than kernel size"):
            T_AVG[3](torch.tensor(x.copy()), k, s, p, ceil, include, override)
    else:
        ty, tgx = _torch_grad(lambda t: T_AVG[rank](t, k, s, p, ceil, include, *extra), x, g)
        ty = ty.detach().numpy()
    np.testing.assert_allclose(y, ty, rtol=tol, atol=tol)
    np.testing.assert_allclose(pool.backward(g), tgx, rtol=tol, atol=tol)


def test_1d_max_and_mean_are_bit_identical_to_torch_on_the_compiled_kernels():
    x = np.random.default_rng(3).standard_normal((4, 5, 301)).astype(np.float32)
    g = np.random.default_rng(4).standard_normal((4, 5, 151)).astype(np.float32)
    for layer, fn in (
        (cp.MaxPool1d(3, 2, 1), lambda t: F.max_pool1d(t, 3, 2, 1)),
        (cp.MeanPool1d(3, 2, 1), lambda t: F.avg_pool1d(t, 3, 2, 1)),
    ):
        assert layer.has_kernel
        y = layer(x)
        ty, tgx = _torch_grad(fn, x, g)
        np.testing.assert_array_equal(y, ty.detach().numpy())
        np.testing.assert_array_equal(layer.backward(g), tgx)


# ------------------------------------------- asymmetric and same/valid padding
@TIERS
@pytest.mark.parametrize("rank", [1, 2, 3])
@given(data=st.data())
def test_padding_forms_match_the_explicit_reference(rank, fast, data):
    forms = ("asym", "same", "same_lower", "valid")
    k, s, padding, pads, d, ceil, spatial = data.draw(
        pool_geometry_nd(rank, forms, max_size=6 if rank == 3 else 9)
    )
    x = data.draw(pool_input_nd(spatial))
    pool = MAX[rank](k, s, padding, d, ceil)
    pool.use_fast_path = fast
    y = pool(x)
    ry, ri = max_pool_nd(x, k, s, pads, d, ceil)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(pool.indices, ri)
    g = np.random.default_rng(5).standard_normal(y.shape).astype(x.dtype)
    tol = _tol(x.dtype)
    np.testing.assert_allclose(
        pool.backward(g), max_pool_nd_backward(g, ri, x.shape), rtol=tol, atol=tol
    )

    x[~np.isfinite(x)] = 0.0
    include = data.draw(st.booleans())
    mean = MEAN[rank](k, s, padding, ceil, include, dilation=d)
    mean.use_fast_path = fast
    y = mean(x)
    div = mean_divisor_nd(spatial, k, s, pads, ceil, include, d=d)
    np.testing.assert_allclose(y, mean_pool_nd(x, k, s, pads, ceil, div, d), rtol=tol, atol=tol)
    np.testing.assert_allclose(
        mean.backward(g),
        mean_pool_nd_backward(g, x.shape, k, s, pads, ceil, div, d),
        rtol=tol,
        atol=tol,
    )


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("mode", ["same", "same_lower", "asym"])
def test_same_and_asymmetric_padding_match_torch_on_an_explicitly_padded_input(rank, mode):
    """ONNX's SAME_UPPER/LOWER and explicit pads = F.pad, then pooling without padding."""
    rng = np.random.default_rng(rank)
    spatial = {1: (11,), 2: (7, 10), 3: (5, 6, 7)}[rank]
    x = rng.standard_normal((2, 3) + spatial)
    k, s = (3,) * rank, (2,) * rank
    if mode == "asym":
        pads = ((0, 2), (1, 0), (2, 1))[:rank]
        padding = tuple(p for pair in pads for p in pair)
    else:
        pads = tuple(same_pads(n, 3, 2, 1, lower=mode == "same_lower") for n in spatial)
        padding = mode
    g = rng.standard_normal(cp.MaxPool2d.for_dims(rank)(k, s, padding)(x).shape)
    # Max: pad with -inf (padding never wins).
    pool = MAX[rank](k, s, padding)
    y = pool(x)
    ty, tgx = _torch_grad(
        lambda t: T_MAX[rank](F.pad(t, _torch_pads(pads), value=-np.inf), k, s), x, g
    )
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_allclose(pool.backward(g), tgx, atol=1e-12)
    # Mean, count_include_pad: pad with zeros, every window divides by its size.
    mean = MEAN[rank](k, s, padding)
    y = mean(x)
    ty, tgx = _torch_grad(lambda t: T_AVG[rank](F.pad(t, _torch_pads(pads)), k, s), x, g)
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(mean.backward(g), tgx, atol=1e-12)
    if mode != "asym":  # ONNX: SAME gives ceil(L / stride) outputs
        assert y.shape[2:] == tuple(-(-n // 2) for n in spatial)


def test_same_padding_is_resolved_per_input_size():
    pool = cp.MaxPool2d(3, 2, "same")
    assert pool(np.zeros((1, 1, 7, 8))).shape == (1, 1, 4, 4)
    assert pool(np.zeros((1, 1, 9, 5))).shape == (1, 1, 5, 3)
    assert pool.geometry.pads == ((1, 1), (1, 1))
    assert cp.MaxPool2d(2, 2, "same_lower").geometry_for(5, 5).pads == ((1, 0), (1, 0))
    assert cp.MaxPool2d(2, 2, "same").geometry_for(5, 5).pads == ((0, 1), (0, 1))
    assert cp.MaxPool2d(2, 2, "valid").geometry_for(5, 5).out_size == (2, 2)


def test_asymmetric_2d_padding_runs_on_the_compiled_kernels():
    x = np.random.default_rng(6).standard_normal((2, 3, 9, 8)).astype(np.float32)
    for cls in (cp.MaxPool2d, cp.MeanPool2d):
        fast, slow = cls(3, 2, (0, 2, 1, 0)), cls(3, 2, (0, 2, 1, 0))
        slow.use_fast_path = False
        assert fast.has_kernel
        y = fast(x)
        np.testing.assert_allclose(y, slow(x), rtol=1e-6, atol=1e-6)
        g = np.ones(y.shape, np.float32)
        np.testing.assert_allclose(fast.backward(g), slow.backward(g), rtol=1e-6)
        assert fast._state.tier == "kernel" and slow._state.tier == "numpy"


def test_mean_divisor_with_ceil_mode_and_trailing_padding():
    """count_include_pad counts taps below L + pad_after: the ceil_mode overhang past
    the trailing padding never counts (PyTorch's rule, one axis at a time)."""
    pool = cp.MeanPool1d(3, 2, (0, 1), ceil_mode=True)
    geom = pool.geometry_for(6)
    # windows start at 0, 2, 4: [0, 3), [2, 5), [4, 7) -> 6 is padding, nothing past it
    assert geom.out_size == (3,)
    np.testing.assert_array_equal(pool.divisor(geom), [3, 3, 3])
    pool = cp.MeanPool1d(3, 2, (0, 0), ceil_mode=True)  # [4, 7): 6 is overhang
    np.testing.assert_array_equal(pool.divisor(pool.geometry_for(6)), [3, 3, 2])
    div = mean_divisor_nd((6,), (3,), (2,), ((0, 1),), True, True)
    np.testing.assert_array_equal(div, [3, 3, 3])


# ------------------------------------------------------------- Lp, adaptive
@TIERS
@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, np.inf])
def test_lp_pool_nd_matches_torch(rank, p, fast):
    rng = np.random.default_rng(7)
    spatial = {1: (13,), 3: (5, 6, 7)}[rank]
    x = np.abs(rng.standard_normal((2, 3) + spatial)) + 0.1
    cls = {1: cp.LpPool1d, 3: cp.LpPool3d}[rank]
    fn = {1: F.lp_pool1d, 3: F.lp_pool3d}[rank]
    for k, s, ceil in ((2, None, False), (3, 2, True)):
        pool = cls(p, k, s, ceil)
        pool.use_fast_path = fast
        y = pool(x)
        g = rng.standard_normal(y.shape)
        ty, tgx = _torch_grad(lambda t, k=k, s=s, ceil=ceil: fn(t, p, k, s, ceil), x, g)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(pool.backward(g), tgx, rtol=1e-10, atol=1e-12)


@TIERS
@pytest.mark.parametrize("rank", [1, 3])
@given(data=st.data())
def test_adaptive_nd_matches_torch(rank, fast, data):
    spatial = tuple(data.draw(st.integers(1, 9)) for _ in range(rank))
    out = tuple(data.draw(st.integers(1, 6)) for _ in range(rank))
    x = data.draw(pool_input_nd(spatial))
    mx = {1: cp.AdaptiveMaxPool1d, 3: cp.AdaptiveMaxPool3d}[rank](out)
    mx.use_fast_path = fast
    y = mx(x)
    g = np.random.default_rng(8).standard_normal(y.shape).astype(x.dtype)
    fn = {1: F.adaptive_max_pool1d, 3: F.adaptive_max_pool3d}[rank]
    (ty, ti), tgx = _torch_grad(lambda t: fn(t, out, return_indices=True), x, g)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(mx.indices, ti.numpy())
    tol = _tol(x.dtype)
    np.testing.assert_allclose(mx.backward(g), tgx, rtol=tol, atol=tol)

    x[~np.isfinite(x)] = 0.0
    mean = {1: cp.AdaptiveAvgPool1d, 3: cp.AdaptiveAvgPool3d}[rank](out)
    mean.use_fast_path = fast
    y = mean(x)
    fn = {1: F.adaptive_avg_pool1d, 3: F.adaptive_avg_pool3d}[rank]
    ty, tgx = _torch_grad(lambda t: fn(t, out), x, g)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(mean.backward(g), tgx, rtol=tol, atol=tol)


def test_adaptive_keeps_a_dimension_given_none():
    x = np.zeros((1, 2, 4, 5, 6))
    assert cp.AdaptiveMaxPool3d((None, 2, None))(x).shape == (1, 2, 4, 2, 6)
    assert cp.AdaptiveMeanPool1d(None)(np.zeros((2, 7))).shape == (2, 7)


# -------------------------------------------------------------------- unpool
@pytest.mark.parametrize("rank", [1, 3])
def test_max_unpool_nd_matches_torch(rank):
    rng = np.random.default_rng(9)
    spatial = {1: (12,), 3: (4, 6, 5)}[rank]
    x = rng.standard_normal((2, 3) + spatial)
    pool = MAX[rank](2, 2)
    unpool = {1: cp.MaxUnpool1d, 3: cp.MaxUnpool3d}[rank](2, 2)
    y = pool(x)
    out = unpool(y, pool.indices, output_size=x.shape)
    fn = {1: F.max_unpool1d, 3: F.max_unpool3d}[rank]
    g = rng.standard_normal(out.shape)
    ty, tgy = _torch_grad(
        lambda t: fn(t, torch.tensor(pool.indices), 2, 2, output_size=x.shape), y, g
    )
    np.testing.assert_array_equal(out, ty.detach().numpy())
    np.testing.assert_array_equal(unpool.backward(g), tgy)


# ----------------------------------------------------------------- unbatched
def _unbatched_layers():
    return [
        ("max1d", lambda: cp.MaxPool1d(3, 2, 1), (4, 11), lambda t: F.max_pool1d(t, 3, 2, 1)),
        ("max2d", lambda: cp.MaxPool2d(3, 2, 1), (4, 7, 9), lambda t: F.max_pool2d(t, 3, 2, 1)),
        ("max3d", lambda: cp.MaxPool3d(2), (2, 4, 5, 6), lambda t: F.max_pool3d(t, 2)),
        ("avg1d", lambda: cp.AvgPool1d(3, 2, 1), (4, 11), lambda t: F.avg_pool1d(t, 3, 2, 1)),
        ("avg2d", lambda: cp.AvgPool2d(3, 2, 1), (4, 7, 9), lambda t: F.avg_pool2d(t, 3, 2, 1)),
        ("avg3d", lambda: cp.AvgPool3d(2), (2, 4, 5, 6), lambda t: F.avg_pool3d(t, 2)),
        ("lp1d", lambda: cp.LpPool1d(2, 3), (4, 11), lambda t: F.lp_pool1d(t, 2, 3)),
        ("lp2d", lambda: cp.LpPool2d(2, 2), (4, 7, 9), lambda t: F.lp_pool2d(t, 2, 2)),
        ("lp3d", lambda: cp.LpPool3d(2, 2), (2, 4, 5, 6), lambda t: F.lp_pool3d(t, 2, 2)),
        (
            "amax1d",
            lambda: cp.AdaptiveMaxPool1d(4),
            (4, 11),
            lambda t: F.adaptive_max_pool1d(t, 4),
        ),
        (
            "amax2d",
            lambda: cp.AdaptiveMaxPool2d((2, 3)),
            (4, 7, 9),
            lambda t: F.adaptive_max_pool2d(t, (2, 3)),
        ),
        (
            "amax3d",
            lambda: cp.AdaptiveMaxPool3d(2),
            (2, 4, 5, 6),
            lambda t: F.adaptive_max_pool3d(t, 2),
        ),
        (
            "aavg1d",
            lambda: cp.AdaptiveAvgPool1d(4),
            (4, 11),
            lambda t: F.adaptive_avg_pool1d(t, 4),
        ),
        (
            "aavg2d",
            lambda: cp.AdaptiveAvgPool2d(3),
            (4, 7, 9),
            lambda t: F.adaptive_avg_pool2d(t, 3),
        ),
        (
            "aavg3d",
            lambda: cp.AdaptiveAvgPool3d(2),
            (2, 4, 5, 6),
            lambda t: F.adaptive_avg_pool3d(t, 2),
        ),
        ("global-max", cp.GlobalMaxPool2d, (4, 7, 9), lambda t: F.adaptive_max_pool2d(t, 1)),
        ("global-mean", cp.GlobalMeanPool2d, (4, 7, 9), lambda t: F.adaptive_avg_pool2d(t, 1)),
    ]


@pytest.mark.parametrize("fast", [True, False], ids=["kernel", "numpy"])
@pytest.mark.parametrize("name, make, shape, fn", _unbatched_layers(), ids=lambda v: str(v)[:8])
def test_unbatched_input_matches_torch(name, make, shape, fn, fast):
    rng = np.random.default_rng(10)
    x = np.abs(rng.standard_normal(shape)) + 0.1
    pool = make()
    pool.use_fast_path = fast
    y = pool(x)
    g = rng.standard_normal(y.shape)
    ty, tgx = _torch_grad(fn, x, g)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12)
    gx = pool.backward(g)
    assert gx.shape == x.shape
    np.testing.assert_allclose(gx, tgx, rtol=1e-10, atol=1e-12)
    assert pool._state.unbatched
    if hasattr(pool, "indices"):
        (_, ti), _ = _torch_grad(lambda t: fn_indices(name, t), x, g)
        np.testing.assert_array_equal(pool.indices, ti.numpy())
    with pytest.raises(ValueError, match="shape of the forward output"):
        pool.backward(g[None])  # a batched gradient for an unbatched forward
    # the batched answer, plane for plane
    batched = make()
    batched.use_fast_path = fast
    np.testing.assert_array_equal(batched(x[None])[0], y)


def fn_indices(name, t):
    kind = {"max": "max_pool", "amax": "adaptive_max_pool", "global-max": "adaptive_max_pool"}
    for prefix, fname in kind.items():
        if name.startswith(prefix):
            rank = 2 if name == "global-max" else int(name[-2])
            args = {
                "max1d": (3, 2, 1),
                "max2d": (3, 2, 1),
                "max3d": (2,),
                "amax1d": (4,),
                "amax2d": ((2, 3),),
                "amax3d": (2,),
                "global-max": (1,),
            }[name]
            return getattr(F, f"{fname}{rank}d")(t, *args, return_indices=True)
    raise AssertionError(name)


def test_unbatched_max_unpool_matches_torch():
    x = np.random.default_rng(11).standard_normal((3, 6, 8))
    pool, unpool = cp.MaxPool2d(2), cp.MaxUnpool2d(2)
    y = pool(x)
    assert pool.indices.shape == y.shape == (3, 3, 4)
    out = unpool(y, pool.indices)
    ref = F.max_unpool2d(torch.tensor(y), torch.tensor(pool.indices), 2)
    np.testing.assert_array_equal(out, ref.numpy())
    assert unpool.backward(np.ones(out.shape)).shape == y.shape


def test_unbatched_strategies_of_every_kind():
    x = np.random.default_rng(12).standard_normal((3, 8, 8))
    for layer in (
        cp.MixedPool2d(2),
        cp.GatedPool2d(2),
        cp.StochasticPool2d(2, rng=0),
        cp.CompiledPool2d(LpWindow(2.0), 2),
    ):
        y = layer(x)
        assert y.shape == (3, 4, 4)
        assert layer.backward(np.ones(y.shape)).shape == x.shape


# ------------------------------------------------------ rank of any strategy
class ExpWeightedPool2d(cp.Pool2d):
    """A user's NumPy strategy: softmax-weighted mean of each window."""

    pad_value = -np.inf

    def pool(self, windows):
        w = np.exp(windows - windows.max(axis=-1, keepdims=True))
        w = np.where(self.geometry.inside, w, 0)
        self_w = w / w.sum(axis=-1, keepdims=True)
        return (self_w * np.where(self.geometry.inside, windows, 0)).sum(axis=-1)

    def route(self, windows, pooled):
        w = np.exp(windows - windows.max(axis=-1, keepdims=True))
        w = np.where(self.geometry.inside, w, 0)
        w = w / w.sum(axis=-1, keepdims=True)
        x = np.where(self.geometry.inside, windows, 0)
        return w * (1 + x - pooled[..., None])


class L2Compiled2d(cp.CompiledPool2d):
    """A user's Cython-tier strategy (the shipped LpWindow), savable."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__(LpWindow(2.0), kernel_size, stride, padding, dilation, ceil_mode)


def test_for_dims_returns_the_builtin_classes_and_caches_user_ones():
    assert cp.MaxPool2d.for_dims(1) is cp.MaxPool1d
    assert cp.MaxPool1d.for_dims(3) is cp.MaxPool3d
    assert cp.MeanPool3d.for_dims(2) is cp.MeanPool2d
    assert cp.AvgPool1d is cp.MeanPool1d and cp.AdaptiveAvgPool3d is cp.AdaptiveMeanPool3d
    soft3 = ExpWeightedPool2d.for_dims(3)
    assert soft3 is ExpWeightedPool2d.for_dims(3) and soft3.__name__ == "ExpWeightedPool3d"
    assert soft3.spatial_dims == 3 and issubclass(soft3, ExpWeightedPool2d)
    assert cp.registry.layer_class("ExpWeightedPool3d") is soft3
    with pytest.raises(ValueError, match="dims must be 1, 2 or 3"):
        ExpWeightedPool2d.for_dims(4)


@pytest.mark.parametrize("rank", [1, 3])
def test_a_numpy_strategy_runs_in_1d_and_3d_and_matches_gradcheck(rank):
    layer = ExpWeightedPool2d.for_dims(rank)(3, 2, 1)
    x = np.random.default_rng(13).standard_normal((2, 2) + (5,) * rank)
    assert cp.gradcheck(layer, x)
    # equals the 2-D layer on a unit axis (1-D) -- the same strategy
    if rank == 1:
        flat = ExpWeightedPool2d((1, 3), (1, 2), (0, 1))(x[:, :, None, :])[:, :, 0]
        np.testing.assert_allclose(layer(x), flat, rtol=1e-12)


@pytest.mark.parametrize("rank", [1, 3])
def test_a_compiled_strategy_runs_its_kernel_in_1d_and_3d(rank):
    x = np.random.default_rng(14).random((2, 3) + (7,) * rank) + 0.1
    fast = L2Compiled2d.for_dims(rank)(3, 2, 1, ceil_mode=True)
    slow = L2Compiled2d.for_dims(rank)(3, 2, 1, ceil_mode=True)
    slow.use_fast_path = False
    assert fast.has_kernel
    y = fast(x)
    np.testing.assert_array_equal(y, slow(x))
    g = np.random.default_rng(15).standard_normal(y.shape)
    np.testing.assert_allclose(fast.backward(g), slow.backward(g), rtol=1e-12, atol=1e-14)
    assert fast._state.tier == "kernel" and slow._state.tier == "numpy"


@pytest.mark.parametrize("rank", [1, 3])
def test_a_jit_strategy_runs_in_1d_and_3d(rank):
    pytest.importorskip("numba")
    from jit_strategies import LearnedSoftmaxPool2d

    x = np.random.default_rng(16).standard_normal((2, 2) + (6,) * rank)
    cls = LearnedSoftmaxPool2d.for_dims(rank)
    fast, slow = cls(3, 2, 1, beta=1.5), cls(3, 2, 1, beta=1.5)
    slow.use_fast_path = False
    assert fast.has_kernel
    y = fast(x)
    np.testing.assert_array_equal(y, slow(x))
    g = np.random.default_rng(17).standard_normal(y.shape)
    np.testing.assert_array_equal(fast.backward(g), slow.backward(g))
    np.testing.assert_allclose(fast.beta.grad, slow.beta.grad, rtol=1e-12)


def test_a_kernel_written_for_2d_only_falls_back_to_numpy_in_other_ranks():
    mixed = cp.MixedPool2d.for_dims(1)(2)
    assert not mixed.has_kernel and cp.MixedPool2d(2).has_kernel
    x = np.random.default_rng(18).standard_normal((2, 3, 8))
    ref = cp.MixedPool2d((1, 2))
    ref.use_fast_path = False
    np.testing.assert_allclose(mixed(x), ref(x[:, :, None])[:, :, 0], rtol=1e-12)


# --------------------------------------------------------------- save / load
def test_nd_layers_save_and_load(tmp_path):
    soft = ExpWeightedPool2d.for_dims(1)
    model = cp.Sequential(
        cp.MaxPool3d(3, 2, "same"),
        cp.MeanPool3d((2, 1, 1), padding=(1, 0, 0, 0, 0, 0), count_include_pad=False),
        cp.LpPool3d(2, (1, 2, 2)),
        cp.AdaptiveMaxPool3d((None, 2, 2)),
        cp.AdaptiveAvgPool3d(1),
    )
    x = np.random.default_rng(19).standard_normal((2, 3, 7, 8, 9))
    model.save(tmp_path / "m3")
    loaded = cp.load(tmp_path / "m3")
    np.testing.assert_array_equal(loaded(x), model(x))
    assert loaded.layers[0].padding == "same"
    assert loaded.layers[1].padding == (1, 0, 0, 0, 0, 0)

    model = cp.Sequential(cp.MaxPool1d(3, 1, (0, 2)), soft(2), cp.AdaptiveMeanPool1d(3))
    x = np.random.default_rng(20).standard_normal((2, 3, 12))
    model.save(tmp_path / "m1")
    loaded = cp.load(tmp_path / "m1")
    assert type(loaded.layers[1]) is soft
    np.testing.assert_array_equal(loaded(x), model(x))


# ------------------------------------------------------------ bad arguments
@pytest.mark.parametrize(
    "make, exc, words",
    [
        (
            lambda: cp.MaxPool2d(3, padding=(1, 2, 3)),
            TypeError,
            ["padding", "3 items", "(top, bottom, left, right)"],
        ),
        (lambda: cp.MaxPool2d(3, padding="full"), ValueError, ["padding", "'full'", "'same'"]),
        (
            lambda: cp.MaxPool2d(3, padding=(0, 3, 0, 0)),
            ValueError,
            ["after the height", "3", "(3, 3)"],
        ),
        (lambda: cp.MaxPool1d(3, padding=2), ValueError, ["half the kernel", "(2,)", "(3,)"]),
        (lambda: cp.MaxPool3d((2, 2)), TypeError, ["kernel_size", "3 ints", "depth"]),
        (lambda: cp.MeanPool1d(2, padding=-1), ValueError, ["padding must be >= 0"]),
        (lambda: cp.AdaptiveMaxPool3d((2, 2)), TypeError, ["output_size", "3 of them"]),
        (lambda: cp.MaxUnpool3d((2, 2)), TypeError, ["kernel_size", "3 ints"]),
    ],
)
def test_bad_arguments_name_the_argument_and_value(make, exc, words):
    with pytest.raises(exc) as info:
        make()
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_lp_pool_refuses_padding_as_pytorch_does():
    for cls, rank in ((cp.LpPool1d, 1), (cp.LpPool2d, 2), (cp.LpPool3d, 3)):
        with pytest.raises(TypeError, match=f"no padding.*LPPool{rank}d has none"):
            cls(2, 2, padding=1)
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['bogus'\\]"):
        cp.LpPool2d(2, 2, bogus=1)


def test_wrong_rank_inputs_say_which_shapes_are_accepted():
    with pytest.raises(ValueError, match=r"5-D \(N, C, D, H, W\) or 4-D \(C, D, H, W\)"):
        cp.MaxPool3d(2)(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"3-D \(N, C, L\) or 2-D \(C, L\).*\(1, 1, 4, 4\)"):
        cp.MeanPool1d(2)(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="no channels"):
        cp.MaxPool1d(2)(np.zeros((0, 4)))


def test_a_window_wholly_in_padding_is_refused_with_the_shapes():
    with pytest.raises(ValueError, match=r"hold no input element.*\(D, H, W\) = \(1, 4, 4\)"):
        cp.MaxPool3d((2, 3, 3), 1, (2, 1, 0, 0, 0, 0), dilation=(3, 1, 1))(
            np.zeros((1, 1, 1, 4, 4))
        )


# ------------------------------------------------------------------- threads
THREADS = """
import hashlib, json
import numpy as np
import cnnpool as cp
from cnnpool import _parallel
layers = [
    cp.MaxPool1d(3, 2, 1), cp.MeanPool1d(4, 2, (1, 2), ceil_mode=True), cp.LpPool1d(2, 3),
    cp.AdaptiveMaxPool1d(7), cp.AdaptiveMeanPool1d(7), cp.MaxPool3d(3, 2, "same"),
    cp.MeanPool3d(2), cp.LpPool3d(3, 2), cp.AdaptiveMaxPool3d(3), cp.AdaptiveMeanPool3d(3),
    cp.MaxPool2d(3, 2, "same_lower"), cp.MeanPool2d(3, 2, (0, 1, 1, 0)),
]
out = {"threads": _parallel.max_threads()}
for i, layer in enumerate(layers):
    rng = np.random.default_rng(i)
    shape = (8, 4, 4000) if layer.spatial_dims == 1 else (4, 4, 40, 40) if layer.spatial_dims == 2 else (4, 4, 12, 14, 16)
    x = rng.standard_normal(shape).astype(np.float32)
    y = layer(x)
    gx = layer.backward(rng.standard_normal(y.shape).astype(np.float32))
    out[f"{i}-{type(layer).__name__}"] = hashlib.sha256(y.tobytes() + gx.tobytes()).hexdigest()
print(json.dumps(out))
"""


def _threads_run(n):
    # The cnnpool this test imports (installed, or in-place via PYTHONPATH),
    # never the repository root's unbuilt source: run from the tests folder.
    env = dict(os.environ, OMP_NUM_THREADS=str(n))
    proc = subprocess.run(
        [sys.executable, "-c", THREADS],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    )
    return json.loads(proc.stdout)


def test_nd_results_are_bit_identical_at_1_and_2_threads():
    one, two = _threads_run(1), _threads_run(2)
    assert one.pop("threads") == 1 and two.pop("threads") == 2
    assert len(one) == 12
    assert one == two


def test_a_rank_variant_keeps_the_load_time_allocation_cap(tmp_path):
    gated3 = cp.GatedPool2d.for_dims(3)
    assert cp.registry.allocates_of(gated3)({"kernel_size": [2, 3, 4]}) == 24
    model = cp.Sequential(gated3(2))
    model.save(tmp_path / "g3")
    np.testing.assert_array_equal(cp.load(tmp_path / "g3").layers[0].weight.data, np.zeros(8))


@pytest.mark.parametrize("padding", [(0, 2, 1, 0), "same", "same_lower"])
def test_blended_and_stochastic_kernels_take_asymmetric_and_same_padding(padding):
    """Their 2-D kernels read the same per-output window starts: both tiers agree."""
    x = np.random.default_rng(21).standard_normal((2, 3, 9, 8))
    makes = [
        lambda: cp.MixedPool2d(3, 2, padding, channels=3),
        lambda: cp.GatedPool2d(3, 2, padding),
        lambda: cp.StochasticPool2d(3, 2, padding, rng=0).eval(),
        lambda: cp.StochasticPool2d(3, 2, padding, rng=0),
    ]
    for make in makes:
        fast, slow = make(), make()
        slow.use_fast_path = False
        y = fast(x)
        np.testing.assert_allclose(y, slow(x), rtol=1e-12, atol=1e-12)
        g = np.random.default_rng(22).standard_normal(y.shape)
        np.testing.assert_allclose(fast.backward(g), slow.backward(g), rtol=1e-12, atol=1e-12)
        for p, q in zip(fast.parameters(), slow.parameters()):
            np.testing.assert_allclose(p.grad, q.grad, rtol=1e-10)
        assert fast._state.tier == "kernel" and slow._state.tier == "numpy"


def test_output_shape_in_every_rank_batched_or_not():
    assert cp.MaxPool3d(2).output_shape((5, 3, 4, 6, 8)) == (5, 3, 2, 3, 4)
    assert cp.MaxPool3d(2).output_shape((3, 4, 6, 8)) == (3, 2, 3, 4)
    assert cp.MeanPool1d(3, 2, "same").output_shape((2, 11)) == (2, 6)
    assert cp.AdaptiveMaxPool1d(4).output_shape((1, 2, 9)) == (1, 2, 4)
    with pytest.raises(ValueError, match=r"\(N, C, L\) or \(C, L\)"):
        cp.MaxPool1d(2).output_shape((1, 2, 3, 4))


@pytest.mark.parametrize("include", [False, True])
@pytest.mark.parametrize("rank", [1, 3])
def test_a_jit_mean_matches_the_builtin_mean_in_1d_and_3d(rank, include):
    """include_pad reaches the N-d padded taps (in the padding, not past it in ceil_mode)."""
    pytest.importorskip("numba")
    from jit_strategies import MeanPool2dJit, PaddedMeanPool2dJit

    cls = (PaddedMeanPool2dJit if include else MeanPool2dJit).for_dims(rank)
    x = np.random.default_rng(23).standard_normal((2, 3) + (7,) * rank)
    padding = (1, 0) * rank  # leading padding only: asymmetric
    jit, ref = cls(3, 2, padding, ceil_mode=True), MEAN[rank](3, 2, padding, True, include)
    y = jit(x)
    np.testing.assert_allclose(y, ref(x), rtol=1e-12, atol=1e-14)
    g = np.random.default_rng(24).standard_normal(y.shape)
    np.testing.assert_allclose(jit.backward(g), ref.backward(g), rtol=1e-12, atol=1e-14)
