"""Paths of the compiled max/mean kernels that the small random tests do not reach.

* Max saves uint8 tap numbers for windows of up to 255 taps and int64 ones
  beyond; ``indices`` (flat ``ih * W + iw``) is built from them on demand.
* Outputs of ``STREAM_MIN_BYTES`` and more (the last-level cache, at least
  4 MiB) are allocated on a cache line and the tiled backward writes them
  with streaming stores: the bits must not change.

Everything is compared with the generic path (NumPy pool/route over the
gathered windows), bit for bit.
"""

import numpy as np
import pytest

import cnnpool as cp
from cnnpool.pooling._ext import _kernels
from cnnpool.pooling.base import STREAM_MIN_BYTES


@pytest.fixture(autouse=True)
def _nan_on_purpose():
    """special_input mixes NaN and +-inf in: the generic twin's window sums
    (inf - inf) warn of the NaN they make on purpose; silenced here only."""
    with np.errstate(invalid="ignore"):
        yield


def special_input(shape, dtype, seed=0):
    """Random values with ties, -0.0, NaN, +-inf and all -inf windows mixed in."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=shape).astype(dtype)  # many ties
    flat = x.reshape(-1)
    for value in (-0.0, np.nan, np.inf, -np.inf):
        flat[rng.integers(0, flat.size, flat.size // 50)] = value
    x[0, 0, :4, :4] = -np.inf
    return x


def generic_twin(layer):
    twin = type(layer)(**layer.get_config())
    twin.use_fast_path = False
    return twin


def assert_same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "kernel,stride,padding",
    [(2, 2, 0), (3, 2, 1), (3, 3, 0), ((15, 17), (4, 5), 0), ((16, 17), 3, (8, 0))],
    ids=["2x2", "3x3s2p1", "3x3 tiled", "255 taps", "272 taps"],
)
def test_max_taps_width_and_indices(dtype, kernel, stride, padding):
    x = special_input((2, 3, 40, 41), dtype)
    layer = cp.MaxPool2d(kernel, stride, padding)
    y = layer(x)
    assert layer._state.tier == "kernel"
    taps = layer._state.saved
    window = np.prod(layer.kernel_size)
    assert taps.dtype == (np.uint8 if window <= 255 else np.int64)
    assert not taps.flags.writeable
    ref = generic_twin(layer)
    assert_same_bits(y, ref(x))
    indices = layer.indices
    assert indices.dtype == np.int64 and not indices.flags.writeable
    np.testing.assert_array_equal(indices, ref.indices)
    assert layer.indices is indices  # built once per forward
    g = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    g.reshape(-1)[::7] = -0.0
    gx = layer.backward(g)
    assert_same_bits(gx, ref.backward(g))
    assert_same_bits(layer.backward(g), gx)  # saved taps untouched
    layer(x[:1])
    assert layer.indices.shape[0] == 1  # a new forward, new indices


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls", [cp.MaxPool2d, cp.MeanPool2d])
def test_3x3_stride_2_same_pooling_on_even_planes(cls, dtype):
    # The row-separable path (flat3): an even plane, 3x3 stride 2 padding 1.
    # Row starts (whose left tap is padding) get ties, NaN and -inf too.
    x = special_input((3, 4, 24, 16), dtype)
    x[0, 1, :, 0] = x[0, 1, :, 1]  # ties at every row start
    x[1, 2, ::3, 1] = np.nan
    x[2, 0, :, :2] = -np.inf
    layer = cls(3, 2, 1)
    y = layer(x)
    ref = generic_twin(layer)
    assert_same_bits(y, ref(x))
    g = np.random.default_rng(4).standard_normal(y.shape).astype(dtype)
    if cls is cp.MaxPool2d:
        assert_same_bits(layer.backward(g), ref.backward(g))
        np.testing.assert_array_equal(layer.indices, ref.indices)
    else:
        # Overlapping windows: the compiled path adds the shares in PyTorch's
        # order, the generic scatter in its own: up to an ulp apart.
        np.testing.assert_allclose(layer.backward(g), ref.backward(g), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls", [cp.MaxPool2d, cp.MeanPool2d])
@pytest.mark.parametrize("width", [64, 66], ids=["lines", "unaligned rows"])
@pytest.mark.parametrize("threshold", [1 << 20, STREAM_MIN_BYTES], ids=["1 MiB", "default"])
def test_large_tiled_backward_is_bit_identical(cls, dtype, width, threshold):
    # Large enough for streaming stores (when rows start on cache lines): the
    # threshold lowered to 1 MiB, and the default one (the last-level cache).
    previous = _kernels.set_stream_min_bytes(threshold)
    try:
        _large_tiled_backward(cls, dtype, width, threshold)
    finally:
        _kernels.set_stream_min_bytes(previous)


def _large_tiled_backward(cls, dtype, width, threshold):
    planes = threshold // (64 * width * np.dtype(dtype).itemsize) + 1
    x = special_input((planes, 1, 64, width), dtype)
    layer = cls(2)
    y = layer(x)
    g = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    g.reshape(-1)[::5] = -0.0
    # A NaN gradient reaches the winner only (max) or every tap (mean), on both
    # paths: the generic one drops taps whose route is 0.
    g.reshape(-1)[::11] = np.nan
    g.reshape(-1)[3::13] = np.inf
    streamed = _kernels.stream_count()
    gx = layer.backward(g)
    assert gx.nbytes >= threshold
    # The streaming stores ran where they can: 64-byte rows on an AVX build.
    expected = 1 if _kernels.STREAM_STORES and width * np.dtype(dtype).itemsize % 64 == 0 else 0
    assert _kernels.stream_count() - streamed == expected
    ref = generic_twin(layer)
    assert_same_bits(y, ref(x))
    assert_same_bits(gx, ref.backward(g))
    assert_same_bits(layer.backward(g), gx)


def test_small_outputs_are_written_with_plain_stores():
    streamed = _kernels.stream_count()
    layer = cp.MaxPool2d(2)
    y = layer(np.ones((64, 8, 64, 64), np.float32))  # an 8 MiB input gradient
    previous = _kernels.set_stream_min_bytes(16 << 20)
    try:
        layer.backward(np.ones_like(y))
    finally:
        _kernels.set_stream_min_bytes(previous)
    assert _kernels.stream_count() == streamed


def test_max_unpool_reads_lazy_indices():
    x = special_input((2, 2, 8, 8), np.float64)
    pool = cp.MaxPool2d(2)
    y = pool(x)
    out = cp.MaxUnpool2d(2)(y, pool.indices)
    ref = generic_twin(pool)
    ref(x)
    np.testing.assert_array_equal(out, cp.MaxUnpool2d(2)(y, ref.indices))
