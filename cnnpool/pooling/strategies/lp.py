"""Lp (power-average) pooling, as ``torch.nn.LPPool2d``."""

from __future__ import annotations

import inspect
import math
import numbers

import numpy as np

from ..._parallel import threads_for
from ..base import Pool2d
from ..tiers.compiled import kernel_backward, kernel_forward
from ._lp import LpWindow, lp_backward, lp_forward
from .max import MaxPool2d, _winner


class LpPool2d(Pool2d, name="lp", defaults={"norm_type": 2}):
    """2-D power-average pooling, ``torch.nn.LPPool2d`` to float tolerance.

    For each window, with ``p = norm_type``, ``K = kh * kw`` and ``n`` the
    number of the window's taps that fall inside the input::

        y = (K / n * sum(x_i ** p)) ** (1 / p)

    which is ``(sum x_i ** p) ** (1/p)`` for every full window.  The odd
    ``K / n`` factor on the partial windows that only ``ceil_mode`` creates
    is PyTorch's (it computes ``avg_pool2d(x ** p) * K``) and is kept so the
    numbers agree.  ``norm_type = inf`` is the max of ``|x|`` and ``-inf``
    the min of ``|x|`` (PyTorch routes both to ``max_pool2d``).

    Parameters
    ----------
    norm_type : float
        ``p``, any non-zero number (or ``±inf``).  ``p = 1`` is sum pooling,
        ``p = 2`` the Euclidean norm of each window.
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Default: ``kernel_size``.
    ceil_mode : bool

    Notes
    -----
    No padding and no dilation, as in PyTorch.  Everything below follows
    PyTorch's formula operation by operation:

    * **Zero sum.**  Where ``sum(x_i ** p)`` is zero the output is 0 (for
      ``p > 0``) and the gradient is set to **zero**, not the infinite slope
      of ``s ** (1/p)`` at 0 (PyTorch's ``relu(abs(.))`` stage has zero
      slope there).  With ``p < 1`` a zero *input* element still gets
      ``0 * x ** (p - 1) = 0 * inf = NaN``, as in PyTorch.
    * **Negative inputs.**  ``x ** p`` is taken literally: with an even
      integer ``p`` signs vanish (``p = 2`` is a true norm); with an odd
      integer ``p`` negative terms subtract, and a window whose sum is
      negative gives ``NaN`` (``s ** (1/p)`` of a negative ``s``; ``p = 1``
      is the exception, a plain signed sum); with a fractional ``p`` any
      negative input makes its windows ``NaN``.  Apply ``abs`` first (or
      pool after a ReLU) for a norm of signed values.
    * The gradient is ``dy/dx_i = K/n * s ** (1/p - 1) * x_i ** (p - 1)``
      with ``s = K/n * sum(x ** p)``, accumulated over overlapping windows.

    The compiled path, for integer ``p`` (and ``±inf``), is the arithmetic
    of :class:`~cnnpool.pooling.strategies._lp.LpWindow`, a ``WindowStrategy``
    (the library's own example of the ``_strategy.pxd`` extension point,
    which ``CompiledPool2d(LpWindow(p), ...)`` runs through the window
    driver), here in loops that read the input planes directly (no tap
    table: LpPool2d has no padding or dilation; ``LpPool1d`` and
    ``LpPool3d`` run the driver); it computes in float64 and rounds once,
    the driver's numbers exactly.  A fractional ``p`` runs the
    NumPy ``pool``/``route`` below, in the input's dtype: per tap it needs
    ``pow``, which NumPy vectorises and the per-window compiled loop cannot,
    so NumPy is faster there.
    ``use_fast_path = False`` runs the NumPy strategy for every ``p``.

    Examples
    --------
    >>> import numpy as np, cnnpool as cp
    >>> x = np.array([[[[3.0, 4.0], [0.0, 0.0]]]])
    >>> cp.LpPool2d(2, 2)(x)[0, 0]
    array([[5.]])
    """

    pad_value = 0.0
    # The window driver and the max of |x| run in any rank.
    kernel_ranks = (1, 2, 3)

    def __init__(self, norm_type, kernel_size, stride=None, ceil_mode=False, **unsupported):
        for name in ("padding", "dilation"):
            if name in unsupported:
                raise TypeError(
                    f"{type(self).__name__} takes no {name} (got {name}="
                    f"{unsupported[name]!r}): PyTorch's LPPool{self.spatial_dims}d has "
                    f"none, and cnnpool follows it. Pad the input yourself, or use "
                    f"CompiledPool2d(LpWindow(norm_type), kernel_size, stride, padding, "
                    f"dilation) (cnnpool.pooling.strategies._lp.LpWindow): a sum of "
                    f"powers over each window's taps inside the input, as zero padding "
                    f"would give for p > 0"
                )
        if unsupported:
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword arguments "
                f"{sorted(unsupported)}; it takes norm_type, kernel_size, stride, ceil_mode"
            )
        if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real):
            raise TypeError(f"norm_type must be a real number, got {norm_type!r}")
        norm_type = float(norm_type)
        if norm_type == 0 or math.isnan(norm_type):
            raise ValueError(f"norm_type must be non-zero and not NaN, got {norm_type}")
        super().__init__(kernel_size, stride, 0, 1, ceil_mode)
        self.norm_type = norm_type
        if math.isinf(norm_type):
            # PyTorch: max_pool2d(|x|), or -max_pool2d(-|x|) for -inf.
            self._sign = 1.0 if norm_type > 0 else -1.0
            self._max = MaxPool2d.for_dims(self.spatial_dims)(kernel_size, stride, 0, 1, ceil_mode)
            self._window = None
        else:
            self._max = None
            self._window = LpWindow(norm_type)
            if norm_type != int(norm_type) or abs(norm_type) > 16:
                # Fractional p: the compiled window calls double pow() three times
                # per tap, slower than NumPy's vectorised power here (see
                # benchmarks/strategy_cost.py), so the NumPy strategy runs.
                self.has_kernel = False

    # ------------------------------------------------------------ NumPy strategy
    def _terms(self, windows):
        """``(x ** p summed over the window's input taps, K / n)`` in the windows' dtype."""
        geom = self.geometry
        with np.errstate(all="ignore"):
            powered = np.where(geom.inside, windows**self.norm_type, 0)
        count = geom.counts(True).astype(windows.dtype)  # no padding: taps in the input
        return powered.sum(axis=-1) / count, windows.dtype.type(geom.window_size)

    def pool(self, windows):
        if self._max is not None:
            return self._pool_inf(windows)
        avg, k = self._terms(windows)
        with np.errstate(all="ignore"):
            return (avg * k) ** (1.0 / self.norm_type)

    def route(self, windows, pooled):
        if self._max is not None:
            return self._route_inf(windows)
        p = self.norm_type
        avg, k = self._terms(windows)
        count = self.geometry.counts(True).astype(windows.dtype)
        with np.errstate(all="ignore"):
            coef = np.where(avg != 0, k / count * (avg * k) ** (1.0 / p - 1.0), 0)
            local = coef[..., None].astype(windows.dtype) * windows ** (p - 1.0)
        return np.where(self.geometry.inside, local, 0).astype(windows.dtype, copy=False)

    def _inf_winner(self, windows):
        return _winner(self._sign * np.abs(windows), self.geometry.inside)

    def _pool_inf(self, windows):
        winner = self._inf_winner(windows)
        return np.take_along_axis(np.abs(windows), winner[..., None], axis=-1)[..., 0]

    def _route_inf(self, windows):
        onehot = np.zeros(windows.shape, dtype=windows.dtype)
        np.put_along_axis(onehot, self._inf_winner(windows)[..., None], 1, axis=-1)
        return onehot * np.sign(windows)

    # --------------------------------------------------------------- kernel tier
    def forward_kernel(self, x, geom):
        if self._max is not None:
            y = self._max.forward(self._sign * np.abs(x))
            return self._sign * y, np.sign(x)
        if self.spatial_dims != 2:  # LpPool1d, LpPool3d: the window driver
            return kernel_forward(self, self._window, x, geom)
        n, c, h, w = x.shape
        oh, ow = geom.out_size
        # Backward reads a private copy of x (the caller may edit x), which the
        # forward pass writes plane by plane; both in buffers reused from one
        # call to the next once the last forward's record lets go.
        self._state = None
        buffers = self._outputs
        copy = buffers.empty("planes", (n * c, h, w), x.dtype)
        out = buffers.empty("out", (n * c, oh, ow), x.dtype)
        threads = threads_for(n * c, x.size + out.size * geom.window_size)
        lp_forward(
            self._window,
            np.ascontiguousarray(x).reshape(n * c, h, w),
            out,
            copy,
            *self.kernel_size,
            *self.stride,
            threads,
        )
        copy.flags.writeable = False
        return out.reshape(n, c, oh, ow), copy

    def backward_kernel(self, grad_output, state):
        if self._max is not None:
            return self._max.backward(grad_output) * state.saved
        if self.spatial_dims != 2:
            return kernel_backward(self, self._window, grad_output, state)
        copy = state.saved
        grad = self._outputs.empty("grad_x", copy.shape, copy.dtype)
        g = np.ascontiguousarray(grad_output, dtype=copy.dtype).reshape(
            copy.shape[0], *state.out_shape[2:]
        )
        threads = threads_for(copy.shape[0], copy.size + g.size * state.geometry.window_size)
        lp_backward(self._window, copy, g, grad, *self.kernel_size, *self.stride, threads)
        return grad.reshape(state.x_shape)

    # ----------------------------------------------------------------- display
    def extra_repr(self):
        return (
            f"norm_type={self.norm_type:g}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, ceil_mode={self.ceil_mode}"
        )

    def get_config(self):
        """Constructor arguments, for saved models."""
        return {
            "norm_type": self.norm_type,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "ceil_mode": self.ceil_mode,
        }


class LpPool1d(LpPool2d):
    """1-D power-average pooling, ``torch.nn.LPPool1d``: ``(N, C, L)`` or ``(C, L)``.

    :class:`LpPool2d` over one spatial axis (``LpPool2d.for_dims(1)``), the
    same arguments (``norm_type, kernel_size, stride=None,
    ceil_mode=False``; no padding, as PyTorch), compiled the same way.
    """

    spatial_dims = 1


class LpPool3d(LpPool2d):
    """3-D power-average pooling, ``torch.nn.LPPool3d``: ``(N, C, D, H, W)``.

    :class:`LpPool2d` over three spatial axes (``LpPool2d.for_dims(3)``), the
    same arguments and rules; unbatched ``(C, D, H, W)`` works too.
    """

    spatial_dims = 3


# The constructor's catch-all only turns padding=/dilation= into a clear error;
# make_pool and cnnpool-compare read PyTorch's argument list from the signature.
def _pytorch_arguments(self, norm_type, kernel_size, stride=None, ceil_mode=False):
    """PyTorch's ``LPPool2d`` arguments: what introspection of ``__init__`` shows."""


LpPool2d.__init__.__signature__ = inspect.signature(_pytorch_arguments)  # type: ignore[attr-defined]
