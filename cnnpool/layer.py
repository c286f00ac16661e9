"""The layer base class and the trainable parameter.

Every layer in cnnpool follows one small contract, close to PyTorch's
``nn.Module`` but explicit about the backward pass so that a student can
read it:

* ``forward(x)`` computes the output and saves what ``backward`` needs;
  ``layer(x)`` is the same call.
* ``backward(grad_output)`` returns the gradient with respect to the
  input of the *last* forward call, and **adds** the gradients of the
  layer's parameters into their ``.grad`` (as PyTorch does; an optimizer's
  ``zero_grad()`` clears them).  It never modifies what forward saved, so
  calling it twice gives the same input gradient twice.
* ``parameters()`` lists the layer's :class:`Parameter` objects.
* ``train()`` / ``eval()`` switch the ``training`` flag.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from . import registry as _registry

_L = TypeVar("_L", bound="Layer")


class BackwardBeforeForwardError(RuntimeError, ValueError):
    """``backward`` was called on a layer that has not run ``forward`` yet.

    A ``RuntimeError`` (as in PyTorch) and a ``ValueError`` (so code that
    catches bad input catches it too).
    """


class Parameter:
    """A trainable array and the gradient accumulated for it.

    Parameters
    ----------
    data : numpy.ndarray
        The value, float32 or float64.  Stored as given (C-contiguous).
    name : str, optional
        A label used by ``repr`` and by saved models.

    Attributes
    ----------
    data : numpy.ndarray
        The current value; optimizers update it in place.
    grad : numpy.ndarray
        Same shape and dtype as ``data``; zero until a backward pass.
    """

    __slots__ = ("data", "grad", "name")

    def __init__(self, data: npt.ArrayLike, name: str = "") -> None:
        self.data = np.ascontiguousarray(data)
        # np.zeros, not zeros_like: calloc leaves the pages untouched until used.
        self.grad = np.zeros(self.data.shape, self.data.dtype)
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.data.dtype

    def zero_grad(self) -> None:
        """Set the accumulated gradient to zero, in place."""
        self.grad.fill(0)

    def __repr__(self) -> str:
        label = f"{self.name}, " if self.name else ""
        return f"Parameter({label}shape={self.data.shape}, dtype={self.data.dtype})"


class Layer:
    """Base class of every layer: the forward/backward/parameters contract.

    Subclasses implement :meth:`forward` and :meth:`backward`; layers with
    weights also override :meth:`parameters`, and :meth:`extra_repr` to show
    their configuration.
    """

    training: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Known to saved models by its class name from now on (cnnpool.registry).
        _registry._note_defined(cls)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Compute the output for input ``x`` and remember what backward needs."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Return d(loss)/d(input) given d(loss)/d(output) of the last forward."""
        raise NotImplementedError(f"{type(self).__name__} must implement backward")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def parameters(self) -> list[Parameter]:
        """Return the list of this layer's :class:`Parameter` objects."""
        return []

    def zero_grad(self) -> None:
        """Zero the gradients of every parameter of this layer."""
        for p in self.parameters():
            p.zero_grad()

    def train(self: _L, mode: bool = True) -> _L:
        """Put the layer in training mode (or evaluation mode with ``False``)."""
        self.training = bool(mode)
        return self

    def eval(self: _L) -> _L:
        """Put the layer in evaluation mode."""
        return self.train(False)

    def extra_repr(self) -> str:
        """The configuration shown inside ``repr``; override in subclasses."""
        return ""

    def get_config(self):
        """The constructor arguments that rebuild this layer, as a JSON-ready dict.

        ``type(layer)(**layer.get_config())`` builds a layer of the same
        configuration (with fresh parameters); saved models store it.  The
        default, ``{}``, suits layers whose constructor takes no arguments;
        every other layer overrides it.
        """
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
