"""Max unpooling: put each pooled value back where its window's maximum was."""

from __future__ import annotations

import math
import numbers

import numpy as np

from ... import _checks
from ...layer import BackwardBeforeForwardError, Layer
from ..geometry import shape_name, spatial_tuple


class MaxUnpool2d(Layer):
    """The partial inverse of :class:`MaxPool2d`, as ``torch.nn.MaxUnpool2d``.

    Parameters
    ----------
    kernel_size, stride, padding
        Those of the :class:`MaxPool2d` being inverted (``stride`` defaults
        to ``kernel_size``).  They only set the default output size.

    Notes
    -----
    ``forward(y, indices, output_size=None)`` returns zeros of shape
    ``(N, C, H, W)`` with ``out[n, c].flat[indices[n, c, i, j]] = y[n, c, i, j]``;
    ``indices`` are :attr:`MaxPool2d.indices` (flat ``ih * W + iw``).
    Where two windows share a winner (overlapping pooling) both write the
    same value; should repeated indices carry different values, the later
    (row-major) one is kept, and backward still gives each of them the
    gradient at that position -- both as in PyTorch.

    The output size is PyTorch's: by default
    ``H = (OH - 1) * stride - 2 * padding + kernel``; an explicit
    ``output_size`` (``(H, W)``, or ``(N, C, H, W)`` of which the last two
    count) must lie strictly within ``stride`` of that default on each
    axis, which is exactly the sizes a :class:`MaxPool2d` with this
    configuration maps to ``(OH, OW)`` -- pass ``x.shape`` to invert a
    pooling whose input size the default does not recover.

    Every index is checked to lie in ``[0, H * W)`` before anything is
    written (unless the output is empty, when nothing is written at all).
    Backward returns ``grad_output`` read at the indices: the gradient with
    respect to ``y`` (the indices are not differentiable).

    Examples
    --------
    >>> import numpy as np, cnnpool as cp
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> pool, unpool = cp.MaxPool2d(2), cp.MaxUnpool2d(2)
    >>> unpool(pool(x), pool.indices)[0, 0]
    array([[ 0.,  0.,  0.,  0.],
           [ 0.,  5.,  0.,  7.],
           [ 0.,  0.,  0.,  0.],
           [ 0., 13.,  0., 15.]])
    """

    #: Number of spatial axes (MaxUnpool1d: 1, MaxUnpool3d: 3).
    spatial_dims = 2

    def __init__(self, kernel_size, stride=None, padding=0):
        n = self.spatial_dims
        self.kernel_size = spatial_tuple(kernel_size, "kernel_size", n)
        self.stride = self.kernel_size if stride is None else spatial_tuple(stride, "stride", n)
        self.padding = spatial_tuple(padding, "padding", n, minimum=0)
        self._saved = None

    def __call__(self, y, indices, output_size=None):
        return self.forward(y, indices, output_size)

    def output_size_for(self, pooled_size, output_size=None):
        """``(H, W)`` of the output for pooled spatial size ``(OH, OW)``: PyTorch's rule
        (one size per spatial axis in any rank)."""
        n = self.spatial_dims
        default = tuple(
            (n - 1) * s + k - 2 * p
            for n, k, s, p in zip(pooled_size, self.kernel_size, self.stride, self.padding)
        )
        if output_size is None:
            size = default
        else:
            if not isinstance(output_size, (tuple, list)) or not all(
                isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in output_size
            ):
                raise TypeError(f"output_size must be a sequence of ints, got {output_size!r}")
            size = tuple(int(v) for v in output_size)
            if len(size) == n + 2:  # a whole batched shape, as PyTorch takes it
                size = size[2:]
            if len(size) != n:
                raise ValueError(
                    f"output_size must hold {n} {shape_name(n)} or {n + 2} (N, C, ...) "
                    f"elements, got {len(size)}: {output_size!r}"
                )
            for d, (want, dflt, s) in enumerate(zip(size, default, self.stride)):
                if not dflt - s < want < dflt + s:
                    raise ValueError(
                        f"invalid output_size {tuple(output_size)}: dimension {d} must be "
                        f"strictly between {dflt - s} and {dflt + s} (default {dflt} for "
                        f"pooled size {tuple(pooled_size)})"
                    )
        if min(size) < 0:
            raise ValueError(f"output size must be non-negative, got {size}")
        return size

    def forward(self, y, indices, output_size=None):
        """Scatter ``y`` (N, C, OH, OW) to the positions ``indices`` of a zero (N, C, H, W).

        Any rank (``(N, C, *pooled)`` to ``(N, C, *spatial)``); an unbatched
        ``y`` (and ``indices``) ``(C, *pooled)`` gives ``(C, *spatial)``.
        """
        nd = self.spatial_dims
        y = _checks.as_float_array(y, "y")
        if y.ndim not in (nd + 1, nd + 2):
            raise ValueError(
                f"y must be {nd + 2}-D (N, C, *pooled) or {nd + 1}-D (C, *pooled) for "
                f"{type(self).__name__}, got {y.ndim}-D array of shape {y.shape}"
            )
        if not isinstance(indices, np.ndarray) or indices.dtype.kind not in "iu":
            raise TypeError(
                f"indices must be an integer NumPy array (MaxPool{nd}d.indices), got "
                f"{getattr(indices, 'dtype', type(indices).__name__)}"
            )
        if indices.shape != y.shape:
            raise ValueError(f"indices must have the shape of y {y.shape}, got {indices.shape}")
        unbatched = y.ndim == nd + 1
        if unbatched:
            y, indices = y[None], indices[None]
        size = self.output_size_for(y.shape[2:], output_size)
        plane = math.prod(size)
        n, c = y.shape[:2]
        planes = n * c
        flat = np.array(indices, dtype=np.int64).reshape(planes, math.prod(y.shape[2:]))
        if flat.size and plane:  # an empty output is written nowhere (PyTorch: no check)
            low, high = flat.min(), flat.max()
            if low < 0 or high >= plane:
                bad = low if low < 0 else high
                raise ValueError(
                    f"indices hold {bad}, outside the output plane of "
                    f"{' x '.join(map(str, size))} = {plane} elements; were they made by a "
                    f"MaxPool{nd}d with this kernel_size/stride/padding and an input of "
                    f"size {size}? Pass output_size=x.shape if not."
                )
        flat.flags.writeable = False
        out = np.zeros((planes, plane), dtype=y.dtype)
        if plane:
            np.put_along_axis(out, flat, y.reshape(flat.shape), axis=1)
        self._saved = (y.shape, y.dtype, (n, c) + size, flat, unbatched)
        out = out.reshape((n, c) + size)
        return out[0] if unbatched else out

    def backward(self, grad_output):
        """Gradient with respect to ``y``: ``grad_output`` read at the indices."""
        if self._saved is None:
            raise BackwardBeforeForwardError(
                f"{type(self).__name__}.backward called before forward"
            )
        y_shape, dtype, out_shape, flat, unbatched = self._saved
        if unbatched:
            grad_output = _checks.grad_like(grad_output, out_shape[1:], dtype)[None]
        else:
            grad_output = _checks.grad_like(grad_output, out_shape, dtype)
        plane = math.prod(out_shape[2:])
        if plane == 0:  # y reached no output element
            grad = np.zeros(y_shape, dtype=dtype)
        else:
            grad = grad_output.reshape(flat.shape[0], plane)
            grad = np.take_along_axis(grad, flat, axis=1).reshape(y_shape)
        return grad[0] if unbatched else grad

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def get_config(self):
        """Constructor arguments, for saved models."""
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
        }


class MaxUnpool1d(MaxUnpool2d):
    """The partial inverse of :class:`MaxPool1d`, as ``torch.nn.MaxUnpool1d``.

    ``forward(y, indices, output_size=None)`` on ``(N, C, OL)`` (or
    unbatched ``(C, OL)``) with :attr:`MaxPool1d.indices`; otherwise as
    :class:`MaxUnpool2d`.
    """

    spatial_dims = 1


class MaxUnpool3d(MaxUnpool2d):
    """The partial inverse of :class:`MaxPool3d`, as ``torch.nn.MaxUnpool3d``.

    ``forward(y, indices, output_size=None)`` on ``(N, C, OD, OH, OW)`` (or
    unbatched) with :attr:`MaxPool3d.indices` (flat ``id * H * W + ih * W
    + iw``); otherwise as :class:`MaxUnpool2d`.
    """

    spatial_dims = 3
