"""Strategies written in Cython: :class:`CompiledPool2d` and the window driver.

The compiled twin of the ``pool``/``route`` contract.  A strategy is a
``cdef class`` deriving from ``cnnpool.pooling.tiers._strategy.WindowStrategy``
(declared in ``_strategy.pxd``, shipped with the package) that reduces one
window and routes its gradient, both ``nogil``; the driver in
``_strategy.pyx`` runs it over every window of a batch, OpenMP-parallel
over the N*C planes.  See ``docs/writing_a_strategy.md`` for a complete
example and how to build it.

This module checks everything the driver trusts (shapes, dtypes, the tap
table's range) before entering it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..._parallel import threads_for
from ..base import Pool2d
from . import _strategy
from ._strategy import WindowStrategy

__all__ = [
    "CompiledPool2d",
    "WindowPlan",
    "WindowStrategy",
    "kernel_backward",
    "kernel_forward",
    "strategy_backward",
    "strategy_forward",
    "window_plan",
]


class WindowPlan(NamedTuple):
    """A checked tap table in the form the driver takes (see ``_strategy.pyx``).

    ``taps`` (O, K): each row's input taps first, in window order;
    ``counts`` (O,): how many; ``full``: every window has all K;
    ``disjoint``: no input element is in two windows; ``covers``: every
    element of a plane is in some window (so a disjoint backward writes the
    whole input gradient and it needs no zeroing).
    """

    taps: np.ndarray
    counts: np.ndarray
    full: bool
    disjoint: bool
    covers: bool
    plane_size: int


def window_plan(taps, plane_size):
    """Check a tap table ``taps`` (O, K) and build the driver's :class:`WindowPlan`.

    ``taps[o]`` lists the flat index in a plane of ``plane_size`` elements
    of each tap of window ``o``, -1 for a tap outside the input.
    """
    if isinstance(taps, WindowPlan):
        if taps.plane_size != plane_size:
            raise ValueError(
                f"the plan is for planes of {taps.plane_size} elements, not {plane_size}"
            )
        return taps
    if not (isinstance(taps, np.ndarray) and taps.dtype == np.intp and taps.ndim == 2):
        raise TypeError("taps must be a 2-D intp array (windows, taps per window)")
    if taps.shape[1] < 1:
        raise ValueError("taps must have at least one tap per window")
    if taps.size and (taps.min() < -1 or taps.max() >= plane_size):
        raise ValueError(
            f"taps must lie in [-1, {plane_size}) (flat index into a plane of "
            f"{plane_size} elements, -1 for none), got [{taps.min()}, {taps.max()}]"
        )
    inside = taps >= 0
    counts = inside.sum(axis=1, dtype=np.intp)
    if taps.shape[0] and counts.min() == 0:
        raise ValueError("every window must hold at least one tap inside the input")
    full = bool(counts.size == 0 or counts.min() == taps.shape[1])
    used = np.bincount(taps.ravel() if full else taps[inside], minlength=plane_size)
    if not full:  # a stable sort of each row puts its input taps first, in order
        order = np.argsort(~inside, axis=1, kind="stable")
        taps = np.take_along_axis(taps, order, axis=1)
    disjoint = bool(used.size == 0 or used.max() <= 1)
    covers = bool(used.size == 0 or used.min() >= 1)
    return WindowPlan(np.ascontiguousarray(taps), counts, full, disjoint, covers, plane_size)


def _check_planes(array, name, dtype, shape=None):
    if not isinstance(array, np.ndarray) or array.ndim != 2 or array.dtype != dtype:
        raise TypeError(f"{name} must be a 2-D {dtype} array")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    return np.ascontiguousarray(array)


def _strategy_arg(strategy):
    if not isinstance(strategy, WindowStrategy):
        raise TypeError(
            f"strategy must be a cnnpool.pooling.WindowStrategy (a cdef class built "
            f"against _strategy.pxd), got {type(strategy).__name__}"
        )
    return strategy


def _float_planes(x):
    if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64):
        raise TypeError("x must be a float32 or float64 array")
    return _check_planes(x, "x", x.dtype)


def strategy_forward(strategy, x, taps, *, buffers=None):
    """Run ``strategy`` over every window: ``x`` (P, S), ``taps`` (O, K) -> (P, O).

    ``x`` holds P independent planes of S elements (float32 or float64);
    ``taps[o]`` lists the flat indices in a plane of window ``o``'s taps,
    -1 for a tap outside the input (or ``taps`` is a :class:`WindowPlan`
    of such a table).  Returns the pooled values in the dtype of ``x``;
    ``buffers`` (an ``OutputBuffers``) may supply the output array.
    """
    strategy = _strategy_arg(strategy)
    x = _float_planes(x)
    plan = window_plan(taps, x.shape[1])
    planes, (n_out, k) = x.shape[0], plan.taps.shape
    shape = (planes, n_out)
    out = np.empty(shape, x.dtype) if buffers is None else buffers.empty("out", shape, x.dtype)
    threads = threads_for(planes, x.size + out.size * k)
    _strategy.forward(strategy, x, plan.taps, plan.counts, plan.full, out, threads)
    return out


def strategy_backward(strategy, x, taps, pooled, grad_output, *, buffers=None):
    """Input gradient through the strategy's route: (P, S) from ``grad_output`` (P, O).

    ``pooled`` is what :func:`strategy_forward` returned for ``x``.  Windows
    that share an input element accumulate into it.  ``buffers`` (an
    ``OutputBuffers``) may supply the result array.
    """
    strategy = _strategy_arg(strategy)
    x = _float_planes(x)
    plan = window_plan(taps, x.shape[1])
    planes, (n_out, k) = x.shape[0], plan.taps.shape
    pooled = _check_planes(pooled, "pooled", x.dtype, (planes, n_out))
    grad_output = _check_planes(grad_output, "grad_output", x.dtype, (planes, n_out))
    if buffers is None:
        grad_x = np.empty_like(x)
    else:
        grad_x = buffers.empty("grad_x", x.shape, x.dtype)
    if not (plan.disjoint and plan.covers):
        grad_x.fill(0)
    threads = threads_for(planes, x.size + grad_output.size * k)
    _strategy.backward(
        strategy,
        x,
        plan.taps,
        plan.counts,
        plan.full,
        plan.disjoint,
        pooled,
        grad_output,
        grad_x,
        threads,
    )
    return grad_x


def kernel_forward(layer, strategy, x, geom):
    """The kernel tier of a layer whose strategy is ``strategy``: ``(y, saved)``.

    Shared by :class:`CompiledPool2d` and ``LpPool2d``.  The plan of a
    geometry is built once and kept on the layer (beside its geometries).
    """
    n, c = x.shape[:2]
    size = geom.plane_size
    plans = layer.__dict__.setdefault("_window_plans", {})
    plan = plans.get(id(geom))
    if plan is None or plan[0] is not geom:
        taps = geom.taps.reshape(-1, geom.taps.shape[-1])
        plan = plans[id(geom)] = (geom, window_plan(taps, size))
    # Backward needs x and the output unchanged: private copies, in buffers
    # reused from one call to the next once the last forward's record lets go.
    layer._state = None
    buffers = layer._outputs
    planes = buffers.empty("planes", (n * c, size), x.dtype)
    np.copyto(planes, x.reshape(n * c, size))
    out = strategy_forward(strategy, planes, plan[1], buffers=buffers)
    saved = buffers.empty("pooled", out.shape, out.dtype)
    np.copyto(saved, out)
    saved.flags.writeable = False
    planes.flags.writeable = False
    return out.reshape((n, c) + geom.out_size), (planes, saved, plan[1])


def kernel_backward(layer, strategy, grad_output, state):
    """The backward of :func:`kernel_forward`: the input gradient, shape ``state.x_shape``."""
    planes, pooled, plan = state.saved
    grad = strategy_backward(
        strategy, planes, plan, pooled, grad_output.reshape(pooled.shape), buffers=layer._outputs
    )
    return grad.reshape(state.x_shape)


class CompiledPool2d(Pool2d):
    """A pooling layer whose strategy is a compiled :class:`WindowStrategy`.

    Parameters
    ----------
    strategy : WindowStrategy
        An instance of a ``cdef class`` derived from
        ``cnnpool.pooling.tiers._strategy.WindowStrategy`` (your own ``.pyx``,
        compiled against the ``_strategy.pxd`` installed with cnnpool).
    kernel_size, stride, padding, dilation, ceil_mode
        See :class:`Pool2d`.

    Notes
    -----
    The strategy sees only the taps of a window that fall inside the input
    (padding is never materialised), as float64.  The compiled path walks
    the geometry's tap table; ``pool`` and ``route`` (the generic path,
    ``use_fast_path = False``) run the very same strategy over the gathered
    windows, so the two paths agree exactly.  Backward uses a private copy
    of the input, so editing ``x`` after the forward pass changes nothing.

    Examples
    --------
    >>> import numpy as np, cnnpool as cp
    >>> from cnnpool.pooling.strategies._lp import LpWindow
    >>> layer = cp.CompiledPool2d(LpWindow(2.0), 2)
    >>> layer(np.full((1, 1, 2, 2), 3.0))[0, 0]
    array([[6.]])
    """

    pad_value = 0.0
    # The tap table is rank-agnostic: the kernel tier runs in every rank.
    kernel_ranks = (1, 2, 3)

    def __init__(self, strategy, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        self.strategy = _strategy_arg(strategy)

    # The generic path: the same strategy over the gathered windows.
    def _window_taps(self, windows):
        n, c = windows.shape[:2]
        k = windows.shape[-1]
        o = int(np.prod(windows.shape[2:-1]))
        index = np.arange(o * k, dtype=np.intp).reshape(o, k)
        inside = self.geometry.inside.reshape(o, k)
        return np.where(inside, index, -1), windows.reshape(n * c, o * k)

    def pool(self, windows):
        taps, planes = self._window_taps(windows)
        return strategy_forward(self.strategy, planes, taps).reshape(windows.shape[:-1])

    def route(self, windows, pooled):
        taps, planes = self._window_taps(windows)
        shape = (planes.shape[0], taps.shape[0])
        ones = np.ones(shape, dtype=windows.dtype)
        local = strategy_backward(
            self.strategy, planes, taps, pooled.reshape(shape).astype(windows.dtype), ones
        )
        return local.reshape(windows.shape)

    # The kernel tier: the tap table of the input itself.
    def forward_kernel(self, x, geom):
        return kernel_forward(self, self.strategy, x, geom)

    def backward_kernel(self, grad_output, state):
        return kernel_backward(self, self.strategy, grad_output, state)

    def extra_repr(self):
        return f"{type(self.strategy).__name__}, " + super().extra_repr()

    def get_config(self):
        """Constructor arguments, for saved models.

        A bare ``CompiledPool2d(strategy, ...)`` cannot be saved (a compiled
        strategy object is not a configuration); subclass it with a
        constructor that builds its strategy from plain arguments, and
        extend this dict with them.
        """
        if type(self) is CompiledPool2d:
            raise ValueError(
                f"a bare CompiledPool2d({type(self.strategy).__name__}(...)) cannot be "
                f"saved: subclass CompiledPool2d with a constructor that builds the "
                f"strategy from plain arguments (and a get_config returning them)"
            )
        return super().get_config()
