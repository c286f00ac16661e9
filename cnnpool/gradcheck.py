"""Finite-difference checking of any layer's backward pass.

The check every new pooling strategy (or any layer) should pass: perturb
each input element (and each parameter element) by ``±eps`` in float64,
measure how ``sum(output * g)`` changes for a fixed random ``g``, and
compare that numerical derivative with what ``backward(g)`` returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .layer import Layer


def _relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Normwise relative error: ``max|a - n| / max(max|a|, max|n|)``.

    Normwise rather than elementwise, so that elements whose true gradient
    is zero (most of a max-pooling gradient) do not divide by zero.  A NaN or
    infinite gradient on either side is a failure (``inf``), never a pass.
    """
    if not (np.isfinite(analytic).all() and np.isfinite(numeric).all()):
        return float("inf")
    scale = max(np.max(np.abs(analytic), initial=0.0), np.max(np.abs(numeric), initial=0.0))
    if scale == 0.0:
        return 0.0
    return float(np.max(np.abs(analytic - numeric)) / scale)


def gradcheck(
    layer: Layer,
    x: npt.ArrayLike,
    *,
    eps: float = 1e-6,
    seed: int = 0,
    check_params: bool = True,
) -> float:
    """Compare a layer's backward with central finite differences, in float64.

    Parameters
    ----------
    layer : Layer
        Anything with ``forward(x)``, ``backward(grad_output)`` and
        ``parameters()``.  Its parameters are promoted to float64 for the
        check and restored (values and gradients) afterwards.
    x : array_like, shape (N, C, H, W) or whatever the layer takes
        The input at which the derivative is checked.  Keep it small: the
        check costs two forward passes per input and parameter element.
    eps : float
        The finite-difference step.
    seed : int
        Seed of the random output weighting ``g``.
    check_params : bool
        Also check the gradients of the layer's parameters.

    Returns
    -------
    float
        The worst normwise relative error over the input gradient and every
        parameter gradient.  A correct float64 backward gives about 1e-8 or
        less; a wrong one gives something of order 1, and a NaN or infinite
        gradient gives ``inf``.

    Examples
    --------
    >>> import numpy as np, cnnpool as cp
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    >>> cp.gradcheck(cp.MaxPool2d(2), x) < 1e-6
    True
    """
    needed = ("forward", "backward") + (("parameters",) if check_params else ())
    missing = [name for name in needed if not callable(getattr(layer, name, None))]
    if missing:
        raise TypeError(
            f"layer must be a cnnpool Layer (or have forward, backward and parameters "
            f"methods); {type(layer).__name__} {layer!r} has no {', '.join(missing)}"
        )
    x = np.array(x, dtype=np.float64, copy=True)
    params = list(layer.parameters()) if check_params else []
    saved = [(p.data, p.grad) for p in params]
    try:
        for p in params:
            p.data = p.data.astype(np.float64, copy=True)
            p.grad = np.zeros_like(p.data)
        g = np.random.default_rng(seed).standard_normal(np.shape(layer.forward(x)))

        def objective() -> float:
            return float(np.sum(layer.forward(x) * g))

        layer.forward(x)
        grad_x = np.asarray(layer.backward(g), dtype=np.float64)
        analytic = [grad_x] + [p.grad.copy() for p in params]
        targets = [x] + [p.data for p in params]

        worst = 0.0
        for array, exact in zip(targets, analytic):
            numeric = np.zeros_like(array)
            flat, out = array.reshape(-1), numeric.reshape(-1)
            for i in range(flat.size):
                old = flat[i]
                flat[i] = old + eps
                plus = objective()
                flat[i] = old - eps
                minus = objective()
                flat[i] = old
                out[i] = (plus - minus) / (2.0 * eps)
            worst = max(worst, _relative_error(exact, numeric))
        return worst
    finally:
        for p, (data, grad) in zip(params, saved):
            p.data, p.grad = data, grad
