"""Reused output buffers: a result the caller still holds is never overwritten."""

import numpy as np
import pytest

import cnnpool as cp
from cnnpool._buffers import ALIGN, REUSE_MIN_BYTES, OutputBuffers

BIG = (REUSE_MIN_BYTES // 8 // 64 + 1, 64)  # float64 rows: just over the threshold


def test_a_dropped_buffer_is_handed_out_again_aligned():
    buffers = OutputBuffers()
    a = buffers.empty("x", BIG, np.float64)
    assert a.ctypes.data % ALIGN == 0 and a.flags.c_contiguous and a.shape == BIG
    address = a.ctypes.data
    del a
    b = buffers.empty("x", BIG, np.float64)
    assert b.ctypes.data == address


@pytest.mark.parametrize(
    "keep",
    [
        lambda a: a,
        lambda a: a[3:],  # a slice
        lambda a: a.reshape(-1)[::2],  # a view of a view
        lambda a: a.view(np.int64),
        memoryview,
    ],
    ids=["array", "slice", "view of view", "dtype view", "memoryview"],
)
def test_a_buffer_still_referenced_is_never_reused(keep):
    buffers = OutputBuffers()
    a = buffers.empty("x", BIG, np.float64)
    a[...] = np.arange(a.size).reshape(a.shape)
    kept = keep(a)
    before = np.array(np.asarray(kept), copy=True)
    del a
    b = buffers.empty("x", BIG, np.float64)
    b[...] = -1.0
    assert not np.shares_memory(np.asarray(kept), b)
    np.testing.assert_array_equal(np.asarray(kept), before)


def test_names_are_independent_and_small_arrays_are_plain():
    buffers = OutputBuffers()
    a = buffers.empty("x", BIG, np.float64)
    address = a.ctypes.data
    del a
    b = buffers.empty("y", BIG, np.float64)
    assert b.ctypes.data != address
    small = buffers.empty("x", (4, 4), np.float32)
    assert small.base is None and small.shape == (4, 4)
    c = buffers.empty("x", (BIG[0] + 1, BIG[1]), np.float64)  # another size: a new buffer
    assert c.shape == (BIG[0] + 1, BIG[1]) and c.ctypes.data % ALIGN == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: cp.MaxPool2d(2),
        lambda: cp.MeanPool2d(2),
        lambda: cp.Conv2d(4, 4, 3, padding=1, dtype=np.float64, rng=0),
    ],
    ids=["max", "mean", "conv"],
)
def test_layers_never_overwrite_results_the_caller_holds(make):
    layer = make()
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((2, 64, 4, 32, 32))  # float64, 1 MiB and more per result
    y1 = layer(x1)
    g1 = rng.standard_normal(y1.shape)
    gx1 = layer.backward(g1)
    y1_copy, gx1_copy = y1.copy(), gx1.copy()
    y2 = layer(x2)
    gx2 = layer.backward(rng.standard_normal(y2.shape))
    np.testing.assert_array_equal(y1, y1_copy)
    np.testing.assert_array_equal(gx1, gx1_copy)
    assert not np.shares_memory(y1, y2) and not np.shares_memory(gx1, gx2)
    # Once dropped, the next call writes into the same memory (no fresh pages).
    address = gx2.ctypes.data
    del gx2
    gx3 = layer.backward(
        g1[: y2.shape[0]] if g1.shape == y2.shape else rng.standard_normal(y2.shape)
    )
    assert gx3.ctypes.data == address
