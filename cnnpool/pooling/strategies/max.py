"""Max pooling: the window's largest element wins, and takes the whole gradient."""

from __future__ import annotations

import weakref

import numpy as np

from ..._parallel import threads_for
from .._ext import _kernels, _pool3d
from ..base import Pool2d

_U8, _I64 = np.dtype(np.uint8), np.dtype(np.int64)


def _winner(windows, inside):
    """Tap number of each window's winner, shape ``(N, C, OH, OW)``.

    PyTorch's rule: the first of equal maxima, but a NaN beats everything
    and the last of several NaNs wins; padded taps never win, and a window
    of -inf's is won by its first input tap.
    """
    masked = np.where(inside, windows, -np.inf)
    best = masked.max(axis=-1, keepdims=True)
    first_max = np.argmax((masked == best) & inside, axis=-1)
    nan = np.isnan(windows) & inside
    last_nan = nan.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
    return np.where(nan.any(axis=-1), last_nan, first_max)


class MaxReduction:
    """The max strategy on any window geometry: its reduction, route and indices.

    Mixed in before a :class:`Pool2d` subclass (``MaxPool2d``,
    ``AdaptiveMaxPool2d``).  ``pool``/``route`` are the NumPy reference that
    the NumPy tier runs; a ``forward_kernel`` must save the winners' flat
    indices, which :attr:`indices` then reports, unless the class sets
    ``_saves_taps``: then it saves each winner's tap number in its window,
    turned into flat indices when asked for.
    """

    _saves_taps = False

    pad_value = -np.inf

    def pool(self, windows):
        winner = _winner(windows, self.geometry.inside)
        return np.take_along_axis(windows, winner[..., None], axis=-1)[..., 0]

    def route(self, windows, pooled):
        winner = _winner(windows, self.geometry.inside)
        onehot = np.zeros(windows.shape, dtype=windows.dtype)
        np.put_along_axis(onehot, winner[..., None], 1, axis=-1)
        return onehot

    @property
    def indices(self):
        """Flat index ``ih * W + iw`` of each window's winner, (N, C, OH, OW) int64.

        Flat within the spatial plane in any rank (``il``, ``id * H * W +
        ih * W + iw``), as PyTorch's; unbatched after an unbatched input.
        """
        state = self._state
        if state is None:
            return None
        indices = self._batched_indices(state)
        return indices[0] if state.unbatched else indices

    def _kernel_saves_taps(self, state):
        """Whether this kernel-tier forward saved tap numbers (else flat indices)."""
        return self._saves_taps

    def _batched_indices(self, state):
        kernel = state.tier == "kernel"
        if kernel and not self._kernel_saves_taps(state):
            return state.saved
        # Computed from the tap numbers once per forward: cached with a weak
        # reference to the array it came from (a new forward replaces it).
        source = state.saved if kernel else state.saved.windows
        cached = self._indices_cache
        if cached is not None and cached[0]() is source:
            return cached[1]
        geom = state.geometry
        if kernel:
            taps = source.reshape(state.out_shape)
        else:
            taps = _winner(source, geom.inside)
        indices = geom.flat_index(taps)
        self._indices_cache = (weakref.ref(source), indices)
        return indices

    _indices_cache = None


class MaxPool2d(MaxReduction, Pool2d, name="max"):
    """2-D max pooling, as ``torch.nn.MaxPool2d``.

    Parameters
    ----------
    kernel_size, stride, padding, dilation, ceil_mode
        See :class:`Pool2d`.

    Attributes
    ----------
    indices : ndarray of int64, shape (N, C, OH, OW)
        After a forward pass: the flat index ``ih * W + iw`` of each
        window's winner within its (H, W) plane, as PyTorch's
        ``return_indices=True``.  Read-only.

    Notes
    -----
    Backward routes each output's gradient to its window's winner only;
    with overlapping windows (stride < kernel) an element that wins several
    windows receives the sum.  Ties go to the first maximum in row-major
    window order; a NaN wins its window (the last NaN if several).

    Examples
    --------
    >>> import numpy as np, cnnpool as cp
    >>> x = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    >>> cp.MaxPool2d(3, stride=1)(x)[0, 0]
    array([[11., 12.],
           [15., 16.]])
    """

    _saves_taps = True
    # 2-D: _kernels; 1-D and 3-D: _pool3d (which saves flat indices).
    kernel_ranks = (1, 2, 3)

    def _kernel_saves_taps(self, state):
        return len(state.x_shape) == 4

    # The kernel tier.  In 2-D it saves the winners' tap numbers, not
    # their flat indices: uint8 for windows of up to 255 taps, so that the
    # forward writes and the backward reads a byte per window instead of 8
    # (on W5, 0.5 MB instead of 4 MB each way).  ``indices`` turns them
    # into flat indices only when asked.  1-D and 3-D save the int64 flat
    # indices that the _pool3d kernels write.
    def forward_kernel(self, x, geom):
        if x.ndim != 4:
            return self._forward_nd(x, geom)
        n, c, h, w = x.shape
        oh, ow = geom.out_size
        shape = (n * c, oh, ow)
        out = self._outputs.empty("out", shape, x.dtype)
        taps = np.empty(shape, _U8 if geom.window_size <= 255 else _I64)
        _kernels.max_forward(
            x.reshape(n * c, h, w),
            out,
            taps,
            *geom.kernel_args,
            threads_for(n * c, x.size + out.size),
        )
        taps.setflags(write=False)  # backward trusts these: keep them ours
        return out.reshape(n, c, oh, ow), taps

    def backward_kernel(self, grad_output, state):
        if len(state.x_shape) != 4:
            return self._backward_nd(grad_output, state)
        taps, geom = state.saved, state.geometry
        n, c, h, w = state.x_shape
        # Not zeroed: the kernel writes every element (zeroing per plane in
        # cache only where windows overlap).
        grad_x = self._outputs.empty("grad_x", (n * c, h, w), grad_output.dtype)
        _kernels.max_backward(
            grad_output.reshape(taps.shape),
            taps,
            grad_x,
            *geom.kernel_args,
            threads_for(n * c, grad_x.size + grad_output.size),
        )
        return grad_x.reshape(state.x_shape)

    def _forward_nd(self, x, geom):
        n, c = x.shape[:2]
        planes = n * c
        out = self._outputs.empty("out", (planes,) + geom.out_size, x.dtype)
        argmax = np.empty((planes,) + geom.out_size, np.int64)
        threads = threads_for(planes, x.size + out.size)
        if geom.ndim == 1:
            _pool3d.max_forward_1d(
                x.reshape(planes, geom.in_size[0]),
                geom.axis_ranges[0],
                geom.dilation[0],
                threads,
                out=out,
                argmax=argmax,
            )
        else:
            _pool3d.max_forward_3d(
                x.reshape((planes,) + geom.in_size),
                *geom.axis_ranges,
                geom.dilation,
                threads,
                out=out,
                argmax=argmax,
            )
        argmax = argmax.reshape((n, c) + geom.out_size)
        argmax.setflags(write=False)  # backward trusts these, and indices reports them
        return out.reshape(argmax.shape), argmax

    def _backward_nd(self, grad_output, state):
        argmax, geom = state.saved, state.geometry
        planes = state.x_shape[0] * state.x_shape[1]
        grad_x = self._outputs.empty("grad_x", (planes,) + geom.in_size, grad_output.dtype)
        grad = grad_output.reshape((planes,) + geom.out_size)
        flat = argmax.reshape(grad.shape)
        threads = threads_for(planes, grad_x.size + grad_output.size)
        if geom.ndim == 1:
            _pool3d.max_backward_1d(grad, flat, geom.in_size[0], threads, out=grad_x)
        else:
            _pool3d.max_backward_3d(grad, flat, geom.in_size, threads, out=grad_x)
        return grad_x.reshape(state.x_shape)


class MaxPool1d(MaxPool2d):
    """1-D max pooling, as ``torch.nn.MaxPool1d``: ``(N, C, L)`` or ``(C, L)``.

    :class:`MaxPool2d` over one spatial axis (``MaxPool2d.for_dims(1)``):
    the same arguments as ints or 1-tuples (``padding`` also ``(before,
    after)`` or a string mode), the same rules; :attr:`indices` are
    positions ``il`` along the axis.  Compiled (1-D kernels of
    ``_ext/_pool3d.pyx``).

    Examples
    --------
    >>> import numpy as np, cnnpool as cp
    >>> cp.MaxPool1d(2)(np.array([[[1.0, 3.0, 2.0, 0.0]]]))
    array([[[3., 2.]]])
    """

    spatial_dims = 1


class MaxPool3d(MaxPool2d):
    """3-D max pooling, as ``torch.nn.MaxPool3d``: ``(N, C, D, H, W)`` or ``(C, D, H, W)``.

    :class:`MaxPool2d` over three spatial axes (``MaxPool2d.for_dims(3)``):
    kernel, stride, padding and dilation as ints or triples (``padding``
    also six ints ``(before, after)`` per axis, or a string mode);
    :attr:`indices` are flat ``id * H * W + ih * W + iw``, as PyTorch's.
    """

    spatial_dims = 3
