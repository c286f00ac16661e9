"""Adaptive and global pooling: a fixed output size, windows of varying size.

PyTorch's rule (``adaptive_max_pool2d``, ``adaptive_avg_pool2d``): along
an axis of input size ``L`` and output size ``O``, output ``i`` covers
``[floor(i * L / O), ceil((i + 1) * L / O))``.  Windows differ in size by
at most one element, overlap when ``L`` is not a multiple of ``O``, and
repeat elements when ``O > L``.

How this fits the fixed-kernel machinery: an adaptive layer builds an
ordinary :class:`~cnnpool.pooling.geometry.PoolGeometry` whose "kernel" is
the largest window, ``K = max_h * max_w``, and whose smaller windows have
their missing taps *outside* the input (-1 in the tap table, ``False`` in
``inside``, never counted).  So the generic path (compiled gather and
scatter-add, ``pool``/``route`` in NumPy), ``geometry.counts`` and
``geometry.inside`` work unchanged; the compiled path uses the window
ranges directly (``_adaptive.pyx``).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ..._parallel import threads_for
from ...registry import register
from .._ext import _adaptive
from ..base import Pool2d
from ..geometry import AxisTaps, PoolGeometry
from .max import MaxReduction


def adaptive_ranges(size, out):
    """``(start, end)`` of the ``out`` adaptive windows along an axis of ``size``.

    ``start[i] = floor(i * size / out)``, ``end[i] = ceil((i + 1) * size / out)``,
    as intp arrays.
    """
    i = np.arange(out, dtype=np.intp)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    return start, end


def _adaptive_axis(size, out):
    start, end = adaptive_ranges(size, out)
    length = end - start
    kernel = int(length.max())
    i = np.arange(kernel, dtype=np.intp)
    # Missing taps of a short window sit past the input's end: outside, never counted.
    positions = np.where(i < length[:, None], start[:, None] + i, size + i)
    return AxisTaps(positions, np.zeros(out, np.intp), length, length, length), kernel, start, end


@dataclass(frozen=True)
class AdaptiveGeometry(PoolGeometry):
    """A :class:`PoolGeometry` of windows of varying size.

    ``kernel_size`` is the largest window; ``stride`` the largest step
    between window starts (nominal: windows are not evenly spaced);
    ``padding`` 0 and ``dilation`` 1.  Taps a smaller window lacks are -1
    in :attr:`taps` and ``False`` in :attr:`inside`.

    Attributes
    ----------
    adaptive : tuple of four intp arrays
        ``(row_start, row_end, col_start, col_end)``: output ``(oh, ow)``
        covers rows ``[row_start[oh], row_end[oh])`` and likewise columns.
    """

    adaptive: tuple = ()


def adaptive_geometry(in_size, out_size):
    """The :class:`AdaptiveGeometry` of adaptive pooling from ``in_size`` to ``out_size``."""
    (h, w), (oh, ow) = in_size, out_size
    rows, kh, rs, re = _adaptive_axis(h, oh)
    cols, kw, cs, ce = _adaptive_axis(w, ow)
    step = tuple(int(np.diff(s).max()) if s.size > 1 else n for s, n in ((rs, h), (cs, w)))
    return AdaptiveGeometry(
        (h, w), (oh, ow), (kh, kw), step, (0, 0), (1, 1), rows, cols, (rs, re, cs, ce)
    )


def _output_size(value):
    """``output_size`` as a pair whose items are ints >= 1 or None."""
    items = value if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(
        v is None or (isinstance(v, numbers.Integral) and not isinstance(v, bool)) for v in items
    ):
        raise TypeError(f"output_size must be an int, None or a pair of them, got {value!r}")
    if any(v is not None and v < 1 for v in items):
        raise ValueError(f"output_size must be >= 1, got {value!r}")
    return tuple(None if v is None else int(v) for v in items)


class _Adaptive(Pool2d):
    """Geometry of adaptive pooling; ``kernel_size``/``stride`` are per input size."""

    def __init__(self, output_size):
        super().__init__(1)
        self.output_size = _output_size(output_size)
        # Windows depend on the input size: see ``geometry_for(H, W).kernel_size``.
        self.kernel_size = self.stride = None

    def geometry_for(self, height, width):
        """The adaptive :class:`PoolGeometry` for an input of size ``(height, width)``."""
        key = (int(height), int(width))
        geom = self._geometries.get(key)
        if geom is None:
            if min(key) < 1:
                raise ValueError(
                    f"{type(self).__name__} needs a non-empty input, got (H, W) = {key}"
                )
            out = tuple(s if o is None else o for s, o in zip(key, self.output_size))
            geom = adaptive_geometry(key, out)
            if len(self._geometries) > 32:
                self._geometries.clear()
            self._geometries[key] = geom
        return geom

    def extra_repr(self):
        return f"output_size={self.output_size}"

    def get_config(self):
        """Constructor arguments, for saved models."""
        return {"output_size": list(self.output_size)}


@register
class AdaptiveMaxPool2d(MaxReduction, _Adaptive):
    """Adaptive max pooling, as ``torch.nn.AdaptiveMaxPool2d``.

    Parameters
    ----------
    output_size : int, None or (int or None, int or None)
        ``(OH, OW)``; ``None`` keeps that input dimension.

    Attributes
    ----------
    indices : ndarray of int64, shape (N, C, OH, OW)
        After a forward pass, the flat index ``ih * W + iw`` of each
        window's winner (``return_indices=True`` in PyTorch).  Read-only.

    Notes
    -----
    PyTorch's window rule (see the module) and its winner rule: the first
    of equal maxima, a NaN wins (the last of several).  Overlapping windows
    accumulate gradient at a shared winner.

    Examples
    --------
    >>> import numpy as np, cnnpool as cp
    >>> x = np.arange(25.0).reshape(1, 1, 5, 5)
    >>> cp.AdaptiveMaxPool2d(2)(x)[0, 0]   # windows rows/cols [0, 3) and [2, 5)
    array([[12., 14.],
           [22., 24.]])
    """

    def forward_kernel(self, x, geom):
        n, c, h, w = x.shape
        shape = (n * c,) + geom.out_size
        out = np.empty(shape, dtype=x.dtype)
        indices = np.empty(shape, dtype=np.int64)
        _adaptive.max_forward(
            x.reshape(n * c, h, w),
            out,
            indices,
            *geom.adaptive,
            threads_for(n * c, x.size + out.size),
        )
        indices = indices.reshape((n, c) + geom.out_size)
        indices.flags.writeable = False
        return out.reshape(indices.shape), indices

    def backward_kernel(self, grad_output, state):
        indices, geom = state.saved, state.geometry
        n, c, h, w = x_shape = state.x_shape
        planes = n * c
        grad_x = np.zeros((planes, h * w), dtype=grad_output.dtype)
        size = geom.out_size[0] * geom.out_size[1]
        _adaptive.max_backward(
            grad_output.reshape(planes, size),
            indices.reshape(planes, size),
            grad_x,
            threads_for(planes, grad_x.size + grad_output.size),
        )
        return grad_x.reshape(x_shape)


@register
class AdaptiveMeanPool2d(_Adaptive):
    """Adaptive mean pooling, as ``torch.nn.AdaptiveAvgPool2d`` (``AdaptiveAvgPool2d``).

    Parameters
    ----------
    output_size : int, None or (int or None, int or None)
        ``(OH, OW)``; ``None`` keeps that input dimension.

    Notes
    -----
    Each output is its window's sum divided by the window's height and
    then its width (PyTorch's order); windows of different sizes have
    different divisors.  Backward spreads ``grad / kh / kw`` over the
    window, accumulating where windows overlap.
    """

    pad_value = 0.0

    def _divisors(self, geom, dtype):
        rows, cols = geom.rows.count_inside, geom.cols.count_inside
        return rows.astype(dtype)[:, None], cols.astype(dtype)[None, :]

    def pool(self, windows):
        kh, kw = self._divisors(self.geometry, windows.dtype)
        return windows.sum(axis=-1) / kh / kw

    def route(self, windows, pooled):
        kh, kw = self._divisors(self.geometry, windows.dtype)
        share = np.ones(kh.shape, windows.dtype) / kh / kw
        return np.broadcast_to(share[..., None], windows.shape)

    def forward_kernel(self, x, geom):
        n, c, h, w = x.shape
        out = np.empty((n * c,) + geom.out_size, dtype=x.dtype)
        _adaptive.mean_forward(
            x.reshape(n * c, h, w), out, *geom.adaptive, threads_for(n * c, x.size + out.size)
        )
        return out.reshape((n, c) + geom.out_size), None

    def backward_kernel(self, grad_output, state):
        geom = state.geometry
        n, c, h, w = x_shape = state.x_shape
        grad_x = np.zeros((n * c, h, w), dtype=grad_output.dtype)
        _adaptive.mean_backward(
            grad_output.reshape((n * c,) + geom.out_size),
            grad_x,
            *geom.adaptive,
            threads_for(n * c, grad_x.size + grad_output.size),
        )
        return grad_x.reshape(x_shape)


AdaptiveAvgPool2d = AdaptiveMeanPool2d


@register
class GlobalMaxPool2d(AdaptiveMaxPool2d):
    """The max of each whole (H, W) plane: output ``(N, C, 1, 1)``.

    ``AdaptiveMaxPool2d(1)``; in PyTorch ``adaptive_max_pool2d(x, 1)`` or
    ``x.amax((2, 3), keepdim=True)``.  :attr:`indices` holds the flat index
    of each plane's maximum.
    """

    def __init__(self):
        super().__init__(1)

    def extra_repr(self):
        return ""

    def get_config(self):
        return {}


@register
class GlobalMeanPool2d(AdaptiveMeanPool2d):
    """The mean of each whole (H, W) plane: output ``(N, C, 1, 1)``.

    ``AdaptiveMeanPool2d(1)``; in PyTorch ``adaptive_avg_pool2d(x, 1)``.
    ``GlobalAvgPool2d`` is this class.
    """

    def __init__(self):
        super().__init__(1)

    def extra_repr(self):
        return ""

    def get_config(self):
        return {}


GlobalAvgPool2d = GlobalMeanPool2d
