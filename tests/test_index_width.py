"""Index width: no 32-bit arithmetic anywhere between a shape and a memory address.

* The geometry code (pure Python ints and intp arrays) gives the right
  answer on shapes far beyond 2**31 elements, checked without allocating
  them: ``output_size``, ``make_geometry``, ``Pool2d.output_shape``,
  ``conv_output_size`` and ``Conv2d.output_shape``.
* The compiled kernels declare every index, size and offset
  ``Py_ssize_t``: a source audit of every ``.pyx``, ``.pxd`` and ``.pxi``
  (the included parts of ``_kernels.pyx``) refuses C ``int``,
  ``long`` or ``unsigned`` anywhere but the few named non-index uses.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from reference import pool_output_size

import cnnpool as cp
from cnnpool.pooling.geometry import make_geometry, output_size

H, W = 2**20, 2**17  # one plane: 2**37 elements
N, C = 8, 64  # the batch: 2**46 elements
BIG = (N, C, H, W)


@pytest.mark.parametrize(
    "k,s,p,d,ceil",
    [
        (2, 2, 0, 1, False),
        (3, 2, 1, 1, True),
        (3, 1, 1, 2, False),
        (7, 3, 3, 1, True),
        ((5, 2), (4, 1), (2, 1), (3, 1), True),
    ],
)
def test_pool_geometry_on_huge_shapes(k, s, p, d, ceil):
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    k, s, p, d = map(pair, (k, s, p, d))
    expected = tuple(pool_output_size(n, *args, ceil) for n, *args in zip((H, W), k, s, p, d))
    for axis, n in enumerate((H, W)):
        assert output_size(n, k[axis], s[axis], p[axis], d[axis], ceil) == expected[axis]
    geom = make_geometry((H, W), k, s, p, d, ceil)
    assert geom.out_size == expected
    # The last window's first tap, and its ranges, exactly (no wrap-around).
    row_start, row_lo, row_hi, col_start, col_lo, col_hi, *_ = geom.ranges
    for starts, lo, hi, out, n, axis in (
        (row_start, row_lo, row_hi, expected[0], H, 0),
        (col_start, col_lo, col_hi, expected[1], W, 1),
    ):
        assert starts.dtype == np.intp and starts.shape == (out,)
        assert starts[-1] == (out - 1) * s[axis] - p[axis]
        last = [starts[-1] + i * d[axis] for i in range(lo[-1], hi[-1])]
        assert last and 0 <= min(last) and max(last) < n
    for pool in (cp.MaxPool2d(k, s, p, d, ceil), cp.MeanPool2d(k, s, p, ceil, dilation=d)):
        assert pool.output_shape(BIG) == (N, C) + expected
    assert np.prod(BIG, dtype=object) > 2**40


def test_flat_index_of_the_last_element_of_a_huge_plane():
    """What a max kernel stores as an index: ``ih * W + iw`` far above 2**31."""
    geom = make_geometry((H, W), (2, 2), (2, 2), (0, 0), (1, 1), False)
    row_start, _, _, col_start, _, _, *_ = geom.ranges
    last = (row_start[-1] + 1) * W + col_start[-1] + 1
    assert last == H * W - 1 > 2**36
    assert np.int64(row_start[-1] + 1) * np.int64(W) + col_start[-1] + 1 == last


def test_conv_output_size_on_huge_shapes():
    from cnnpool.conv import conv_output_size

    conv = cp.Conv2d(C, 3, (3, 5), stride=(2, 3), padding=(1, 2), dilation=(2, 1))
    oh = (H + 2 - 2 * 2 - 1) // 2 + 1
    ow = (W + 4 - 4 - 1) // 3 + 1
    assert conv_output_size(H, 3, 2, 1, 2) == oh
    assert conv_output_size(W, 5, 3, 2, 1) == ow
    assert conv.output_shape(BIG) == (N, 3, oh, ow)
    # The im2col buffer it would need: N * C*kh*kw * OH*OW, far past 2**31.
    assert N * C * 15 * oh * ow > 2**44


def test_adaptive_geometry_on_huge_shapes():
    pool = cp.pooling.AdaptiveMaxPool2d((7, 3))
    assert pool.output_shape(BIG) == (N, C, 7, 3)
    geom = pool.geometry_for(H, W)
    rs, re_, cs, ce = geom.adaptive
    assert rs[0] == 0 and re_[-1] == H and cs[0] == 0 and ce[-1] == W


# Every C integer type in the kernels that is not Py_ssize_t/int64_t, and why.
ALLOWED = {
    "n_threads",  # an OpenMP thread count
    "failed",  # a flag: a thread could not allocate its scratch
    "failed_p",  # ... and a pointer to it
    "mode",  # an enum-like selector of the loop to run
    "_cpu.pyx:CNNPOOL_MODE_NAME",  # C strings and a version date describing the build
    "_cpu.pyx:CNNPOOL_COMPILER",
    "_cpu.pyx:CNNPOOL_OPENMP_VERSION",
    "_lp.pyx:whole",  # the Lp norm exponent as an int when it is one (|p| <= 16)
    "_lp.pyx:n",  # _ipow's argument: the same small exponent
    "typenum",  # a NumPy dtype number (NPY_FLOAT32, NPY_FLOAT64)
    "float_type",  # _arrays.pyx/.pxd: returns such a dtype number
    "_tap_type",  # _kernels.pyx: the dtype number of the tap numbers (uint8 or int64)
    "tap_typenum",  # ... as kept by the entry points
    # _kernels.pyx: 0, or -1 with a Python exception set (Cython's "except -1")
    "_same_planes",
    "_same_shape",
    "_max_forward",
    "_max_backward",
    "_mean_forward",
    "_mean_backward",
    "_debug_check_taps",  # _windows.pyx: the same convention
    "_pool3d.pyx:_axis",  # ... and _pool3d.pyx's checks
    "_pool3d.pyx:_geo",
    "cnnpool_max_threads",
    "cnnpool_openmp_enabled",
}
C_INT = re.compile(
    r"\b(?:unsigned\s+|signed\s+)?(int|long|short|char|unsigned)\b(?!\w)\s*\**\s*(\w+)"
)


def test_kernels_index_with_py_ssize_t_only():
    root = Path(cp.__file__).parent
    sources = [p for ext in ("pyx", "pxd", "pxi") for p in sorted(root.rglob(f"*.{ext}"))]
    if not sources:
        pytest.skip("the .pyx sources are not installed alongside the package")
    offenders = []
    for path in sources:
        text = path.read_text()
        # Blank out docstrings and other triple-quoted text (keeping line numbers).
        text = re.sub(
            r'("""|\'\'\')(.*?)\1', lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S
        )
        for number, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            for match in C_INT.finditer(code):
                name = match.group(2)
                if name in ALLOWED or f"{path.name}:{name}" in ALLOWED or name.endswith("_t"):
                    continue
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert not offenders, "C int types used for what may be an index:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    "k,s,H,W,dtype",
    [
        (2, 2, 2, 2**24 + 2, np.float32),  # the direct 2x2 loop: offsets W and W+1
        (3, 1, 3, 2**23 + 3, np.float32),  # 3x3: offsets up to 2W+2, just past 2**24
    ],
    ids=["2x2s2-float32", "3x3s1-float32"],
)
def test_max_indices_exact_on_planes_wider_than_float32_integers(k, s, H, W, dtype):
    """Winner offsets above 2**24 are not exact in float32: none may be kept in one.

    (Under the kernel rewrite in progress, the 2x2 direct path reported the
    winner one column off, outside its own window, for W = 2**24 + 2.)
    """
    rng = np.random.default_rng(0)
    x = np.zeros((1, 1, H, W), dtype)
    x[0, 0, -1, :4096] = 1 + rng.random(4096)  # the winners sit in the last row
    x[0, 0, :, -4096:] = rng.standard_normal((H, 4096))
    pool = cp.MaxPool2d(k, s)
    y = pool(x)
    idx = pool.indices[0, 0]
    oh, ow = np.indices(idx.shape)
    r, c = idx // W, idx % W
    assert (r - oh * s >= 0).all() and (r - oh * s < k).all()
    assert (c - ow * s >= 0).all() and (c - ow * s < k).all()
    np.testing.assert_array_equal(x[0, 0].ravel()[idx], y[0, 0])
    gx = pool.backward(np.ones_like(y))
    counts = np.bincount(idx.ravel(), minlength=H * W).reshape(H, W)
    np.testing.assert_array_equal(gx[0, 0], counts)
