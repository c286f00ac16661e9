"""Element-wise activations: ``ReLU``, ``Tanh``, ``Sigmoid``.

Each takes an array of any shape (float32 or float64) and returns one of
the same shape and dtype.  Backward multiplies the incoming gradient by the
local derivative, written in terms of what forward saved:

* ReLU:    ``d/dx max(x, 0) = 1 if x > 0 else 0`` (0 at ``x == 0``, as PyTorch)
* Tanh:    ``d/dx tanh(x) = 1 - y**2``
* Sigmoid: ``d/dx s(x) = y * (1 - y)``
"""

from __future__ import annotations

import numpy as np

from . import _checks, _elementwise
from ._buffers import OutputBuffers
from ._parallel import threads_for
from .layer import BackwardBeforeForwardError, Layer
from .registry import register


class _Elementwise(Layer):
    """Shared plumbing: validate, keep one saved array, check the gradient."""

    def __init__(self):
        self._saved = None

    def _saved_or_raise(self):
        if self._saved is None:
            raise BackwardBeforeForwardError(
                f"{type(self).__name__}.backward called before forward"
            )
        return self._saved

    def output_shape(self, input_shape):
        """The input shape: element-wise layers keep it."""
        return tuple(input_shape)


@register
class ReLU(_Elementwise):
    """Rectified linear unit, ``max(x, 0)``, as ``torch.nn.ReLU``.

    Examples
    --------
    >>> import numpy as np, cnnpool as cp
    >>> cp.ReLU()(np.array([-1.0, 0.0, 2.0]))
    array([0., 0., 2.])
    """

    # Both passes are compiled (_elementwise.pyx): NumPy's np.where(mask,
    # grad, 0) branches per element and took ten times a multiply on the
    # coin-toss masks of real activations.
    def __init__(self):
        super().__init__()
        self._outputs = OutputBuffers()

    def forward(self, x):
        x = _checks.as_float_array(x, "x")
        # The previous mask is dropped first, so that its buffer can be reused.
        self._saved = None
        out = self._outputs.empty("out", x.shape, x.dtype)
        positive = self._outputs.empty("positive", x.shape, bool)
        # NaN passes through, as in torch.relu; NaN > 0 is False, so a NaN
        # input then gets a zero gradient, as in PyTorch too.
        _elementwise.relu_forward(x, out, positive, threads_for(x.size >> 15, x.size))
        positive.flags.writeable = False
        self._saved = (positive, x.dtype)
        return out

    def backward(self, grad_output):
        positive, dtype = self._saved_or_raise()
        grad = _checks.grad_like(grad_output, positive.shape, dtype)
        # Zero wherever x <= 0, whatever the gradient there (inf and NaN too),
        # as PyTorch's threshold_backward.
        out = self._outputs.empty("grad_x", grad.shape, grad.dtype)
        _elementwise.relu_backward(grad, positive, out, threads_for(grad.size >> 15, grad.size))
        return out


@register
class Tanh(_Elementwise):
    """Hyperbolic tangent, as ``torch.nn.Tanh``."""

    def forward(self, x):
        x = _checks.as_float_array(x, "x")
        y = np.tanh(x)
        saved = y.copy()  # the caller may edit y; backward must not see that
        saved.flags.writeable = False
        self._saved = saved
        return y

    def backward(self, grad_output):
        y = self._saved_or_raise()
        grad = _checks.grad_like(grad_output, y.shape, y.dtype)
        return grad * (1 - y * y)


@register
class Sigmoid(_Elementwise):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, as ``torch.nn.Sigmoid``."""

    def forward(self, x):
        x = _checks.as_float_array(x, "x")
        # exp(-x) overflows to inf for very negative x, and 1/inf = 0 is the
        # right limit: silence the warning rather than branch per element.
        with np.errstate(over="ignore"):
            y = 1 / (1 + np.exp(-x))
        saved = y.copy()
        saved.flags.writeable = False
        self._saved = saved
        return y

    def backward(self, grad_output):
        y = self._saved_or_raise()
        grad = _checks.grad_like(grad_output, y.shape, y.dtype)
        return grad * (1 - y) * y  # PyTorch's order of operations
