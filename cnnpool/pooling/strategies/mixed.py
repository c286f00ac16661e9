"""Mixed and gated max-average pooling (Lee, Gallagher & Tu, 2016): strategies with parameters.

Both blend the max and the mean of each window, ``y = a * max + (1 - a) *
mean``, and learn how: :class:`MixedPool2d` learns the blend ``a`` itself,
:class:`GatedPool2d` learns a linear function of the window whose sigmoid
is ``a``.  They are the library's examples of a strategy that owns
:class:`~cnnpool.layer.Parameter` s: ``pool`` and ``route`` as for any
strategy, plus the ``param_grads`` hook of :class:`Pool2d`.

C.-Y. Lee, P. W. Gallagher and Z. Tu, "Generalizing Pooling Functions in
Convolutional Neural Networks: Mixed, Gated, and Tree", AISTATS 2016.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from ... import _checks
from ..._parallel import threads_for
from ...layer import Parameter
from ..base import Pool2d
from . import _mixed
from .max import MaxPool2d, _winner
from .mean import MeanPool2d
from .stochastic import _saved_slot


class MixedSaved(NamedTuple):
    """What :class:`MixedPool2d`'s kernel tier keeps for its backward.

    ``taps``: what MaxPool2d's ``forward_kernel`` saved (the winners);
    ``mx`` and ``mean``: each window's max and mean, (N*C, OH, OW);
    ``alpha``: the blend of each of the N*C planes in this forward.  All in
    the input's dtype and read-only.
    """

    taps: np.ndarray
    mx: np.ndarray
    mean: np.ndarray
    alpha: np.ndarray


class GatedSaved(NamedTuple):
    """What :class:`GatedPool2d`'s kernel tier keeps for its backward.

    ``x``: a copy of the input as (N*C, H, W) planes (the weight gradient
    reads every tap); ``weight``: the gate's weight in this forward, in the
    input's dtype; ``taps``, ``mx`` and ``mean`` as in :class:`MixedSaved`;
    ``gate``: each window's ``a``, float64, (N*C, OH, OW).  All read-only.
    """

    x: np.ndarray
    weight: np.ndarray
    taps: np.ndarray
    mx: np.ndarray
    mean: np.ndarray
    gate: np.ndarray


def _frozen(*arrays):
    for a in arrays:
        a.flags.writeable = False  # backward trusts these: keep them ours


class _Blend(Pool2d):
    """What the two share: the max and the mean of each window, with their routes.

    The max is :class:`MaxPool2d`'s (padding never wins, PyTorch's tie and
    NaN rules) and the mean is :class:`MeanPool2d`'s (``count_include_pad``
    as given), so ``a = 1`` and ``a = 0`` are exactly those two layers.
    """

    pad_value = 0.0  # adds nothing to the mean; the max ignores padded taps

    def __init__(self, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad):
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        n = self.spatial_dims  # the same rank as this layer (for_dims)
        self._max = MaxPool2d.for_dims(n)(kernel_size, stride, padding, dilation, ceil_mode)
        self._mean = MeanPool2d.for_dims(n)(
            kernel_size, stride, padding, ceil_mode, count_include_pad, dilation=dilation
        )
        self.count_include_pad = self._mean.count_include_pad

    def _max_mean(self, windows):
        """``(max, mean, winner, 1 / divisor)`` of every window, in the windows' dtype."""
        geom = self.geometry
        winner = _winner(windows, geom.inside)
        mx = np.take_along_axis(windows, winner[..., None], axis=-1)[..., 0]
        divisor = self._mean.divisor(geom)
        mean = windows.sum(axis=-1) / divisor.astype(windows.dtype)
        return mx, mean, winner, (1.0 / divisor).astype(windows.dtype)

    def _max_mean_kernel(self, x, geom):
        """Max (with what its backward needs) and mean of every window, as
        (N*C, OH, OW) planes, from MaxPool2d's and MeanPool2d's kernel tier."""
        n, c = x.shape[:2]
        planes = (n * c,) + geom.out_size
        mx, taps = self._max.forward_kernel(x, geom)
        mean, _ = self._mean.forward_kernel(x, geom)
        return taps, mx.reshape(planes), mean.reshape(planes)

    def _max_mean_backward(self, to_max, to_mean, state, taps):
        """``dx`` of the max fed ``to_max`` plus that of the mean fed ``to_mean``."""
        sub = state._replace(saved=taps)
        grad_x = self._max.backward_kernel(to_max.reshape(state.out_shape), sub)
        sub = state._replace(saved=None)
        grad_x += self._mean.backward_kernel(to_mean.reshape(state.out_shape), sub)
        return grad_x

    @staticmethod
    def _onehot(windows, winner):
        onehot = np.zeros(windows.shape, dtype=windows.dtype)
        np.put_along_axis(onehot, winner[..., None], 1, axis=-1)
        return onehot

    def extra_repr(self):
        return super().extra_repr() + f", count_include_pad={self.count_include_pad}"

    def get_config(self):
        """Constructor arguments, for saved models (parameters are saved apart)."""
        return {**super().get_config(), "count_include_pad": self.count_include_pad}


class MixedPool2d(_Blend, name="mixed"):
    """Mixed max-average pooling with a learned blend: ``a * max + (1 - a) * mean``.

    Parameters
    ----------
    kernel_size, stride, padding, dilation, ceil_mode
        See :class:`Pool2d`.
    alpha : float
        Initial blend ``a`` (default 0.5).  ``a = 1`` is max pooling,
        ``a = 0`` mean pooling.
    channels : int, optional
        Learn one ``a`` per channel (the paper's "per layer/channel"
        variant) instead of one for the layer; the input must then have
        this many channels.
    count_include_pad : bool
        Divisor rule of the mean, as :class:`MeanPool2d` (default True).
    dtype : float32 or float64
        Of the parameter.

    Attributes
    ----------
    alpha : Parameter, shape (1,) or (channels,)
        The blend.  It is not clipped: an optimizer may take it outside
        ``[0, 1]``, where the layer extrapolates (the paper leaves it free too).

    Notes
    -----
    ``dy/dx`` is ``a`` at each window's winner plus ``(1 - a) / divisor``
    on every input tap; ``dy/da = max - mean``, so ``alpha.grad`` collects
    ``sum(grad_output * (max - mean))`` over the windows (and the batch).
    The compiled path runs the compiled max and mean kernels and blends.
    """

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        dilation=1,
        ceil_mode=False,
        alpha=0.5,
        channels=None,
        count_include_pad=True,
        dtype=np.float32,
    ):
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode, count_include_pad)
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
            raise TypeError(f"alpha must be a real number, got {alpha!r}")
        if not math.isfinite(alpha):
            raise ValueError(f"alpha must be finite, got {alpha!r}")
        dtype = _checks.float_dtype(dtype)
        if channels is None:
            shape = (1,)  # a Parameter is at least 1-D
        else:
            channels = _checks.positive_int(channels, "channels")
            shape = (channels,)
        self.channels = channels
        self.alpha = Parameter(np.full(shape, alpha, dtype=dtype), "alpha")

    def _blend_weight(self, dtype, channels):
        a = self.alpha.data
        if self.channels is None:
            a = a.reshape(())
        else:
            if channels != a.shape[0]:
                raise ValueError(
                    f"{type(self).__name__} has one alpha per channel for "
                    f"{a.shape[0]} channels, got an input with {channels} channels"
                )
            a = a.reshape(-1, 1, 1)
        return a.astype(dtype, copy=False)

    # The strategy in NumPy: pool, route and the parameter hook.
    def pool(self, windows):
        a = self._blend_weight(windows.dtype, windows.shape[1])
        mx, mean, _, _ = self._max_mean(windows)
        return a * mx + (1 - a) * mean

    def route(self, windows, pooled):
        a = self._blend_weight(windows.dtype, windows.shape[1])
        _, _, winner, share = self._max_mean(windows)
        return a[..., None] * self._onehot(windows, winner) + ((1 - a) * share)[..., None]

    def param_grads(self, windows, pooled, grad_output):
        mx, mean, _, _ = self._max_mean(windows)
        return {self.alpha: self._alpha_grad(grad_output, mx, mean)}

    def _alpha_grad(self, grad_output, mx, mean):
        weighted = grad_output.astype(np.float64) * (mx.astype(np.float64) - mean)
        if self.channels is None:
            return weighted.sum().reshape(1)
        return weighted.sum(axis=(0, 2, 3))

    # The kernel tier: MaxPool2d's and MeanPool2d's kernels, blended in one
    # compiled pass (_mixed.pyx); a = 1 and a = 0 are those layers' bits.
    def forward_kernel(self, x, geom):
        n, c, h, w = x.shape
        oh, ow = geom.out_size
        a = self._blend_weight(x.dtype, c).reshape(1, -1)
        alpha = np.ascontiguousarray(np.broadcast_to(a, (n, c))).reshape(n * c)
        taps, mx, mean = self._max_mean_kernel(x, geom)
        out = self._outputs.empty("out", (n * c, oh, ow), x.dtype)
        _mixed.mixed_blend(mx, mean, alpha, out, threads_for(n * c, x.size + out.size))
        _frozen(mx, mean, alpha)
        return out.reshape(n, c, oh, ow), MixedSaved(taps, mx, mean, alpha)

    def backward_kernel(self, grad_output, state):
        saved = state.saved
        grad = grad_output.reshape(saved.mx.shape)
        to_max = self._outputs.empty("to_max", grad.shape, grad.dtype)
        to_mean = self._outputs.empty("to_mean", grad.shape, grad.dtype)
        alpha_grad = np.empty(grad.shape[0])
        threads = threads_for(grad.shape[0], 4 * grad.size)
        _mixed.mixed_split(
            grad, saved.alpha, saved.mx, saved.mean, to_max, to_mean, alpha_grad, threads
        )
        grad_x = self._max_mean_backward(to_max, to_mean, state, saved.taps)
        n, c = state.x_shape[:2]
        per_plane = alpha_grad.reshape(n, c)  # summed in plane order: thread-independent
        total = per_plane.sum(axis=0) if self.channels is not None else per_plane.sum().reshape(1)
        self.alpha.grad += total.astype(self.alpha.grad.dtype)
        return grad_x

    def extra_repr(self):
        text = super().extra_repr()
        return text + (f", channels={self.channels}" if self.channels is not None else "")

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, dtype=str(self.alpha.data.dtype))
        return config


class GatedPool2d(_Blend, name="gated"):
    """Gated max-average pooling: ``a * max + (1 - a) * mean`` with ``a = sigmoid(w . window)``.

    Parameters
    ----------
    kernel_size, stride, padding, dilation, ceil_mode
        See :class:`Pool2d`.
    count_include_pad : bool
        Divisor rule of the mean, as :class:`MeanPool2d` (default True).
    dtype : float32 or float64
        Of the parameter.

    Attributes
    ----------
    weight : Parameter, shape (kh * kw,)
        The gating mask ``w``, one weight per window tap in row-major
        order, shared by every window and channel (the paper's per-layer
        gate).  Starts at zero, i.e. an even blend ``a = 0.5`` everywhere.

    Notes
    -----
    Each window gets its own blend, responding to its content:
    ``a = sigmoid(sum_t w_t x_t)`` over its taps (padded taps hold 0 and
    add nothing).  With ``d = max - mean`` the derivatives are::

        dy/dx_t = a [t wins] + (1 - a) / divisor + d * a (1 - a) * w_t
        dy/dw_t = d * a (1 - a) * x_t

    and ``weight.grad`` collects the second over every window.  The kernel
    tier (``_mixed.pyx``) computes the gate in float64 and rounds each
    output once; the NumPy tier (``use_fast_path = False``), the reference,
    works in the input's dtype: the two agree to rounding.
    """

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        dilation=1,
        ceil_mode=False,
        count_include_pad=True,
        dtype=np.float32,
    ):
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode, count_include_pad)
        dtype = _checks.float_dtype(dtype)
        k = math.prod(self.kernel_size)  # one weight per tap, in any rank
        self.weight = Parameter(np.zeros(k, dtype=dtype), "weight")

    def _gate(self, windows):
        z = windows @ self.weight.data.astype(windows.dtype, copy=False)
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid, without overflow

    def pool(self, windows):
        mx, mean, _, _ = self._max_mean(windows)
        a = self._gate(windows)
        return a * mx + (1 - a) * mean

    def route(self, windows, pooled):
        mx, mean, winner, share = self._max_mean(windows)
        a = self._gate(windows)
        w = self.weight.data.astype(windows.dtype, copy=False)
        slope = (mx - mean) * a * (1 - a)
        return (
            a[..., None] * self._onehot(windows, winner)
            + ((1 - a) * share)[..., None]
            + slope[..., None] * w
        )

    def param_grads(self, windows, pooled, grad_output):
        mx, mean, _, _ = self._max_mean(windows)
        a = self._gate(windows).astype(np.float64)
        slope = grad_output * (mx - mean) * a * (1 - a)
        lead = "nchwzyx"[: slope.ndim]  # "nchw" in 2-D; any rank
        return {self.weight: np.einsum(f"{lead}k,{lead}->k", windows, slope)}

    # The kernel tier: MaxPool2d's and MeanPool2d's kernels, and the gate in
    # compiled loops (_mixed.pyx).
    def forward_kernel(self, x, geom):
        n, c, h, w = x.shape
        oh, ow = geom.out_size
        planes = x.reshape(n * c, h, w)
        weight = np.array(self.weight.data, dtype=x.dtype)  # this forward's, kept
        taps, mx, mean = self._max_mean_kernel(x, geom)
        out = self._outputs.empty("out", (n * c, oh, ow), x.dtype)
        saved = _saved_slot(self)
        gate = saved("gate", (n * c, oh, ow), np.float64)
        _mixed.gated_forward(
            planes,
            weight,
            mx,
            mean,
            out,
            gate,
            *geom.kernel_args,
            threads_for(n * c, x.size + out.size),
        )
        saved_x = saved("x", planes.shape, x.dtype)
        np.copyto(saved_x, planes)  # the caller may edit x before backward
        _frozen(saved_x, weight, mx, mean, gate)
        return out.reshape(n, c, oh, ow), GatedSaved(saved_x, weight, taps, mx, mean, gate)

    def backward_kernel(self, grad_output, state):
        saved, geom = state.saved, state.geometry
        grad = grad_output.reshape(saved.mx.shape)
        to_max = self._outputs.empty("to_max", grad.shape, grad.dtype)
        rest = self._outputs.empty("rest", saved.x.shape, grad.dtype)
        weight_grad = np.empty((grad.shape[0], geom.window_size))
        _mixed.gated_backward(
            saved.x,
            grad,
            saved.weight,
            saved.gate,
            saved.mx,
            saved.mean,
            to_max,
            rest,
            weight_grad,
            self._mean.divisor(geom),
            *geom.kernel_args,
            threads_for(grad.shape[0], rest.size + grad.size),
        )
        sub = state._replace(saved=saved.taps)
        grad_x = self._max.backward_kernel(to_max.reshape(state.out_shape), sub)
        grad_x += rest.reshape(state.x_shape)
        # Per-plane sums added in plane order: the same bits for any thread count.
        self.weight.grad += weight_grad.sum(axis=0).astype(self.weight.grad.dtype)
        return grad_x

    def get_config(self):
        config = super().get_config()
        config.update(dtype=str(self.weight.data.dtype))
        return config
