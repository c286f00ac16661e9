"""``Flatten`` and the fully connected ``Linear`` layer.

``Linear`` computes ``y = x @ W.T + b`` with ``W`` of shape
``(out_features, in_features)``, PyTorch's layout, so weights copy across
directly.  Backward, with ``g`` the output gradient:

* ``grad_x = g @ W``
* ``grad_W = g.T @ x``
* ``grad_b = g.sum(axis=0)``
"""

from __future__ import annotations

import math

import numpy as np

from . import _checks
from ._buffers import OutputBuffers
from ._init import he_normal, make_rng
from .layer import BackwardBeforeForwardError, Layer, Parameter
from .registry import register


@register
class Flatten(Layer):
    """Flatten every axis but the first: ``(N, C, H, W) -> (N, C*H*W)``.

    As ``torch.nn.Flatten()``.  The output is a view of the input when the
    input is C-contiguous (no copy), and the backward pass reshapes the
    gradient back.
    """

    def __init__(self):
        self._saved = None

    def forward(self, x):
        x = _checks.as_float_array(x, "x")
        if x.ndim < 2:
            raise ValueError(
                f"x must be at least 2-D (N, ...), got {x.ndim}-D array of shape {x.shape}"
            )
        self._saved = (x.shape, x.dtype)
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward(self, grad_output):
        if self._saved is None:
            raise BackwardBeforeForwardError("Flatten.backward called before forward")
        x_shape, dtype = self._saved
        out_shape = (x_shape[0], math.prod(x_shape[1:]))
        grad = _checks.grad_like(grad_output, out_shape, dtype)
        return grad.reshape(x_shape)

    def output_shape(self, input_shape):
        """``(N, prod(rest))`` for an input of shape ``(N, ...)``."""
        input_shape = tuple(input_shape)
        return (input_shape[0], math.prod(input_shape[1:]))


@register
class Linear(Layer):
    """Fully connected layer ``y = x @ weight.T + bias``, as ``torch.nn.Linear``.

    Parameters
    ----------
    in_features, out_features : int
        Sizes ``F`` of each input row and ``M`` of each output row.
    bias : bool
        Add a learnable bias.
    dtype : float32 or float64
        Dtype of the parameters; inputs must have the same dtype.
    rng : None, int or numpy.random.Generator
        Source of the initial weights: He (Kaiming) normal,
        ``N(0, 2 / in_features)``, and a zero bias.

    Attributes
    ----------
    weight : Parameter, shape (out_features, in_features)
    bias : Parameter of shape (out_features,), or None

    Notes
    -----
    Input ``(*, in_features)``, output ``(*, out_features)``, as in PyTorch:
    usually ``(N, in_features)``; an unbatched ``(in_features,)`` too.  Put a
    :class:`Flatten` in front to feed it convolution or pooling output.
    Forward keeps a copy of ``x`` for the weight gradient (unless ``x``
    already had to be copied to become C-contiguous), so editing ``x`` in
    place after the forward pass changes nothing; backward uses the weights
    as they are when it runs.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, rng=None):
        self.in_features = _checks.positive_int(in_features, "in_features")
        self.out_features = _checks.positive_int(out_features, "out_features")
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be a bool, got {bias!r}")
        dtype = _checks.float_dtype(dtype)
        generator = make_rng(rng)
        self.weight = Parameter(
            he_normal((self.out_features, self.in_features), self.in_features, dtype, generator),
            "weight",
        )
        self.bias = Parameter(np.zeros(self.out_features, dtype), "bias") if bias else None
        self._saved = None
        self._inputs = OutputBuffers()  # the private copy of x, reused between calls

    def forward(self, x):
        """``x`` of shape ``(*, in_features)`` -> ``(*, out_features)``.

        As ``torch.nn.Linear``: any number of leading axes, none included
        (one unbatched row ``(in_features,)`` gives ``(out_features,)``).
        """
        given = x
        x = _checks.as_float_array(x, "x", layout="*, in_features")
        weight = self.weight.data
        if np.ndim(given) == 0:  # as_float_array made it (1,); PyTorch refuses a scalar too
            raise ValueError(
                f"x must have at least one axis (*, in_features={self.in_features}), "
                "got a 0-D array"
            )
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"x has {x.shape[-1]} features (shape {x.shape}) but Linear expects "
                f"in_features={self.in_features} on its last axis; a Flatten before it "
                f"gives (N, C*H*W)"
            )
        if x.dtype != weight.dtype:
            raise TypeError(
                f"x has dtype {x.dtype} (shape {x.shape}) but the Linear weights are "
                f"{weight.dtype}; convert x with x.astype(np.{weight.dtype}) or build "
                f"the layer with dtype=np.{x.dtype}"
            )
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)  # a view: x is C-contiguous
        out = x2 @ weight.T
        if self.bias is not None:
            out += self.bias.data
        # Our own copy for the weight gradient: the caller may edit x next.
        # (The previous one is dropped first, so that its memory is reused.)
        self._saved = None
        self._saved = (_checks.owned(x2, given, self._inputs), weight, lead)
        return out.reshape(lead + (self.out_features,))

    def backward(self, grad_output):
        """Gradient w.r.t. ``x`` (its shape); adds the weight and bias gradients to ``.grad``."""
        if self._saved is None:
            raise BackwardBeforeForwardError("Linear.backward called before forward")
        x, weight, lead = self._saved
        grad = _checks.grad_like(grad_output, lead + (self.out_features,), x.dtype)
        grad = grad.reshape(-1, self.out_features)
        if self.bias is not None:
            self.bias.grad += grad.sum(axis=0)
        self.weight.grad += grad.T @ x
        return (grad @ weight).reshape(lead + (self.in_features,))

    def output_shape(self, input_shape):
        """``(*, out_features)`` for an input of shape ``(*, in_features)``."""
        input_shape = tuple(input_shape)
        if len(input_shape) < 1 or input_shape[-1] != self.in_features:
            raise ValueError(
                f"input_shape must be (*, {self.in_features}) for Linear with "
                f"in_features={self.in_features}, got {input_shape}"
            )
        return input_shape[:-1] + (self.out_features,)

    def parameters(self):
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def get_config(self):
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "dtype": str(self.weight.data.dtype),
        }

    def extra_repr(self):
        text = f"in_features={self.in_features}, out_features={self.out_features}"
        if self.bias is None:
            text += ", bias=False"
        return text + f", dtype={self.weight.data.dtype}"
