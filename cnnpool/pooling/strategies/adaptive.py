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

import math
import numbers
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..._parallel import threads_for
from ...registry import register
from .._ext import _adaptive, _pool3d
from ..base import Pool2d
from ..geometry import AxisTaps, PoolGeometry, axis_names, shape_name
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
    adaptive : tuple of intp arrays
        ``(start, end)`` per axis, end to end; in 2-D ``(row_start,
        row_end, col_start, col_end)``: output ``(oh, ow)`` covers rows
        ``[row_start[oh], row_end[oh])`` and likewise columns.
    """

    adaptive: tuple = ()

    @cached_property
    def adaptive2d(self):
        """:attr:`adaptive` as the 2-D kernels take it (1-D: a ``(1, L)`` plane)."""
        if self.ndim == 1:
            return (np.zeros(1, np.intp), np.ones(1, np.intp)) + tuple(self.adaptive)
        if self.ndim == 2:
            return tuple(self.adaptive)
        raise ValueError("a 3-D adaptive geometry has no 2-D kernel arguments")


def adaptive_geometry(in_size, out_size):
    """The :class:`AdaptiveGeometry` of adaptive pooling from ``in_size`` to ``out_size``
    (one size per spatial axis, 1 to 3 of them)."""
    axes, kernel, step, adaptive = [], [], [], []
    for size, out in zip(in_size, out_size):
        taps, k, start, end = _adaptive_axis(size, out)
        axes.append(taps)
        kernel.append(k)
        step.append(int(np.diff(start).max()) if start.size > 1 else size)
        adaptive += [start, end]
    n = len(in_size)
    return AdaptiveGeometry(
        tuple(in_size),
        tuple(out_size),
        tuple(kernel),
        tuple(step),
        ((0, 0),) * n,
        (1,) * n,
        tuple(axes),
        tuple(adaptive),
    )


def _output_size(value, n=2):
    """``output_size`` as ``n`` items, each an int >= 1 or None."""
    items = value if isinstance(value, (tuple, list)) else (value,) * n
    if len(items) != n or not all(
        v is None or (isinstance(v, numbers.Integral) and not isinstance(v, bool)) for v in items
    ):
        raise TypeError(
            f"output_size must be an int, None or {n} of them (one per spatial axis: "
            f"{', '.join(axis_names(n))}), got {value!r}"
        )
    if any(v is not None and v < 1 for v in items):
        raise ValueError(f"output_size must be >= 1, got {value!r}")
    return tuple(None if v is None else int(v) for v in items)


class _Adaptive(Pool2d):
    """Geometry of adaptive pooling; ``kernel_size``/``stride`` are per input size."""

    def __init__(self, output_size):
        super().__init__(1)
        self.output_size = _output_size(output_size, self.spatial_dims)
        # Windows depend on the input size: see ``geometry_for(H, W).kernel_size``.
        self.kernel_size = self.stride = None

    def geometry_for(self, *size):
        """The adaptive :class:`PoolGeometry` for an input of spatial size ``size``."""
        key = tuple(int(v) for v in size)
        geom = self._geometries.get(key)
        if geom is None:
            if len(key) != self.spatial_dims:
                raise ValueError(
                    f"{type(self).__name__} pools {self.spatial_dims} spatial axes "
                    f"{shape_name(self.spatial_dims)}, got the size {key}"
                )
            if min(key) < 1:
                raise ValueError(
                    f"{type(self).__name__} needs a non-empty input, got "
                    f"{shape_name(self.spatial_dims)} = {key}"
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

    # 1-D runs on the 2-D kernels as (1, L) planes, 3-D on _pool3d's max: an
    # adaptive window is a (start, 0, length) range per axis, as that kernel takes.
    kernel_ranks = (1, 2, 3)

    def forward_kernel(self, x, geom):
        n, c = x.shape[:2]
        if geom.ndim == 3:
            out, indices = _pool3d.max_forward_3d(
                x.reshape((n * c,) + geom.in_size),
                *geom.axis_ranges,
                (1, 1, 1),
                threads_for(n * c, x.size),
            )
            indices = indices.reshape((n, c) + geom.out_size)
            indices.flags.writeable = False
            return out.reshape(indices.shape), indices
        shape = (n * c,) + geom.out2d
        out = np.empty(shape, dtype=x.dtype)
        indices = np.empty(shape, dtype=np.int64)
        _adaptive.max_forward(
            x.reshape((n * c,) + geom.plane2d),
            out,
            indices,
            *geom.adaptive2d,
            threads_for(n * c, x.size + out.size),
        )
        indices = indices.reshape((n, c) + geom.out_size)
        indices.flags.writeable = False
        return out.reshape(indices.shape), indices

    def backward_kernel(self, grad_output, state):
        indices, geom = state.saved, state.geometry
        x_shape = state.x_shape
        planes = x_shape[0] * x_shape[1]
        grad_x = np.zeros((planes, geom.plane_size), dtype=grad_output.dtype)
        size = math.prod(geom.out_size)
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
    # 1-D runs on the 2-D kernels as (1, L) planes, 3-D on _pool3d's mean with
    # each window's volume as its divisor.
    kernel_ranks = (1, 2, 3)

    def _divisors(self, geom, dtype):
        """Each axis's window lengths, shaped to broadcast over ``out_size``."""
        n = geom.ndim
        return [
            ax.count_inside.astype(dtype).reshape([-1 if i == a else 1 for i in range(n)])
            for a, ax in enumerate(geom.axes)
        ]

    def pool(self, windows):
        out = windows.sum(axis=-1)
        for k in self._divisors(self.geometry, windows.dtype):
            out = out / k  # axis by axis, PyTorch's order
        return out

    def route(self, windows, pooled):
        share = np.ones(self.geometry.out_size, windows.dtype)
        for k in self._divisors(self.geometry, windows.dtype):
            share = share / k
        return np.broadcast_to(share[..., None], windows.shape)

    def _volumes(self, geom):
        """Each 3-D window's size, float64 ``out_size`` (the mean kernel's divisor)."""
        return np.multiply.outer(
            np.multiply.outer(geom.axes[0].count_inside, geom.axes[1].count_inside),
            geom.axes[2].count_inside,
        ).astype(np.float64)

    def forward_kernel(self, x, geom):
        n, c = x.shape[:2]
        if geom.ndim == 3:
            out = _pool3d.mean_forward_3d(
                x.reshape((n * c,) + geom.in_size),
                *geom.axis_ranges,
                (1, 1, 1),
                self._volumes(geom),
                threads_for(n * c, x.size),
            )
            return out.reshape((n, c) + geom.out_size), None
        out = np.empty((n * c,) + geom.out2d, dtype=x.dtype)
        _adaptive.mean_forward(
            x.reshape((n * c,) + geom.plane2d),
            out,
            *geom.adaptive2d,
            threads_for(n * c, x.size + out.size),
        )
        return out.reshape((n, c) + geom.out_size), None

    def backward_kernel(self, grad_output, state):
        geom = state.geometry
        n, c = state.x_shape[:2]
        if geom.ndim == 3:
            grad_x = _pool3d.mean_backward_3d(
                grad_output.reshape((n * c,) + geom.out_size),
                geom.in_size,
                *geom.axis_ranges,
                (1, 1, 1),
                self._volumes(geom),
                threads_for(n * c, grad_output.size + n * c * geom.plane_size),
            )
            return grad_x.reshape(state.x_shape)
        grad_x = np.zeros((n * c,) + geom.plane2d, dtype=grad_output.dtype)
        _adaptive.mean_backward(
            grad_output.reshape((n * c,) + geom.out2d),
            grad_x,
            *geom.adaptive2d,
            threads_for(n * c, grad_x.size + grad_output.size),
        )
        return grad_x.reshape(state.x_shape)


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


class AdaptiveMaxPool1d(AdaptiveMaxPool2d):
    """Adaptive max pooling over ``(N, C, L)`` or ``(C, L)``, as ``torch.nn.AdaptiveMaxPool1d``.

    ``output_size`` is an int (or ``None``: keep ``L``); :attr:`indices`
    are positions along the axis.  Compiled (the 2-D kernels on ``(1, L)``).
    """

    spatial_dims = 1


class AdaptiveMaxPool3d(AdaptiveMaxPool2d):
    """Adaptive max pooling over ``(N, C, D, H, W)``, as ``torch.nn.AdaptiveMaxPool3d``.

    ``output_size`` is an int or ``(OD, OH, OW)`` (``None`` keeps that
    size); :attr:`indices` are flat ``id * H * W + ih * W + iw``.  Compiled
    (the 3-D max kernel of ``_ext/_pool3d.pyx``, each window a range per axis).
    """

    spatial_dims = 3


class AdaptiveMeanPool1d(AdaptiveMeanPool2d):
    """Adaptive mean pooling over ``(N, C, L)``, as ``torch.nn.AdaptiveAvgPool1d``
    (``AdaptiveAvgPool1d``).  Compiled (the 2-D kernels on ``(1, L)``)."""

    spatial_dims = 1


class AdaptiveMeanPool3d(AdaptiveMeanPool2d):
    """Adaptive mean pooling over ``(N, C, D, H, W)``, as ``torch.nn.AdaptiveAvgPool3d``
    (``AdaptiveAvgPool3d``).  Each window's sum is divided by its depth, height
    and width (the kernel divides by their product, PyTorch in turn: equal to
    rounding).  Compiled (the 3-D mean kernel of ``_ext/_pool3d.pyx``)."""

    spatial_dims = 3


AdaptiveAvgPool1d = AdaptiveMeanPool1d
AdaptiveAvgPool3d = AdaptiveMeanPool3d
