"""Mean (average) pooling: each window's mean, its gradient spread evenly."""

from __future__ import annotations

import numbers

import numpy as np

from ..._parallel import threads_for
from ...registry import register
from .._ext import _kernels, _pool3d
from ..base import Pool2d


class MeanPool2d(Pool2d, name="mean"):
    """2-D mean pooling, as ``torch.nn.AvgPool2d``.  ``AvgPool2d`` is this class.

    Parameters
    ----------
    kernel_size, stride, padding, ceil_mode
        See :class:`Pool2d`.
    count_include_pad : bool
        Count padded taps in the divisor (default True, as PyTorch).  The
        overhang that only ``ceil_mode`` creates past the right padding is
        never counted, as in PyTorch.
    divisor_override : int, optional
        Divide every window's sum by this instead.
    dilation : int or (int, int)
        Spacing between taps (an extension: PyTorch's AvgPool2d has none).

    Notes
    -----
    Backward gives every input tap of a window ``grad / divisor``, with the
    very same divisor array as the forward, accumulated over overlapping
    windows.
    """

    pad_value = 0.0
    # 2-D: _kernels; 1-D and 3-D: _pool3d.
    kernel_ranks = (1, 2, 3)

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode=False,
        count_include_pad=True,
        divisor_override=None,
        dilation=1,
    ):
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        if not isinstance(count_include_pad, (bool, np.bool_)):
            raise TypeError(f"count_include_pad must be a bool, got {count_include_pad!r}")
        self.count_include_pad = bool(count_include_pad)
        if divisor_override is not None:
            if not isinstance(divisor_override, numbers.Integral) or isinstance(
                divisor_override, bool
            ):
                raise TypeError(f"divisor_override must be an int, got {divisor_override!r}")
            if divisor_override < 1:
                raise ValueError(f"divisor_override must be >= 1, got {divisor_override}")
        self.divisor_override = divisor_override
        self._divisors = {}

    def divisor(self, geom=None):
        """The divisor of every window, shape ``(OH, OW)``, float64.

        One array, used by the forward and the backward alike.
        """
        geom = geom or self.geometry
        d = self._divisors.get(geom.in_size)
        if d is None or d.shape != geom.out_size:
            if self.divisor_override is not None:
                d = np.full(geom.out_size, float(self.divisor_override))
            else:
                d = geom.counts(self.count_include_pad).astype(np.float64)
            d.flags.writeable = False
            if len(self._divisors) > 32:  # bounded, as the geometry cache
                self._divisors.clear()
            self._divisors[geom.in_size] = d
        return d

    # The reference strategy, in NumPy.
    def pool(self, windows):
        return (windows.sum(axis=-1) / self.divisor()).astype(windows.dtype, copy=False)

    def route(self, windows, pooled):
        share = (1.0 / self.divisor()).astype(windows.dtype)[..., None]
        return np.broadcast_to(share, windows.shape)

    # The kernel tier.
    def forward_kernel(self, x, geom):
        if x.ndim != 4:
            return self._forward_nd(x, geom)
        n, c, h, w = x.shape
        oh, ow = geom.out_size
        out = self._outputs.empty("out", (n * c, oh, ow), x.dtype)
        _kernels.mean_forward(
            x.reshape(n * c, h, w),
            out,
            self.divisor(geom),
            *geom.kernel_args,
            threads_for(n * c, x.size + out.size),
        )
        return out.reshape(n, c, oh, ow), None

    def backward_kernel(self, grad_output, state):
        geom = state.geometry
        if len(state.x_shape) != 4:
            return self._backward_nd(grad_output, state)
        n, c, h, w = state.x_shape
        # Not zeroed: the kernel writes every element.
        grad_x = self._outputs.empty("grad_x", (n * c, h, w), grad_output.dtype)
        _kernels.mean_backward(
            grad_output.reshape((n * c,) + geom.out_size),
            grad_x,
            self.divisor(geom),
            *geom.kernel_args,
            threads_for(n * c, grad_x.size + grad_output.size),
        )
        return grad_x.reshape(state.x_shape)

    def _forward_nd(self, x, geom):
        n, c = x.shape[:2]
        planes = n * c
        out = self._outputs.empty("out", (planes,) + geom.out_size, x.dtype)
        threads = threads_for(planes, x.size + out.size)
        divisor = self.divisor(geom)
        if geom.ndim == 1:
            _pool3d.mean_forward_1d(
                x.reshape(planes, geom.in_size[0]),
                geom.axis_ranges[0],
                geom.dilation[0],
                divisor,
                threads,
                out=out,
            )
        else:
            _pool3d.mean_forward_3d(
                x.reshape((planes,) + geom.in_size),
                *geom.axis_ranges,
                geom.dilation,
                divisor,
                threads,
                out=out,
            )
        return out.reshape((n, c) + geom.out_size), None

    def _backward_nd(self, grad_output, state):
        geom = state.geometry
        planes = state.x_shape[0] * state.x_shape[1]
        grad_x = self._outputs.empty("grad_x", (planes,) + geom.in_size, grad_output.dtype)
        grad = grad_output.reshape((planes,) + geom.out_size)
        threads = threads_for(planes, grad_x.size + grad_output.size)
        divisor = self.divisor(geom)
        if geom.ndim == 1:
            _pool3d.mean_backward_1d(
                grad,
                geom.in_size[0],
                geom.axis_ranges[0],
                geom.dilation[0],
                divisor,
                threads,
                out=grad_x,
            )
        else:
            _pool3d.mean_backward_3d(
                grad,
                geom.in_size,
                *geom.axis_ranges,
                geom.dilation,
                divisor,
                threads,
                out=grad_x,
            )
        return grad_x.reshape(state.x_shape)

    def extra_repr(self):
        text = super().extra_repr() + f", count_include_pad={self.count_include_pad}"
        if self.divisor_override is not None:
            text += f", divisor_override={self.divisor_override}"
        return text

    def get_config(self):
        config = super().get_config()
        config["count_include_pad"] = self.count_include_pad
        config["divisor_override"] = self.divisor_override
        return config


AvgPool2d = MeanPool2d
register(MeanPool2d, "avg")  # PyTorch's name for the same strategy


class MeanPool1d(MeanPool2d):
    """1-D mean pooling, as ``torch.nn.AvgPool1d`` (``AvgPool1d``): ``(N, C, L)`` or ``(C, L)``.

    :class:`MeanPool2d` over one spatial axis (``MeanPool2d.for_dims(1)``),
    with PyTorch's ``count_include_pad``; ``divisor_override`` and
    ``dilation`` are extensions (PyTorch's AvgPool1d has neither).  Compiled
    (1-D kernels of ``_ext/_pool3d.pyx``).

    Examples
    --------
    >>> import numpy as np, cnnpool as cp
    >>> cp.MeanPool1d(2)(np.array([[[1.0, 3.0, 2.0, 0.0]]]))
    array([[[2., 1.]]])
    """

    spatial_dims = 1


class MeanPool3d(MeanPool2d):
    """3-D mean pooling, as ``torch.nn.AvgPool3d`` (``AvgPool3d``): ``(N, C, D, H, W)``.

    :class:`MeanPool2d` over three spatial axes (``MeanPool2d.for_dims(3)``),
    with PyTorch's ``count_include_pad`` and ``divisor_override``;
    ``dilation`` is an extension.  Unbatched ``(C, D, H, W)`` works too.
    """

    spatial_dims = 3


AvgPool1d = MeanPool1d
AvgPool3d = MeanPool3d
