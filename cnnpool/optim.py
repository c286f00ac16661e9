"""Optimizers: ``SGD`` (momentum, Nesterov, weight decay) and ``Adam``.

Both follow ``torch.optim``'s update rules operation for operation, so one
step from the same parameters and gradients lands on the same values up to
float rounding.  ``step()`` updates every ``Parameter.data`` in place;
``zero_grad()`` clears every ``Parameter.grad``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .layer import Parameter


def _hyper(value, name, *, upper=None):
    """Validate a non-negative real hyper-parameter (``< upper`` when given)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or math.isnan(value):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if value < 0 or (upper is not None and value >= upper):
        bound = f"in [0, {upper})" if upper is not None else ">= 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return float(value)


class Optimizer:
    """Base class: holds the parameter list; subclasses implement :meth:`step`.

    Parameters
    ----------
    params : iterable of Parameter
        Typically ``model.parameters()``.  A parameter listed twice is
        updated once.
    """

    def __init__(self, params):
        if isinstance(params, Parameter):
            raise TypeError("params must be an iterable of Parameter, got a single Parameter")
        unique, seen = [], set()
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(f"params[{i}] must be a cnnpool Parameter, got {type(p).__name__}")
            if id(p) not in seen:
                seen.add(id(p))
                unique.append(p)
        if not unique:
            raise ValueError("optimizer got an empty parameter list")
        self.params = unique
        self.state = [dict() for _ in unique]

    def zero_grad(self):
        """Set every parameter's gradient to zero, in place."""
        for p in self.params:
            p.zero_grad()

    def step(self):
        """Update every parameter from its gradient."""
        raise NotImplementedError(f"{type(self).__name__} must implement step")

    def extra_repr(self):
        return ""

    def __repr__(self):
        return f"{type(self).__name__}({len(self.params)} parameters, {self.extra_repr()})"


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD`` (no dampening).

    For each parameter ``p`` with gradient ``g``::

        g = g + weight_decay * p                      (if weight_decay)
        buf = g  (first step),  momentum * buf + g    (later steps)
        g = g + momentum * buf  (nesterov)  or  buf   (if momentum)
        p = p - lr * g

    Parameters
    ----------
    params : iterable of Parameter
    lr : float
        Learning rate.
    momentum : float
        Momentum factor (0 disables the buffer).
    weight_decay : float
        L2 penalty added to the gradient.
    nesterov : bool
        Nesterov momentum; requires ``momentum > 0``.
    """

    def __init__(self, params, lr, momentum=0, weight_decay=0, nesterov=False):
        super().__init__(params)
        self.lr = _hyper(lr, "lr")
        self.momentum = _hyper(momentum, "momentum")
        self.weight_decay = _hyper(weight_decay, "weight_decay")
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool, got {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True requires momentum > 0")
        self.nesterov = bool(nesterov)

    def step(self):
        lr, momentum, decay = self.lr, self.momentum, self.weight_decay
        for p, state in zip(self.params, self.state, strict=True):
            grad = p.grad
            if decay != 0:
                grad = grad + decay * p.data
            if momentum != 0:
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = np.array(grad, copy=True)
                else:
                    buf *= momentum
                    buf += grad
                grad = grad + momentum * buf if self.nesterov else buf
            p.data -= lr * grad

    def extra_repr(self):
        text = f"lr={self.lr}, momentum={self.momentum}, weight_decay={self.weight_decay}"
        return text + (", nesterov=True" if self.nesterov else "")


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (L2 weight decay, no AMSGrad).

    For each parameter ``p`` with gradient ``g``, at step ``t = 1, 2, ...``::

        g = g + weight_decay * p                      (if weight_decay)
        m = m + (1 - beta1) * (g - m)                 (m, v start at 0)
        v = beta2 * v + (1 - beta2) * g * g
        denom = sqrt(v) / sqrt(1 - beta2**t) + eps
        p = p - lr / (1 - beta1**t) * m / denom

    Parameters
    ----------
    params : iterable of Parameter
    lr : float
    betas : (float, float)
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float
        Added to the denominator for numerical stability.
    weight_decay : float
        L2 penalty added to the gradient (not decoupled as in AdamW).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0):
        super().__init__(params)
        self.lr = _hyper(lr, "lr")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of floats, got {betas!r}")
        self.betas = (_hyper(betas[0], "betas[0]", upper=1), _hyper(betas[1], "betas[1]", upper=1))
        self.eps = _hyper(eps, "eps")
        self.weight_decay = _hyper(weight_decay, "weight_decay")

    def step(self):
        beta1, beta2 = self.betas
        for p, state in zip(self.params, self.state, strict=True):
            grad = p.grad
            if self.weight_decay != 0:
                grad = grad + self.weight_decay * p.data
            if not state:
                state["step"] = 0
                state["exp_avg"] = np.zeros_like(p.data)
                state["exp_avg_sq"] = np.zeros_like(p.data)
            state["step"] += 1
            t = state["step"]
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m += (1 - beta1) * (grad - m)  # torch's lerp_(grad, 1 - beta1)
            v *= beta2
            v += (1 - beta2) * grad * grad
            step_size = self.lr / (1 - beta1**t)
            denom = np.sqrt(v) / math.sqrt(1 - beta2**t) + self.eps
            p.data -= step_size * (m / denom)

    def extra_repr(self):
        return f"lr={self.lr}, betas={self.betas}, eps={self.eps}, weight_decay={self.weight_decay}"
