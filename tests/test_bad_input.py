"""A catalogue of bad and awkward inputs across the public API.

Every case either expects a clear ``ValueError``/``TypeError`` whose
message names the argument and the offending shape or value, or checks
that the awkward-but-valid input (Fortran order, read-only, negative
strides, stride 0, empty batch, inf/NaN) gives the correct result.

Cases that enter compiled kernels with edge geometries run in a fresh
subprocess (``RISKY``), so a crash fails that one test instead of killing
the run.  Under the sanitizer build (README, "Debug build") the
subprocesses inherit ``LD_PRELOAD`` and report there too.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cnnpool as cp

HERE = os.path.dirname(os.path.abspath(__file__))


def raises(exc, call, *fragments):
    """``call()`` raises ``exc`` with every fragment (plain text) in its message."""
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in message {message!r}"
    return message


def x4(n=2, c=3, h=6, w=6, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(dtype)


def run_isolated(body):
    """Run ``body`` (Python source) in a fresh interpreter; fail on a crash or error."""
    code = f"import sys\nsys.path.insert(0, {HERE!r})\n" + textwrap.dedent(body)
    code += "\nprint('CASE-OK')\n"
    # cwd: from the repository root, "python -c" would import the unbuilt source folder
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="2"),
        cwd=HERE,
    )
    report = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0 and "CASE-OK" in proc.stdout, report
    for marker in ("ERROR: AddressSanitizer", "runtime error:"):
        assert marker not in proc.stderr, report


# ============================================================ pooling: arguments


def test_kernel_size_zero():
    raises(ValueError, lambda: cp.MaxPool2d(0), "kernel_size", "0")


def test_kernel_size_float():
    raises(TypeError, lambda: cp.MaxPool2d(2.5), "kernel_size", "2.5")


def test_stride_triple():
    raises(TypeError, lambda: cp.MeanPool2d(2, stride=(1, 2, 3)), "stride", "(1, 2, 3)")


def test_stride_bool():
    raises(TypeError, lambda: cp.MaxPool2d(2, stride=True), "stride", "True")


def test_stride_beyond_int64():
    # was an OverflowError ("Python int too large to convert to C long") deep inside
    raises(ValueError, lambda: cp.MaxPool2d(2, stride=2**63), "stride", str(2**63))


def test_padding_more_than_half_the_kernel():
    raises(ValueError, lambda: cp.MaxPool2d(3, padding=2), "padding", "(2, 2)", "(3, 3)")


def test_negative_padding():
    raises(ValueError, lambda: cp.MeanPool2d(3, padding=-1), "padding", "-1")


def test_ceil_mode_not_bool():
    raises(TypeError, lambda: cp.MaxPool2d(2, ceil_mode="yes"), "ceil_mode", "'yes'")


def test_divisor_override_zero():
    raises(ValueError, lambda: cp.MeanPool2d(2, divisor_override=0), "divisor_override", "0")


def test_count_include_pad_not_bool():
    raises(TypeError, lambda: cp.MeanPool2d(2, count_include_pad=1), "count_include_pad", "1")


# =============================================================== pooling: input


def test_x_three_dimensional():
    # (C, H, W) is an unbatched input (as in PyTorch); 2-D and 5-D are not.
    raises(ValueError, lambda: cp.MaxPool2d(2)(np.zeros((4, 4))), "x", "4-D", "3-D", "(4, 4)")
    raises(ValueError, lambda: cp.MaxPool2d(2)(np.zeros((1, 1, 1, 4, 4))), "x", "(1, 1, 1, 4, 4)")


def test_x_integer_dtype():
    raises(TypeError, lambda: cp.MaxPool2d(2)(np.zeros((1, 1, 4, 4), np.int64)), "x", "int64")


def test_x_float16():
    raises(
        TypeError,
        lambda: cp.MeanPool2d(2)(np.zeros((1, 1, 4, 4), np.float16)),
        "x",
        "float16",
        "(1, 1, 4, 4)",
    )


def test_x_complex():
    raises(TypeError, lambda: cp.MaxPool2d(2)(np.zeros((1, 1, 4, 4), complex)), "x", "complex128")


def test_x_nested_list_of_ints():
    raises(TypeError, lambda: cp.MaxPool2d(2)([[[[1, 2], [3, 4]]]]), "x", "int64")


def test_x_not_an_array():
    raises(TypeError, lambda: cp.MaxPool2d(2)("image"), "x", "str")


def test_window_larger_than_input():
    raises(
        ValueError,
        lambda: cp.MaxPool2d(5)(np.zeros((1, 1, 4, 4))),
        "(H, W) = (4, 4)",
        "kernel_size=(5, 5)",
    )


def test_zero_height_input():
    raises(ValueError, lambda: cp.MeanPool2d(1)(np.zeros((1, 1, 0, 4))), "(H, W) = (0, 4)")


def test_grad_output_wrong_shape():
    pool = cp.MaxPool2d(2)
    pool(x4())
    raises(
        ValueError,
        lambda: pool.backward(np.ones((2, 3, 2, 2))),
        "grad_output",
        "(2, 3, 3, 3)",
        "(2, 3, 2, 2)",
    )


def test_grad_output_wrong_dtype():
    pool = cp.MeanPool2d(2)
    pool(x4(dtype=np.float32))
    raises(
        TypeError, lambda: pool.backward(np.ones((2, 3, 3, 3))), "grad_output", "float32", "float64"
    )


def test_grad_output_a_list():
    pool = cp.MaxPool2d(2)
    pool(np.zeros((1, 1, 2, 2)))
    raises(TypeError, lambda: pool.backward([[[[1.0]]]]), "grad_output", "list")


def test_backward_before_forward_every_layer():
    layers = [
        cp.MaxPool2d(2),
        cp.MeanPool2d(2),
        cp.Conv2d(1, 1, 1),
        cp.Linear(2, 2),
        cp.Flatten(),
        cp.ReLU(),
        cp.Tanh(),
        cp.Sigmoid(),
    ]
    for layer in layers:
        msg = raises(
            ValueError,
            lambda layer=layer: layer.backward(np.ones((1, 1, 1, 1))),
            type(layer).__name__,
            "before forward",
        )
        assert isinstance(msg, str)
    for loss in (cp.MSELoss(), cp.SoftmaxCrossEntropy()):
        raises(ValueError, loss.backward, type(loss).__name__, "before forward")


def test_strategy_pool_returns_wrong_shape():
    class Bad(cp.Pool2d):
        def pool(self, windows):
            return windows.sum(axis=(-1, -2))

    raises(ValueError, lambda: Bad(2)(x4()), "Bad.pool", "(2, 3, 3, 3)", "(2, 3, 3)")


def test_strategy_route_returns_wrong_shape():
    class Bad(cp.Pool2d):
        def pool(self, windows):
            return windows.max(axis=-1)

        def route(self, windows, pooled):
            return np.ones(windows.shape[:4])

    layer = Bad(2)
    y = layer(x4())
    raises(
        ValueError,
        lambda: layer.backward(np.ones_like(y)),
        "Bad.route",
        "(2, 3, 3, 3, 4)",
        "(2, 3, 3, 3)",
    )


def test_gather_windows_with_the_geometry_of_another_size():
    # Before the fix the compiled gather read outside x (and the scatter
    # wrote outside its output) when handed a geometry for a larger input.
    pool = cp.MaxPool2d(2)
    geom = pool.geometry_for(8, 8)
    raises(
        ValueError,
        lambda: pool.gather_windows(np.zeros((1, 1, 2, 2)), geom),
        "geom",
        "(H, W) = (8, 8)",
        "(1, 1, 2, 2)",
    )
    raises(
        ValueError,
        lambda: pool.scatter_windows(np.ones((1, 1, 4, 4, 4)), (1, 1, 2, 2), geom),
        "x_shape",
        "(1, 1, 2, 2)",
    )
    raises(
        ValueError,
        lambda: pool.scatter_windows(np.ones((1, 1, 4, 4, 3)), (1, 1, 8, 8), geom),
        "grad_windows",
        "(1, 1, 4, 4, 3)",
    )


def test_compiled_kernels_refuse_a_window_table_of_another_size():
    # The max/mean kernels take the six window arrays end to end
    # (PoolGeometry.windows); one of the wrong length would be read past its end.
    from cnnpool.pooling._ext import _kernels

    geom = cp.MaxPool2d(2).geometry_for(8, 8)  # (OH, OW) = (4, 4): 24 entries
    x, out = np.zeros((1, 6, 6)), np.zeros((1, 3, 3))  # (OH, OW) = (3, 3) needs 18
    taps, div = np.zeros((1, 3, 3), np.uint8), np.ones((3, 3))
    rest = geom.kernel_args[1:] + (1,)
    kernels = [
        lambda: _kernels.max_forward(x, out, taps, geom.windows, *rest),
        lambda: _kernels.max_backward(out, taps, x, geom.windows, *rest),
        lambda: _kernels.mean_forward(x, out, div, geom.windows, *rest),
        lambda: _kernels.mean_backward(out, x, div, geom.windows, *rest),
    ]
    for call in kernels:
        raises(ValueError, call, "windows has 24 entries", "(3, 3)", "18")


def test_compiled_kernels_check_their_arrays():
    # Entry points that run with bounds checks off check every array first.
    from cnnpool.pooling._ext import _kernels

    geom = cp.MaxPool2d(2).geometry_for(4, 4)  # (OH, OW) = (2, 2)
    rest = geom.kernel_args[1:] + (1,)
    win = geom.windows
    x, out = np.zeros((3, 4, 4)), np.zeros((3, 2, 2))
    taps, div = np.zeros((3, 2, 2), np.uint8), np.ones((2, 2))
    cases = [
        (TypeError, lambda: _kernels.max_forward(x.tolist(), out, taps, win, *rest), "x"),
        (
            TypeError,
            lambda: _kernels.max_forward(x, out.astype(np.float32), taps, win, *rest),
            "out",
        ),
        (
            TypeError,
            lambda: _kernels.max_forward(x, out, taps.astype(np.int32), win, *rest),
            "taps must be uint8 or int64",
        ),
        (
            ValueError,
            lambda: _kernels.max_forward(x, out[:2], taps, win, *rest),
            "same number of planes",
        ),
        (
            ValueError,
            lambda: _kernels.max_forward(x, out, taps[:2], win, *rest),
            "out and taps must have the same shape",
        ),
        (
            ValueError,
            lambda: _kernels.max_forward(x, out[..., ::-1], taps, win, *rest),
            "C-contiguous",
        ),
        (ValueError, lambda: _kernels.max_forward(x[:, None], out, taps, win, *rest), "3-D"),
        (
            TypeError,
            lambda: _kernels.max_forward(x, out, taps, win.astype(np.int32), *rest),
            "windows",
        ),
        (
            ValueError,
            lambda: _kernels.max_backward(out, taps[:2], x, win, *rest),
            "grad_out and taps",
        ),
        (
            ValueError,
            lambda: _kernels.max_backward(out, taps, x[:1], win, *rest),
            "grad_in and grad_out",
        ),
        (
            ValueError,
            lambda: _kernels.max_backward(out[:, :0], taps[:, :0], x, win, *rest),
            "at least one window",
        ),
        (
            ValueError,
            lambda: _kernels.max_forward(x[:, :0], out, taps, win, *rest),
            "x has empty planes",
        ),
        (
            ValueError,
            lambda: _kernels.mean_forward(x[:, :, :0], out, div, win, *rest),
            "x has empty planes",
        ),
        (ValueError, lambda: _kernels.mean_forward(x, out, div[:1], win, *rest), "divisor"),
        (
            TypeError,
            lambda: _kernels.mean_forward(x, out, div.astype(np.float32), win, *rest),
            "divisor",
        ),
        (
            ValueError,
            lambda: _kernels.mean_backward(out, x, np.ones((3, 3)), win, *rest),
            "(OH, OW) = (2, 2)",
        ),
    ]
    read_only = out.copy()
    read_only.flags.writeable = False
    cases.append(
        (ValueError, lambda: _kernels.max_forward(x, read_only, taps, win, *rest), "writeable")
    )
    for error, call, fragment in cases:
        raises(error, call, fragment)


def test_strategy_kernels_check_their_arrays():
    # The stochastic, mixed and gated kernels index the input through the
    # window table and read saved tap numbers: every array, the table's
    # entries and the taps are checked before the loops run.
    from cnnpool.pooling.strategies import _mixed, _stochastic

    geom = cp.MaxPool2d(2).geometry_for(4, 4)  # (OH, OW) = (2, 2)
    args = geom.kernel_args
    other = cp.MaxPool2d(2).geometry_for(6, 6).kernel_args  # (OH, OW) = (3, 3)
    x, out = np.zeros((3, 4, 4)), np.zeros((3, 2, 2))
    u, taps, live = np.zeros((3, 2, 2)), np.zeros((3, 2, 2), np.uint8), np.ones((3, 2, 2), np.uint8)
    alpha, weight, gate = np.full(3, 0.5), np.zeros(4), np.zeros((3, 2, 2))
    div, wg = np.full((2, 2), 4.0), np.zeros((3, 4))
    bad_taps = np.full((3, 2, 2), 9, np.uint8)  # a 2x2 window has taps 0..3
    bad_table = geom.windows.copy()
    bad_table[0] = 3  # the first window row would start on row 3 of 4
    cases = [
        (
            TypeError,
            lambda: _stochastic.train_forward(x.tolist(), u, out, taps, live, *args, 1),
            "x",
        ),
        (
            TypeError,
            lambda: _stochastic.train_forward(x, u.astype(np.float32), out, taps, live, *args, 1),
            "u must have dtype float64",
        ),
        (
            ValueError,
            lambda: _stochastic.train_forward(x, u[:2], out, taps, live, *args, 1),
            "u must have shape (P, OH, OW) of out = (3, 2, 2)",
        ),
        (
            TypeError,
            lambda: _stochastic.train_forward(x, u, out, taps.astype(np.int32), live, *args, 1),
            "taps must be uint8 or int64",
        ),
        (
            ValueError,
            lambda: _stochastic.train_forward(x, u, out, taps, live, *other, 1),
            "windows has 18 entries",
        ),
        (
            ValueError,
            lambda: _stochastic.train_forward(x, u, out, taps, live, bad_table, *args[1:], 1),
            "windows does not describe windows of input height 4",
        ),
        (
            ValueError,
            lambda: _stochastic.train_backward(out, bad_taps, live, x.copy(), *args, 1),
            "taps holds 12 tap numbers that are not input taps",
        ),
        (
            ValueError,
            lambda: _stochastic.train_backward(out, taps, live[:2], x.copy(), *args, 1),
            "live must have shape",
        ),
        (
            ValueError,
            lambda: _stochastic.eval_forward(x[:, :0], out, *args, 1),
            "empty planes",
        ),
        (
            ValueError,
            lambda: _stochastic.eval_backward(x, out, x[:2].copy(), *args, 1),
            "grad_in must have shape (P, H, W) of x = (3, 4, 4)",
        ),
        (
            ValueError,
            lambda: _stochastic.eval_forward(x, out[..., ::-1], *args, 1),
            "C-contiguous",
        ),
        (
            ValueError,
            lambda: _mixed.mixed_blend(out, out[:2], alpha, out.copy(), 1),
            "mx and mean must have the same shape",
        ),
        (
            ValueError,
            lambda: _mixed.mixed_blend(out, out, alpha[:2], out.copy(), 1),
            "alpha must have 3 entries",
        ),
        (
            ValueError,
            lambda: _mixed.mixed_split(
                out, alpha, out, out, out.copy(), out.copy(), np.zeros(2), 1
            ),
            "alpha_grad must have 3 entries",
        ),
        (
            ValueError,
            lambda: _mixed.gated_forward(x, weight[:3], out, out, out.copy(), gate, *args, 1),
            "weight must have 4 entries",
        ),
        (
            TypeError,
            lambda: _mixed.gated_forward(
                x, weight, out, out, out.copy(), gate.astype(np.float32), *args, 1
            ),
            "gate must have dtype float64",
        ),
        (
            ValueError,
            lambda: _mixed.gated_backward(
                x,
                out,
                weight,
                gate,
                out,
                out,
                out.copy(),
                x.copy(),
                wg[:, :3].copy(),
                div,
                *args,
                1,
            ),
            "weight_grad must have shape (P, K) = (3, 4)",
        ),
        (
            ValueError,
            lambda: _mixed.gated_backward(
                x, out, weight, gate, out, out, out.copy(), x.copy(), wg, div[:1], *args, 1
            ),
            "divisor must have shape (OH, OW) = (2, 2)",
        ),
    ]
    read_only = out.copy()
    read_only.flags.writeable = False
    cases.append(
        (ValueError, lambda: _stochastic.eval_forward(x, read_only, *args, 1), "writeable")
    )
    for error, call, fragment in cases:
        raises(error, call, fragment)


# ================================================== pooling: awkward but valid


@pytest.mark.parametrize(
    "make",
    [
        lambda: cp.MaxPool2d(3, 2, 1),
        lambda: cp.MeanPool2d(3, 2, 1, True),
        lambda: cp.MaxPool2d((2, 3), (1, 2), ceil_mode=True, dilation=(2, 1)),
    ],
    ids=["max", "mean", "max-dilated"],
)
@pytest.mark.parametrize("layout", ["fortran", "readonly", "negative-stride", "stride-0", "sliced"])
def test_awkward_layouts_give_the_contiguous_answer(make, layout):
    x = x4(c=2, h=9, w=8)
    if layout == "fortran":
        odd = np.asfortranarray(x)
    elif layout == "readonly":
        odd = x.copy()
        odd.flags.writeable = False
    elif layout == "negative-stride":
        odd = np.flip(np.flip(x).copy())
    elif layout == "stride-0":
        x = np.broadcast_to(x[:1], x.shape).copy()
        odd = np.broadcast_to(x[:1], x.shape)
    else:
        big = np.zeros((2, 2, 18, 8))
        big[:, :, ::2] = x
        odd = big[:, :, ::2]
    a, b = make(), make()
    y = a(odd)
    np.testing.assert_array_equal(y, b(x))
    g = np.asfortranarray(np.random.default_rng(1).standard_normal(y.shape))[..., ::-1, :]
    np.testing.assert_array_equal(a.backward(g), b.backward(np.ascontiguousarray(g)))


POOLS = [
    lambda: cp.MaxPool2d(3, 2, 1),
    lambda: cp.MeanPool2d(2),
    lambda: cp.LpPool2d(2, 2),
    lambda: cp.StochasticPool2d(2, rng=0),
    lambda: cp.MixedPool2d(2),
    lambda: cp.GatedPool2d(2),
    lambda: cp.AdaptiveMaxPool2d(2),
    lambda: cp.AdaptiveMeanPool2d(2),
    lambda: cp.GlobalMaxPool2d(),
]


def test_empty_batch_and_zero_channels():
    # An empty batch is a batch (as in PyTorch); no channels is refused (PyTorch
    # raises too), rather than answered with an empty array.
    for make in POOLS:
        pool = make()
        shape = (0, 3, 6, 6)
        y = pool(np.zeros(shape, np.float32))
        assert y.shape == pool.output_shape(shape) and y.dtype == np.float32
        gx = pool.backward(np.zeros(y.shape, np.float32))
        assert gx.shape == shape and gx.dtype == np.float32
        no_channels = functools.partial(pool, np.zeros((2, 0, 6, 6)))
        raises(ValueError, no_channels, "no channels", "(2, 0, 6, 6)")


def test_masked_arrays_are_refused_not_unmasked():
    x = np.ma.masked_array(np.ones((1, 1, 2, 2)), mask=[[[[True, False], [False, False]]]])
    raises(TypeError, lambda: cp.MaxPool2d(2)(x), "x is a masked array", "x.filled(value)")
    raises(TypeError, lambda: cp.ReLU()(x), "masked array")
    pool = cp.MaxPool2d(2)
    pool(np.ones((1, 1, 2, 2)))
    raises(TypeError, lambda: pool.backward(np.ma.masked_array(np.ones((1, 1, 1, 1)))), "masked")


def test_mixed_pooling_refuses_a_non_finite_alpha():
    for alpha in (np.nan, np.inf, -np.inf):
        raises(ValueError, lambda a=alpha: cp.MixedPool2d(2, alpha=a), "alpha must be finite")


def test_ceil_mode_never_starts_a_window_in_the_padding():
    # H = 3, k = 2, s = 2, p = 1, ceil: a third window would start at row 3,
    # inside the right padding only; it is dropped (PyTorch's rule).
    pool = cp.MaxPool2d(2, 2, 1, ceil_mode=True)
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    y = pool(x)
    assert y.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(y[0, 0], [[0, 2], [6, 8]])
    mean = cp.MeanPool2d(2, 2, 1, ceil_mode=True, count_include_pad=True)
    mean(x)
    np.testing.assert_array_equal(mean.divisor(), [[4, 4], [4, 4]])


RISKY = {
    # A window of NaNs, one of -inf's, a mixed one: in-range indices, and
    # the backward writes only inside the input.
    "all-nan-and-all-neginf-windows": """
        import numpy as np, cnnpool as cp
        x = np.full((2, 2, 6, 6), np.nan)
        x[1] = -np.inf
        x[0, 1, ::2, ::2] = np.inf
        for k, s, p, d, ceil in [(2, 2, 0, 1, False), (3, 1, 1, 1, True), (3, 2, 1, 2, True),
                                 (7, 1, 3, 1, False), (3, 3, 0, 1, True)]:
            for fast in (True, False):
                pool = cp.MaxPool2d(k, s, p, d, ceil)
                pool.use_fast_path = fast
                y = pool(x)
                idx = pool.indices
                assert idx.min() >= 0 and idx.max() < 36, (k, s, p, d, idx)
                assert np.isnan(y[0, 0]).all() and (y[1] == -np.inf).all()
                gx = pool.backward(np.ones_like(y))
                assert gx.sum() == y.size, (gx.sum(), y.size)
    """,
    # The geometry where a peer library returns out-of-range indices and
    # corrupts its heap: a 1-wide plane, kernel 2, dilation 2, padding 1.
    "window-with-no-input-element": """
        import numpy as np, cnnpool as cp
        for layer in (cp.MaxPool2d(2, 1, padding=1, dilation=2),
                      cp.MeanPool2d(2, 1, padding=1, dilation=2)):
            try:
                layer(np.ones((1, 1, 1, 1)))
            except ValueError as exc:
                assert "hold no input element" in str(exc) and "(H, W) = (1, 1)" in str(exc)
            else:
                raise AssertionError("accepted a window with no input element")
    """,
    "empty-batch-through-every-kernel": """
        import numpy as np, cnnpool as cp
        for dtype in (np.float32, np.float64):
            for layer in (cp.MaxPool2d(2), cp.MaxPool2d(3, 1, 1), cp.MeanPool2d(3, 2, 1),
                          cp.Conv2d(3, 4, 3, padding=1, dtype=dtype)):
                x = np.zeros((0, 3, 8, 8), dtype)
                y = layer(x)
                gx = layer.backward(np.zeros(y.shape, dtype))
                assert y.shape[0] == 0 and gx.shape == x.shape
    """,
    "large-windows-and-huge-padding": """
        import numpy as np, cnnpool as cp
        import reference as ref
        x = np.random.default_rng(3).standard_normal((1, 2, 11, 13))
        for k in (7, 9, 11):
            pool = cp.MaxPool2d(k, 1, k // 2, ceil_mode=True)
            y_ref, idx_ref = ref.max_pool2d(x, (k, k), (1, 1), (k // 2, k // 2), (1, 1), True)
            np.testing.assert_array_equal(pool(x), y_ref)
            np.testing.assert_array_equal(pool.indices, idx_ref)
        conv = cp.Conv2d(2, 1, 3, padding=9, dtype=np.float64, rng=0)
        y = conv(x)
        assert y.shape == (1, 1, 27, 29)
        gx = conv.backward(np.ones_like(y))
        assert gx.shape == x.shape and np.isfinite(gx).all()
    """,
    "stride-beyond-the-input": """
        import numpy as np, cnnpool as cp
        x = np.arange(16.0).reshape(1, 1, 4, 4)
        for layer in (cp.MaxPool2d(2, stride=2**31 - 1), cp.MeanPool2d(2, stride=2**31 - 1),
                      cp.Conv2d(1, 1, 2, stride=2**31 - 1, dtype=np.float64)):
            y = layer(x)
            assert y.shape == (1, 1, 1, 1)
            assert layer.backward(np.ones_like(y)).shape == x.shape
    """,
    "stale-saved-state-after-a-new-input-size": """
        import numpy as np, cnnpool as cp
        pool = cp.MaxPool2d(2)
        y_big = pool(np.random.default_rng(0).standard_normal((1, 1, 8, 8)))
        pool(np.ones((1, 1, 2, 2)))
        try:
            pool.backward(np.ones_like(y_big))  # the gradient of the older call
        except ValueError as exc:
            assert "grad_output" in str(exc)
        else:
            raise AssertionError("backward accepted a gradient of another forward")
    """,
}


@pytest.mark.parametrize("name", sorted(RISKY))
def test_risky_case_in_a_subprocess(name):
    run_isolated(RISKY[name])


# ==================================================================== conv


def test_conv_in_channels_zero():
    raises(ValueError, lambda: cp.Conv2d(0, 2, 3), "in_channels", "0")


def test_conv_dtype_int():
    raises(TypeError, lambda: cp.Conv2d(1, 2, 3, dtype=np.int32), "dtype", "int32")


def test_conv_bias_not_bool():
    raises(TypeError, lambda: cp.Conv2d(1, 2, 3, bias="yes"), "bias", "'yes'")


def test_conv_negative_seed():
    raises(ValueError, lambda: cp.Conv2d(1, 2, 3, rng=-1), "rng", "-1")


def test_conv_channel_mismatch():
    raises(
        ValueError,
        lambda: cp.Conv2d(3, 2, 3)(np.zeros((1, 2, 5, 5), np.float32)),
        "x",
        "(1, 2, 5, 5)",
        "in_channels=3",
    )


def test_conv_dtype_mismatch():
    raises(TypeError, lambda: cp.Conv2d(3, 2, 3)(np.zeros((1, 3, 5, 5))), "x", "float64", "float32")


def test_conv_kernel_larger_than_input():
    raises(
        ValueError,
        lambda: cp.Conv2d(3, 2, 5)(np.zeros((1, 3, 3, 3), np.float32)),
        "kernel_size=(5, 5)",
        "(1, 3, 3, 3)",
    )


@pytest.mark.parametrize("layout", ["fortran", "readonly", "negative-stride", "stride-0"])
def test_conv_awkward_layouts(layout):
    x = x4(n=2, c=2, h=7, w=6)
    if layout == "fortran":
        odd = np.asfortranarray(x)
    elif layout == "readonly":
        odd = x.copy()
        odd.flags.writeable = False
    elif layout == "negative-stride":
        odd = np.flip(np.flip(x).copy())
    else:
        x = np.broadcast_to(x[:1], x.shape).copy()
        odd = np.broadcast_to(x[:1], x.shape)
    a = cp.Conv2d(2, 3, 3, 2, 1, dtype=np.float64, rng=0)
    b = cp.Conv2d(2, 3, 3, 2, 1, dtype=np.float64, rng=0)
    y = a(odd)
    np.testing.assert_array_equal(y, b(x))
    g = np.asfortranarray(np.ones(y.shape))
    np.testing.assert_array_equal(a.backward(g), b.backward(np.ones(y.shape)))
    np.testing.assert_array_equal(a.weight.grad, b.weight.grad)


def test_conv_inf_and_nan_propagate():
    conv = cp.Conv2d(1, 1, 2, dtype=np.float64, bias=False, rng=0)
    conv.weight.data[...] = 1.0
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 0, 0] = np.inf
    x[0, 0, 2, 2] = np.nan
    y = conv(x)
    assert y[0, 0, 0, 0] == np.inf and np.isnan(y[0, 0, 1, 1])
    assert y[0, 0, 0, 1] == 0 and y[0, 0, 1, 0] == 0


# ===================================================== linear and activations


def test_linear_feature_mismatch():
    raises(
        ValueError,
        lambda: cp.Linear(4, 2)(np.zeros((3, 5), np.float32)),
        "x",
        "(3, 5)",
        "in_features=4",
    )


def test_linear_features_on_the_wrong_axis():
    # (*, in_features) as in PyTorch: a (3, 4, 1) array has 1 feature per row, not 4
    raises(
        ValueError,
        lambda: cp.Linear(4, 2)(np.zeros((3, 4, 1), np.float32)),
        "x",
        "1 features",
        "(3, 4, 1)",
        "last axis",
    )
    raises(ValueError, lambda: cp.Linear(4, 2)(np.array(1.0, np.float32)), "x", "0-D")


def test_linear_zero_features():
    raises(ValueError, lambda: cp.Linear(0, 2), "in_features", "0")


def test_flatten_one_dimensional_input():
    raises(ValueError, lambda: cp.Flatten()(np.zeros(3)), "x", "(3,)")


def test_relu_integer_input():
    raises(TypeError, lambda: cp.ReLU()(np.zeros(3, np.int64)), "x", "int64")


def test_activations_at_inf_and_nan():
    x = np.array([np.inf, -np.inf, np.nan, 0.0])
    sig, tanh, relu = cp.Sigmoid(), cp.Tanh(), cp.ReLU()
    with np.errstate(all="raise"):  # no overflow warnings either
        np.testing.assert_array_equal(sig(x), [1.0, 0.0, np.nan, 0.5])
        np.testing.assert_array_equal(sig.backward(np.ones(4)), [0.0, 0.0, np.nan, 0.25])
        np.testing.assert_array_equal(tanh(x), [1.0, -1.0, np.nan, 0.0])
        np.testing.assert_array_equal(tanh.backward(np.ones(4)), [0.0, 0.0, np.nan, 1.0])
    y = relu(x)
    assert y[0] == np.inf and y[1] == 0 and np.isnan(y[2])


# ================================================================== losses


def test_cross_entropy_label_out_of_range():
    raises(
        ValueError,
        lambda: cp.SoftmaxCrossEntropy()(np.zeros((2, 3)), np.array([0, 3])),
        "target",
        "[0, 3)",
        "3",
    )


def test_cross_entropy_negative_label():
    raises(
        ValueError,
        lambda: cp.SoftmaxCrossEntropy()(np.zeros((2, 3)), np.array([-1, 0])),
        "target",
        "-1",
    )


def test_cross_entropy_float_labels():
    raises(
        TypeError,
        lambda: cp.SoftmaxCrossEntropy()(np.zeros((2, 3)), np.array([0.0, 1.0])),
        "target",
        "float64",
    )


def test_cross_entropy_label_shape():
    raises(
        ValueError,
        lambda: cp.SoftmaxCrossEntropy()(np.zeros((2, 3)), np.array([0])),
        "target",
        "(2,)",
        "(1,)",
    )


def test_cross_entropy_with_infinite_logits():
    loss = cp.SoftmaxCrossEntropy()
    value = loss(np.array([[0.0, -np.inf, 1.0]]), np.array([0]))
    np.testing.assert_allclose(value, np.log(1 + np.e))
    grad = loss.backward()
    assert np.isfinite(grad).all() and grad[0, 1] == 0


def test_mse_shape_mismatch():
    raises(
        ValueError,
        lambda: cp.MSELoss()(np.zeros((2, 3)), np.zeros((3, 2))),
        "target",
        "(2, 3)",
        "(3, 2)",
    )


def test_loss_reduction_unknown():
    raises(ValueError, lambda: cp.MSELoss(reduction="avg"), "reduction", "'avg'")


# =============================================================== optimizers


def _param():
    return cp.Parameter(np.zeros(3))


def test_sgd_negative_lr():
    raises(ValueError, lambda: cp.SGD([_param()], lr=-1), "lr", "-1")


def test_sgd_nan_lr():
    raises((TypeError, ValueError), lambda: cp.SGD([_param()], lr=float("nan")), "lr", "nan")


def test_optimizer_given_a_single_parameter():
    raises(TypeError, lambda: cp.SGD(_param(), lr=0.1), "params", "Parameter")


def test_optimizer_given_a_non_parameter():
    raises(TypeError, lambda: cp.Adam([_param(), "w"]), "params[1]", "str")


def test_optimizer_empty_parameter_list():
    raises(ValueError, lambda: cp.SGD([], lr=0.1), "empty parameter list")


def test_adam_beta_one():
    raises(ValueError, lambda: cp.Adam([_param()], betas=(1.0, 0.999)), "betas[0]", "1.0")


def test_sgd_nesterov_without_momentum():
    raises(ValueError, lambda: cp.SGD([_param()], lr=0.1, nesterov=True), "nesterov", "momentum")


# ================================================================ datasets


def test_dataset_unknown_name():
    from cnnpool import datasets

    raises(ValueError, lambda: datasets.load("cifar"), "dataset", "'cifar'")


def test_dataset_test_fraction_out_of_range():
    from cnnpool import datasets

    pytest.importorskip("skimage")
    raises(ValueError, lambda: datasets.load_faces(test_fraction=1.5), "test_fraction", "1.5")


def test_dataset_negative_seed():
    from cnnpool import datasets

    pytest.importorskip("skimage")
    raises(TypeError, lambda: datasets.load_faces(seed=-1), "seed", "-1")


def test_dataset_single_texture():
    from cnnpool import datasets

    pytest.importorskip("skimage")
    raises(ValueError, lambda: datasets.load_textures(textures=["camera"]), "textures", "'camera'")


# =============================================================== save / load


def _model(seed=0):
    return cp.Sequential(
        cp.Conv2d(1, 2, 3, padding=1, rng=seed),
        cp.ReLU(),
        cp.MaxPool2d(2),
        cp.Flatten(),
        cp.Linear(8, 3, rng=seed),
    )


def test_sequential_given_a_non_layer():
    raises(TypeError, lambda: cp.Sequential(cp.ReLU(), "relu"), "layers[1]", "str")


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        cp.load(tmp_path / "nothing.npz")


def test_load_truncated_file(tmp_path):
    path = tmp_path / "model.npz"
    _model().save(path)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 100):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        raises(ValueError, lambda bad=bad: cp.load(bad), str(bad), "not a valid cnnpool model")


def test_load_junk_bytes_and_a_plain_npy(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"definitely not a model")
    raises(ValueError, lambda: cp.load(junk), str(junk))
    npy = tmp_path / "one.npy"
    np.save(npy, np.zeros(3))
    raises(ValueError, lambda: cp.load(npy), str(npy), "single array")


def test_load_refuses_pickles_and_runs_nothing(tmp_path):
    """An object array (a pickle) is refused before anything is unpickled."""
    marker = tmp_path / "executed"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.npz"
    good = tmp_path / "good.npz"
    _model().save(good)
    with np.load(good) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["payload"] = np.array([Boom()], dtype=object)
    np.savez(path, **arrays)
    raises(ValueError, lambda: cp.load(path), "pickled")
    assert not marker.exists()
    model = _model()
    raises(ValueError, lambda: model.load_state(path), "pickled")
    assert not marker.exists()


def test_load_tampered_weights(tmp_path):
    path = tmp_path / "model.npz"
    _model().save(path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    key = next(k for k in arrays if k != "__architecture__")
    arrays[key] = arrays[key] + 1
    np.savez(path, **arrays)
    raises(ValueError, lambda: cp.load(path), repr(key), "checksum")


def test_load_unknown_layer_type_is_not_imported(tmp_path):
    path = tmp_path / "model.npz"
    _model().save(path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arch = str(arrays["__architecture__"]).replace('"ReLU"', '"os.system"')
    arrays["__architecture__"] = np.array(arch)
    np.savez(path, **arrays)
    raises(ValueError, lambda: cp.load(path), "'os.system'", "unknown type")


def test_load_state_into_another_architecture(tmp_path):
    path = tmp_path / "model.npz"
    _model().save(path)
    other = cp.Sequential(
        cp.Conv2d(1, 3, 3, padding=1), cp.ReLU(), cp.MaxPool2d(2), cp.Flatten(), cp.Linear(12, 3)
    )
    raises(ValueError, lambda: other.load_state(path), str(path), "different architecture")


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    """A crash mid-save leaves the previous file intact and no temporary file behind."""
    path = tmp_path / "model.npz"
    old = _model(seed=1)
    old.save(path)
    before = path.read_bytes()

    def crash(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")  # something reaches the disk first
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        _model(seed=2).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
    loaded = cp.load(path)
    for a, b in zip(loaded.parameters(), old.parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data)


def test_save_load_round_trip_is_bit_exact(tmp_path):
    path = tmp_path / "model.npz"
    model = _model(seed=3)
    model.save(path)
    loaded = cp.load(path)
    x = np.random.default_rng(0).standard_normal((2, 1, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
