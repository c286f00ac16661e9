"""Stochastic pooling (Zeiler & Fergus, 2013): sample a window's element by its size."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..._parallel import threads_for
from ..base import Pool2d
from . import _stochastic

_U8, _I64 = np.dtype(np.uint8), np.dtype(np.int64)


def _saved_slot(layer):
    """``empty(name, shape, dtype)`` for the state one forward saves.

    Two buffers per name, taken in turn by successive forwards: the previous
    forward's state is still held while the next forward runs, so its buffer
    is never handed out; the one before is reused once nothing refers to it
    (:class:`~cnnpool._buffers.OutputBuffers`), sparing large saved arrays
    the page faults of a fresh allocation on every call.
    """
    layer._saved_slot = slot = 1 - getattr(layer, "_saved_slot", 1)
    return lambda name, shape, dtype: layer._outputs.empty(f"{name}{slot}", shape, dtype)


class StochasticSaved(NamedTuple):
    """What the kernel tier keeps for its backward (:attr:`PoolState.saved`).

    Training: ``taps`` holds each window's drawn tap number (uint8 for
    windows of up to 255 taps, else int64) and ``live`` is 1 where the
    drawn element is positive, i.e. takes the window's gradient; both
    (N*C, OH, OW), read-only.  Evaluation: ``x`` is a copy of the input
    (its gradient depends on every positive tap), ``taps`` and ``live``
    are None.
    """

    taps: np.ndarray | None
    live: np.ndarray | None
    x: np.ndarray | None


class StochasticPool2d(Pool2d, name="stochastic"):
    """Stochastic pooling: in training, each window outputs one of its elements
    drawn with probability proportional to its activation; in evaluation,
    the probability-weighted average.

    Zeiler & Fergus, "Stochastic Pooling for Regularization of Deep
    Convolutional Neural Networks", ICLR 2013.

    Parameters
    ----------
    kernel_size, stride, padding, dilation, ceil_mode
        See :class:`Pool2d`.  Padded taps hold 0: they are never drawn.
    rng : None, int, numpy.random.Generator or dict
        The source of the draws (``numpy.random.default_rng(rng)``).  Two
        layers built with the same seed, fed the same inputs, draw the same
        elements.  Assign ``layer.rng = seed`` to restart the stream.  A
        dict is a bit generator's state (``generator.bit_generator.state``,
        e.g. from :meth:`get_config`): the stream continues from there, so a
        saved and reloaded model draws what the original would have drawn.

    Attributes
    ----------
    indices : ndarray of int64, shape (N, C, OH, OW)
        After a training forward pass: the flat index ``ih * W + iw`` of
        the element drawn in each window (as ``MaxPool2d.indices``).
        ``None`` after an evaluation pass.

    Notes
    -----
    The probabilities are those of the paper, defined for non-negative
    activations (the output of a ReLU).  With ``r = max(x, 0)`` over a
    window's input taps and ``S = sum(r)``:

    * **Training**: element ``i`` is drawn with probability ``r_i / S`` and
      the output is ``r_s`` (= ``x_s``, which is positive).  One uniform
      number ``u`` in ``[0, 1)`` per window, from :attr:`rng`, in row-major
      ``(N, C, OH, OW)`` order, picks the first tap whose running sum of
      ``r`` exceeds ``u * S``.  The whole gradient goes to the drawn element
      (the sample is held fixed, as for the winner of a max).
    * **Evaluation**: ``y = sum(r_i * r_i / S) = sum(r**2) / S``, with
      gradient ``(2 r_i S - sum(r**2)) / S**2`` for ``x_i > 0`` and 0 for
      the others.  Evaluation draws nothing.
    * **Negative inputs** count as zero activation: they are never drawn
      and receive no gradient.  The layer therefore pools ``max(x, 0)``.
    * **A window with no positive element** (all zeros or negatives; ``S =
      0``) outputs 0 with zero gradient in both modes, the limit of both
      formulas as ``S -> 0``; its "drawn" index is its first input tap.
    * A NaN in a window makes that window's output NaN (training: the first
      NaN is "drawn"), with zero gradient.

    The kernel tier (``_stochastic.pyx``) runs these rules in compiled
    loops: the same uniforms, drawn in Python from :attr:`rng` in the same
    order, and the same float64 running sums, so it draws exactly the
    elements the NumPy tier (``use_fast_path = False``) draws, with the
    same training output and gradient.  Evaluation sums may be paired
    differently from NumPy's ``sum``: equal to rounding.
    """

    pad_value = 0.0

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, rng=None):
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        self.rng = rng

    @property
    def rng(self):
        """The ``numpy.random.Generator`` the samples come from."""
        return self._rng

    @rng.setter
    def rng(self, value):
        if isinstance(value, dict):
            value = _generator_from_state(value)
        self._rng = np.random.default_rng(value)

    # --------------------------------------------------------------- strategy
    def _activations(self, windows):
        """``r = max(x, 0)`` on input taps, 0 on padded ones (NaN kept)."""
        r = np.where(self.geometry.inside, windows, 0)
        return np.where(r < 0, 0, r)  # keeps NaN, unlike a comparison to 0 would drop it

    def _draw(self, r):
        """Tap number of the element drawn in each window (float64 sums)."""
        cum = np.cumsum(r, axis=-1, dtype=np.float64)
        total = cum[..., -1]
        u = self.rng.random(total.shape)
        hit = cum > (u * total)[..., None]
        drawn = np.argmax(hit, axis=-1)
        # u * S can round up to S: take the last positive tap then.
        last_positive = r.shape[-1] - 1 - np.argmax(r[..., ::-1] > 0, axis=-1)
        drawn = np.where(hit.any(axis=-1), drawn, last_positive)
        # No positive element: the first input tap (its activation is 0).
        first_inside = np.argmax(self.geometry.inside, axis=-1)
        drawn = np.where(total > 0, drawn, first_inside)
        nan = np.isnan(r)
        return np.where(nan.any(axis=-1), np.argmax(nan, axis=-1), drawn)

    def pool(self, windows, ctx):
        r = self._activations(windows)
        ctx.drawn = self._draw(r) if self.training else None  # kept for route, per forward
        if ctx.drawn is not None:
            return np.take_along_axis(r, ctx.drawn[..., None], axis=-1)[..., 0]
        total = r.sum(axis=-1, dtype=np.float64)
        squares = np.sum(r.astype(np.float64) ** 2, axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, squares / total, np.where(np.isnan(total), total, 0))

    def route(self, windows, pooled, ctx):
        r = self._activations(windows)
        positive = r > 0
        if ctx.drawn is not None:
            onehot = np.zeros(windows.shape, dtype=windows.dtype)
            np.put_along_axis(onehot, ctx.drawn[..., None], 1, axis=-1)
            return onehot * positive
        r64 = r.astype(np.float64)
        total = r64.sum(axis=-1, keepdims=True)
        squares = np.sum(r64**2, axis=-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            local = (2 * r64 * total - squares) / total**2
        return np.where(positive & (total > 0), local, 0).astype(windows.dtype)

    # ------------------------------------------------------------ kernel tier
    def forward_kernel(self, x, geom):
        n, c, h, w = x.shape
        oh, ow = geom.out_size
        planes = x.reshape(n * c, h, w)
        out = self._outputs.empty("out", (n * c, oh, ow), x.dtype)
        threads = threads_for(n * c, x.size + out.size)
        saved = _saved_slot(self)
        if not self.training:
            _stochastic.eval_forward(planes, out, *geom.kernel_args, threads)
            saved_x = saved("x", planes.shape, x.dtype)
            np.copyto(saved_x, planes)  # the caller may edit x before backward
            saved_x.flags.writeable = False
            return out.reshape(n, c, oh, ow), StochasticSaved(None, None, saved_x)
        # One uniform per window in row-major (N, C, OH, OW) order, as the
        # NumPy tier draws them: the same seed draws the same elements.
        u = self.rng.random(out=self._outputs.empty("u", (n * c, oh, ow), np.float64))
        taps = saved("taps", (n * c, oh, ow), _U8 if geom.window_size <= 255 else _I64)
        live = saved("live", (n * c, oh, ow), _U8)
        _stochastic.train_forward(planes, u, out, taps, live, *geom.kernel_args, threads)
        taps.flags.writeable = False  # backward trusts these: keep them ours
        live.flags.writeable = False
        return out.reshape(n, c, oh, ow), StochasticSaved(taps, live, None)

    def backward_kernel(self, grad_output, state):
        geom, saved = state.geometry, state.saved
        n, c, h, w = state.x_shape
        grad = grad_output.reshape((n * c,) + geom.out_size)
        grad_x = self._outputs.empty("grad_x", (n * c, h, w), grad_output.dtype)
        threads = threads_for(n * c, grad_x.size + grad.size)
        if saved.x is not None:
            _stochastic.eval_backward(saved.x, grad, grad_x, *geom.kernel_args, threads)
        else:
            _stochastic.train_backward(
                grad, saved.taps, saved.live, grad_x, *geom.kernel_args, threads
            )
        return grad_x.reshape(state.x_shape)

    @property
    def indices(self):
        state = self._state
        if state is None:
            return None
        if state.tier == "kernel":
            drawn = state.saved.taps
            if drawn is None:
                return None
            indices = state.geometry.flat_index(drawn.reshape(state.out_shape))
        else:
            if state.saved.ctx.drawn is None:
                return None
            indices = state.geometry.flat_index(state.saved.ctx.drawn)
        return indices[0] if state.unbatched else indices

    def extra_repr(self):
        return super().extra_repr() + f", training={self.training}"

    def get_config(self):
        """Constructor arguments, for saved models, with the generator's current state.

        ``rng`` is ``self.rng.bit_generator.state`` (plain ints and strings):
        a layer rebuilt from this dict continues the same stream of draws.
        """
        return {**super().get_config(), "rng": self._rng.bit_generator.state}


# The bit generators NumPy ships; a saved state names one of them.
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def _generator_from_state(state):
    """A ``numpy.random.Generator`` restored from ``bit_generator.state``."""
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        raise ValueError(
            f"rng state must name one of NumPy's bit generators {_BIT_GENERATORS} under "
            f"'bit_generator', got {name!r}"
        )
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = state
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"rng state is not a valid {name} state: {exc}") from exc
    return np.random.Generator(bit_generator)
