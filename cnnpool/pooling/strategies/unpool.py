"""Max unpooling: put each pooled value back where its window's maximum was."""

from __future__ import annotations

import numbers

import numpy as np

from ... import _checks
from ...layer import BackwardBeforeForwardError, Layer


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

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kernel_size = _checks.pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _checks.pair(stride, "stride")
        self.padding = _checks.pair(padding, "padding", minimum=0)
        self._saved = None

    def __call__(self, y, indices, output_size=None):
        return self.forward(y, indices, output_size)

    def output_size_for(self, pooled_size, output_size=None):
        """``(H, W)`` of the output for pooled spatial size ``(OH, OW)``: PyTorch's rule."""
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
            if len(size) == 4:
                size = size[2:]
            if len(size) != 2:
                raise ValueError(
                    f"output_size must hold 2 (H, W) or 4 (N, C, H, W) elements, "
                    f"got {len(size)}: {output_size!r}"
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
        """Scatter ``y`` (N, C, OH, OW) to the positions ``indices`` of a zero (N, C, H, W)."""
        y = _checks.as_float_array(y, "y", 4)
        if not isinstance(indices, np.ndarray) or indices.dtype.kind not in "iu":
            raise TypeError(
                f"indices must be an integer NumPy array (MaxPool2d.indices), got "
                f"{getattr(indices, 'dtype', type(indices).__name__)}"
            )
        if indices.shape != y.shape:
            raise ValueError(f"indices must have the shape of y {y.shape}, got {indices.shape}")
        h, w = self.output_size_for(y.shape[2:], output_size)
        n, c = y.shape[:2]
        planes = n * c
        flat = np.array(indices, dtype=np.int64).reshape(planes, y.shape[2] * y.shape[3])
        if flat.size and h * w:  # an empty output is written nowhere (PyTorch: no check)
            low, high = flat.min(), flat.max()
            if low < 0 or high >= h * w:
                bad = low if low < 0 else high
                raise ValueError(
                    f"indices hold {bad}, outside the output plane of {h} x {w} = "
                    f"{h * w} elements; were they made by a MaxPool2d with this "
                    f"kernel_size/stride/padding and an input of size ({h}, {w})? "
                    f"Pass output_size=x.shape if not."
                )
        flat.flags.writeable = False
        out = np.zeros((planes, h * w), dtype=y.dtype)
        if h * w:
            np.put_along_axis(out, flat, y.reshape(flat.shape), axis=1)
        self._saved = (y.shape, y.dtype, (n, c, h, w), flat)
        return out.reshape(n, c, h, w)

    def backward(self, grad_output):
        """Gradient with respect to ``y``: ``grad_output`` read at the indices."""
        if self._saved is None:
            raise BackwardBeforeForwardError("MaxUnpool2d.backward called before forward")
        y_shape, dtype, out_shape, flat = self._saved
        grad_output = _checks.grad_like(grad_output, out_shape, dtype)
        if out_shape[2] * out_shape[3] == 0:  # y reached no output element
            return np.zeros(y_shape, dtype=dtype)
        grad = grad_output.reshape(flat.shape[0], out_shape[2] * out_shape[3])
        return np.take_along_axis(grad, flat, axis=1).reshape(y_shape)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def get_config(self):
        """Constructor arguments, for saved models."""
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
        }
