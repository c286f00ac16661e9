"""Loss functions: ``SoftmaxCrossEntropy`` and ``MSELoss``.

A loss is called as ``loss(pred, target)`` and returns a Python float;
``loss.backward()`` then returns ``d loss / d pred``, an array of the
shape and dtype of ``pred``, to feed into the network's backward pass::

    value = loss(model(x), labels)
    model.backward(loss.backward())
"""

from __future__ import annotations

import numpy as np

from . import _checks
from .layer import BackwardBeforeForwardError

_REDUCTIONS = ("mean", "sum")


def _reduction(value):
    if value not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'mean' or 'sum', got {value!r}")
    return value


class Loss:
    """Base class: ``forward(pred, target) -> float`` and ``backward() -> grad``."""

    def __init__(self, reduction="mean"):
        self.reduction = _reduction(reduction)
        self._saved = None

    def forward(self, pred, target):
        """Return the loss of ``pred`` against ``target`` as a float."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def backward(self):
        """Return ``d loss / d pred`` for the last forward call."""
        raise NotImplementedError(f"{type(self).__name__} must implement backward")

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def _saved_or_raise(self):
        if self._saved is None:
            raise BackwardBeforeForwardError(
                f"{type(self).__name__}.backward called before forward"
            )
        return self._saved

    def extra_repr(self):
        return f"reduction={self.reduction!r}"

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


class SoftmaxCrossEntropy(Loss):
    """Softmax followed by the negative log-likelihood of integer labels.

    As ``torch.nn.CrossEntropyLoss`` with class-index targets.

    Parameters
    ----------
    reduction : {'mean', 'sum'}
        Average (default) or sum the per-example losses over the batch.

    Notes
    -----
    ``pred`` holds logits of shape ``(N, K)``; ``target`` integer labels of
    shape ``(N,)`` in ``[0, K)``.  With ``p = softmax(pred)`` the loss of
    example ``n`` is ``-log p[n, target[n]]``, computed as
    ``logsumexp(pred[n]) - pred[n, target[n]]`` after subtracting the row
    maximum, so large logits never overflow.  The gradient is
    ``p - onehot(target)`` (divided by ``N`` for the mean).

    Examples
    --------
    >>> import numpy as np, cnnpool as cp
    >>> loss = cp.SoftmaxCrossEntropy()
    >>> round(loss(np.array([[0.0, 0.0]]), np.array([1])), 6)  # log 2
    0.693147
    """

    def forward(self, pred, target):
        logits = _checks.as_float_array(pred, "pred", 2, layout="N, K logits")
        n, k = logits.shape
        if n == 0 or k == 0:
            raise ValueError(f"pred must have a non-empty batch and classes, got shape {(n, k)}")
        _checks.refuse_masked(target, "target")
        labels = np.asarray(target)
        if labels.dtype.kind not in "iu":
            raise TypeError(
                f"target must hold integer class labels, got dtype {labels.dtype} "
                f"(shape {labels.shape})"
            )
        if labels.shape != (n,):
            raise ValueError(
                f"target must have shape (N,) = {(n,)} for pred of shape {logits.shape}, "
                f"got {labels.shape}"
            )
        low, high = labels.min(), labels.max()
        if low < 0 or high >= k:
            raise ValueError(
                f"target labels must be in [0, {k}) for pred of shape {logits.shape}, "
                f"got values from {low} to {high}"
            )
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        rows = np.arange(n)
        picked = -log_probs[rows, labels]
        value = picked.mean() if self.reduction == "mean" else picked.sum()
        self._saved = (log_probs, labels.astype(np.intp))
        return float(value)

    def backward(self):
        log_probs, labels = self._saved_or_raise()
        grad = np.exp(log_probs)
        grad[np.arange(labels.size), labels] -= 1
        if self.reduction == "mean":
            grad /= labels.size
        return grad


class MSELoss(Loss):
    """Squared error, as ``torch.nn.MSELoss``, with an optional factor 1/2.

    Parameters
    ----------
    reduction : {'mean', 'sum'}
        Average (default) or sum the squared errors over every element.
    half : bool
        Multiply by 0.5: with ``reduction='sum'`` this is the textbook cost
        ``0.5 * sum((pred - target)**2)``, whose gradient is simply
        ``pred - target``.

    Notes
    -----
    ``pred`` is any float32/float64 array; ``target`` a float32/float64
    NumPy array of the same shape (converted to ``pred``'s dtype).  Integer
    arrays and lists are refused (a deliberate difference: PyTorch promotes
    an integer target), because integer targets are usually class labels
    meant for :class:`SoftmaxCrossEntropy`, and a silent cast hides that.  The gradient is
    ``2 * factor * (pred - target)`` divided by the element count for the
    mean, with ``factor`` 0.5 or 1.
    """

    def __init__(self, reduction="mean", half=False):
        super().__init__(reduction)
        if not isinstance(half, (bool, np.bool_)):
            raise TypeError(f"half must be a bool, got {half!r}")
        self.half = bool(half)

    def forward(self, pred, target):
        pred = _checks.as_float_array(pred, "pred")
        _checks.refuse_masked(target, "target")
        if not isinstance(target, np.ndarray):
            raise TypeError(
                f"target must be a float32 or float64 NumPy array, got {type(target).__name__}"
            )
        if target.dtype not in _checks.FLOAT_DTYPES:
            raise TypeError(
                f"target must be a float32 or float64 array, got dtype {target.dtype} "
                f"(shape {target.shape}); convert it with target.astype(np.{pred.dtype}) "
                f"if these are values, or use SoftmaxCrossEntropy if they are class labels"
            )
        if target.shape != pred.shape:
            raise ValueError(f"target must have the shape of pred {pred.shape}, got {target.shape}")
        diff = pred - target.astype(pred.dtype, copy=False)
        squared = diff * diff
        value = squared.mean() if self.reduction == "mean" else squared.sum()
        if self.half:
            value = value * 0.5
        self._saved = diff
        return float(value)

    def backward(self):
        diff = self._saved_or_raise()
        scale = 1.0 if self.half else 2.0
        if self.reduction == "mean" and diff.size:
            scale /= diff.size
        return diff * diff.dtype.type(scale)

    def extra_repr(self):
        text = super().extra_repr()
        return text + ", half=True" if self.half else text
