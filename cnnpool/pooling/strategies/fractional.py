"""Fractional max pooling (Graham, 2014): max pooling by a random, non-integer step."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..._parallel import threads_for
from ...registry import register
from ..base import Pool2d
from . import _fractional
from .stochastic import _generator_from_state


@dataclass(frozen=True)
class FractionalGeometry:
    """The sizes of fractional max pooling on one input size.

    Not a :class:`~cnnpool.pooling.PoolGeometry`: every ``(n, c)`` plane
    has its own windows, placed by its samples (see
    :class:`FractionalMaxPool2d`), so no tap table is shared by a batch.

    Attributes
    ----------
    in_size : (int, int)
        ``(H, W)`` of the input.
    out_size : (int, int)
        ``(OH, OW)`` of the output.
    kernel_size : (int, int)
        ``(kh, kw)``: every window has exactly ``kh * kw`` taps, all inside
        the input.
    """

    in_size: tuple[int, int]
    out_size: tuple[int, int]
    kernel_size: tuple[int, int]

    @property
    def window_size(self) -> int:
        """``K = kh * kw``: taps per window."""
        return self.kernel_size[0] * self.kernel_size[1]


class FractionalSaved(NamedTuple):
    """What a forward pass keeps for its backward (:attr:`PoolState.saved`).

    ``samples`` (N, C, 2) are the ``(u_w, u_h)`` the pass used, in the
    input's dtype; ``indices`` (N*C, OH, OW) int64 the winners' flat
    positions ``ih * W + iw``; both read-only.  ``unbatched`` is True when
    the input was ``(C, H, W)``.
    """

    samples: np.ndarray
    indices: np.ndarray
    unbatched: bool


def _pair_of(value, name, kind, check):
    """``value`` (one item or two) as a pair, each item of ``kind`` passing ``check``."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(isinstance(v, kind) and not isinstance(v, bool) for v in items):
        raise TypeError(
            f"{name} must be a {kind.__name__.lower()} or a pair of them (H, W), got {value!r}"
        )
    if not all(check(v) for v in items):
        return None
    return items


def _output_size(value):
    items = _pair_of(value, "output_size", numbers.Integral, lambda v: 1 <= v <= 2**31 - 1)
    if items is None:
        raise ValueError(f"output_size must be >= 1 (and < 2**31), got {value!r}")
    return tuple(int(v) for v in items)


def _output_ratio(value):
    items = _pair_of(value, "output_ratio", numbers.Real, lambda v: 0 < v < 1)
    if items is None:
        raise ValueError(f"output_ratio must be between 0 and 1 (exclusive), got {value!r}")
    return tuple(float(v) for v in items)


def _samples(value):
    """Fixed samples as a private read-only float array (N, C, 2), each in [0, 1)."""
    arr = np.array(value, copy=True)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"samples must be a float array of shape (N, C, 2), got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 2:
        raise ValueError(
            f"samples must have shape (N, C, 2), one (u_w, u_h) pair per (n, c) plane, "
            f"got shape {arr.shape}"
        )
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    _check_unit(arr, "samples")
    arr.flags.writeable = False
    return arr


def _check_unit(arr, what):
    bad = ~((arr >= 0) & (arr < 1))  # NaN is bad too
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{what} must all be in [0, 1), got {arr[where]!r} at {where} "
            f"({int(bad.sum())} of {arr.size} outside)"
        )


@register
class FractionalMaxPool2d(Pool2d):
    """Fractional max pooling, as ``torch.nn.FractionalMaxPool2d``.

    Graham, "Fractional Max-Pooling", arXiv:1412.6071, 2014.  Windows of a
    fixed ``kh x kw`` size, placed at a random, non-integer average step so
    that the output has any size between ``1`` and ``H - kh + 1``: a
    reduction by a factor such as ``sqrt(2)`` instead of max pooling's 2.

    Parameters
    ----------
    kernel_size : int or (int, int)
        Window size ``(kh, kw)``.
    output_size : int or (int, int), optional
        ``(OH, OW)``, each at least 1 and at most ``H - kh + 1``.
    output_ratio : float or (float, float), optional
        Each in (0, 1): ``OH = int(H * ratio_h)``, ``OW = int(W * ratio_w)``
        for each input.  Give exactly one of ``output_size`` and
        ``output_ratio``.
    return_indices : bool
        When True, ``forward`` returns ``(output, indices)`` as PyTorch's
        does; :attr:`indices` holds them either way.
    rng : None, int, numpy.random.Generator or dict
        The source of the samples (``numpy.random.default_rng(rng)``), as for
        :class:`StochasticPool2d`: the same seed draws the same windows; a
        dict is a bit generator's state (from :meth:`get_config`), so a
        reloaded model continues the stream.
    samples : array_like of shape (N, C, 2), optional
        Fixed samples used by every forward pass instead of drawing: the
        ``_random_samples`` argument of PyTorch (a test can pass PyTorch's
        and compare bit for bit).  ``samples[n, c]`` is ``(u_w, u_h)``, the
        width's sample first, as in PyTorch; each in [0, 1).  The first N
        rows serve a batch of N (PyTorch's rule: at least N rows, exactly C
        columns).  Converted to the input's dtype at each forward.  Assign
        ``layer.samples = None`` to draw again.

    Attributes
    ----------
    indices : ndarray of int64, shape (N, C, OH, OW)
        After a forward pass: the flat index ``ih * W + iw`` of each
        window's winner within its plane (``(C, OH, OW)`` for an unbatched
        input).  Read-only.
    last_samples : ndarray, shape (N, C, 2)
        The samples the last forward pass used (drawn or given), in the
        input's dtype.  Read-only.

    Notes
    -----
    **Windows** (PyTorch's CPU kernel exactly).  Along an axis of input size
    ``L``, output size ``O`` and kernel ``k``, a plane with sample ``u``
    has windows starting at ``int((i + u) * alpha) - int(u * alpha)`` for
    ``i < O - 1``, with ``alpha = (L - k) / (O - 1)``, and the last at
    ``L - k`` (so ``O = 1`` is the window at the end).  The arithmetic is
    in the input's dtype, as PyTorch's.  Consecutive starts differ by
    ``floor(alpha)`` or ``ceil(alpha)``: the pseudo-random overlapping
    pooling of the paper.  Every window lies inside the input: there is no
    padding.

    **Winner** (as PyTorch's fractional kernel, and as :class:`MaxPool2d`):
    the first of equal maxima in row-major window order, a NaN wins (the
    last of several), a window of -inf's reports its first tap.  Backward
    sends each output's gradient to its winner; windows overlap, so an
    element that wins several windows receives the sum.

    **Randomness.**  Each forward pass without fixed :attr:`samples` draws
    ``(N, C, 2)`` uniforms from :attr:`rng` in the input's dtype
    (``rng.random((N, C, 2), dtype=x.dtype)``; the width's sample first),
    one window layout per ``(n, c)`` plane, and keeps them in that pass's
    :class:`~cnnpool.pooling.base.PoolState` for its backward (never on the
    layer).  **Evaluation draws too**, as PyTorch does: the paper averages
    several such passes at test time.  For a repeatable evaluation, fix
    :attr:`samples` or re-seed :attr:`rng` before it.

    Differences from PyTorch: ``output_size`` 0, or an ``output_ratio``
    that rounds an input's size down to 0, raise ``ValueError`` (PyTorch
    returns an empty output); fixed samples of another float dtype are
    converted (PyTorch requires the input's dtype), and values outside
    [0, 1) or NaN are refused (PyTorch takes them: the paper's windows need
    ``u`` in [0, 1), and a NaN makes the integer casts undefined).
    The only tier is the compiled kernel: windows differ per plane, which
    the shared-window ``pool``/``route`` contract cannot express, so
    ``use_fast_path`` cannot be switched off.

    Examples
    --------
    >>> import numpy as np, cnnpool as cp
    >>> x = np.arange(49.0).reshape(1, 1, 7, 7)
    >>> pool = cp.FractionalMaxPool2d(2, output_size=4, samples=[[[0.25, 0.75]]])
    >>> pool(x)[0, 0]
    array([[ 8., 10., 11., 13.],
           [15., 17., 18., 20.],
           [29., 31., 32., 34.],
           [43., 45., 46., 48.]])
    """

    @classmethod
    def for_dims(cls, dims: int) -> type:
        """``FractionalMaxPool2d`` itself for ``dims == 2``; other ranks are refused.

        Its windows are drawn per plane and per axis by its own 2-D kernel,
        not described by a shared :class:`~cnnpool.pooling.geometry.PoolGeometry`,
        so the rank-agnostic tiers cannot run it in 1-D or 3-D (PyTorch's
        ``FractionalMaxPool3d`` has no counterpart here yet).
        """
        if dims == 2 and not isinstance(dims, bool):
            return cls
        raise ValueError(
            f"FractionalMaxPool2d works on 2 spatial axes only, got dims={dims!r}: "
            "there is no 1-D or 3-D fractional max pooling in cnnpool"
        )

    def __init__(
        self,
        kernel_size,
        output_size=None,
        output_ratio=None,
        return_indices=False,
        *,
        rng=None,
        samples=None,
    ):
        super().__init__(kernel_size)
        if (output_size is None) == (output_ratio is None):
            raise ValueError(
                "FractionalMaxPool2d needs exactly one of output_size and output_ratio, got "
                + ("neither" if output_size is None else "both")
            )
        self.output_size = None if output_size is None else _output_size(output_size)
        self.output_ratio = None if output_ratio is None else _output_ratio(output_ratio)
        if not isinstance(return_indices, (bool, np.bool_)):
            raise TypeError(f"return_indices must be a bool, got {return_indices!r}")
        self.return_indices = bool(return_indices)
        # Windows move by a random step: no stride describes them.
        self.stride = None
        self.rng = rng
        self.samples = samples

    # ------------------------------------------------------------ attributes
    @property
    def rng(self):
        """The ``numpy.random.Generator`` the samples come from."""
        return self._rng

    @rng.setter
    def rng(self, value):
        if isinstance(value, dict):
            value = _generator_from_state(value)
        self._rng = np.random.default_rng(value)

    @property
    def samples(self):
        """Fixed ``(N, C, 2)`` samples for every forward pass, or None (draw)."""
        return self._samples

    @samples.setter
    def samples(self, value):
        self._samples = None if value is None else _samples(value)

    @property
    def use_fast_path(self):
        """Always True: the compiled kernel is this layer's only tier."""
        return True

    @use_fast_path.setter
    def use_fast_path(self, value):
        if not value:
            raise ValueError(
                "FractionalMaxPool2d has no NumPy tier: each (n, c) plane has its own "
                "windows, which the shared-window pool/route contract cannot express"
            )

    @property
    def indices(self):
        """Flat index ``ih * W + iw`` of each winner, int64 (N, C, OH, OW), read-only."""
        state = self._state
        if state is None:
            return None
        indices = state.saved.indices.reshape(state.out_shape)
        return indices[0] if state.saved.unbatched else indices

    @property
    def last_samples(self):
        """The ``(N, C, 2)`` samples of the last forward pass, read-only."""
        return None if self._state is None else self._state.saved.samples

    # --------------------------------------------------------------- geometry
    def geometry_for(self, height, width):
        """The :class:`FractionalGeometry` of an input of size ``(height, width)``.

        Raises ``ValueError`` when the output would be empty or the kernel
        does not fit: ``OH + kh - 1 <= H`` is needed (likewise for W).
        """
        key = (int(height), int(width))
        geom = self._geometries.get(key)
        if geom is None:
            if self.output_size is not None:
                out = self.output_size
            else:
                out = tuple(int(s * r) for s, r in zip(key, self.output_ratio))
            for axis, size, o, k in zip(("height", "width"), key, out, self.kernel_size):
                if o < 1:
                    raise ValueError(
                        f"output_ratio {self.output_ratio} gives an output {axis} of 0 for an "
                        f"input of (H, W) = {key}: the input is too small for this ratio"
                    )
                if o + k - 1 > size:
                    raise ValueError(
                        f"FractionalMaxPool2d: an output {axis} of {o} with kernel {axis} {k} "
                        f"needs an input {axis} of at least {o + k - 1} (output + kernel - 1), "
                        f"got an input of (H, W) = {key}"
                    )
            geom = FractionalGeometry(key, tuple(out), self.kernel_size)
            if len(self._geometries) > 32:
                self._geometries.clear()
            self._geometries[key] = geom
        return geom

    def output_shape(self, input_shape):
        """Output shape ``(N, C, OH, OW)`` for ``(N, C, H, W)``, or ``(C, OH, OW)``."""
        shape = tuple(input_shape)
        if len(shape) not in (3, 4):
            raise ValueError(f"input_shape must be (N, C, H, W) or (C, H, W), got {shape}")
        return shape[:-2] + self.geometry_for(*shape[-2:]).out_size

    def gather_windows(self, x, geom=None):
        raise NotImplementedError(
            "FractionalMaxPool2d's windows differ per (n, c) plane: there is no shared "
            "(N, C, OH, OW, K) windows array (see last_samples and indices)"
        )

    def scatter_windows(self, grad_windows, x_shape, geom):
        raise NotImplementedError(
            "FractionalMaxPool2d's windows differ per (n, c) plane: its backward scatters "
            "through indices, not a shared windows array"
        )

    # --------------------------------------------------------- forward/backward
    def forward(self, x):
        """Pool ``x`` (N, C, H, W) or unbatched (C, H, W).

        Returns the output (N, C, OH, OW) or (C, OH, OW); with
        ``return_indices`` the pair ``(output, indices)``.
        """
        unbatched = isinstance(x, np.ndarray) and x.ndim == 3
        if isinstance(x, np.ndarray) and not 3 <= x.ndim <= 4:
            raise ValueError(
                f"x must be (N, C, H, W) or unbatched (C, H, W), got {x.ndim}-D array of "
                f"shape {x.shape}"
            )
        y = super().forward(x[None] if unbatched else x)
        if unbatched:
            state = self._state
            self._state = state._replace(saved=state.saved._replace(unbatched=True))
            y = y[0]
        return (y, self.indices) if self.return_indices else y

    def backward(self, grad_output):
        """Gradient w.r.t. the last forward's input; its shape and dtype.

        ``grad_output`` has the forward output's shape ((C, OH, OW) after an
        unbatched input).
        """
        state = self._state
        if state is None or not state.saved.unbatched:
            return super().backward(grad_output)
        want = state.out_shape[1:]
        if isinstance(grad_output, np.ndarray) and grad_output.shape != want:
            raise ValueError(
                f"grad_output must have the shape of the forward output {want}, got "
                f"{grad_output.shape}"
            )
        if isinstance(grad_output, np.ndarray):
            grad_output = grad_output[None]
        return super().backward(grad_output)[0]

    def _samples_for(self, n, c, dtype):
        if self._samples is None:
            drawn = self._rng.random((n, c, 2), dtype=dtype)
            drawn.flags.writeable = False
            return drawn
        given = self._samples
        if given.shape[0] < n or given.shape[1] != c:
            raise ValueError(
                f"samples of shape {given.shape} do not fit an input of N = {n}, C = {c}: "
                f"they need shape (N', C, 2) with N' >= N"
            )
        used = np.array(given[:n], dtype=dtype, order="C")
        if used.dtype != given.dtype:
            _check_unit(used, f"samples converted to {np.dtype(dtype)}")
        used.flags.writeable = False
        return used

    def forward_kernel(self, x, geom):
        n, c, h, w = x.shape
        oh, ow = geom.out_size
        samples = self._samples_for(n, c, x.dtype)
        out = self._outputs.empty("out", (n * c, oh, ow), x.dtype)
        indices = np.empty((n * c, oh, ow), dtype=np.int64)
        _fractional.forward(
            x.reshape(n * c, h, w),
            samples.reshape(n * c, 2),
            out,
            indices,
            *geom.kernel_size,
            threads_for(n * c, x.size + out.size),
        )
        indices.flags.writeable = False  # backward trusts them: keep them ours
        return out.reshape(n, c, oh, ow), FractionalSaved(samples, indices, False)

    def backward_kernel(self, grad_output, state):
        n, c, h, w = state.x_shape
        indices = state.saved.indices
        grad = grad_output.reshape(indices.shape)
        grad_x = self._outputs.empty("grad_x", (n * c, h, w), grad_output.dtype)
        _fractional.backward(grad, indices, grad_x, threads_for(n * c, grad_x.size + grad.size))
        return grad_x.reshape(state.x_shape)

    # ------------------------------------------------------------------- config
    def extra_repr(self):
        size = (
            f"output_size={self.output_size}"
            if self.output_size is not None
            else f"output_ratio={self.output_ratio}"
        )
        parts = [f"kernel_size={self.kernel_size}", size]
        if self.return_indices:
            parts.append("return_indices=True")
        if self._samples is not None:
            parts.append(f"samples=<{self._samples.shape}>")
        return ", ".join(parts)

    def get_config(self):
        """Constructor arguments, for saved models, with the generator's current state.

        ``rng`` is ``self.rng.bit_generator.state``: a layer rebuilt from this
        dict continues the same stream of draws.  Fixed ``samples`` are
        stored as nested lists of floats (exact for float32 and float64).
        """
        return {
            "kernel_size": list(self.kernel_size),
            "output_size": None if self.output_size is None else list(self.output_size),
            "output_ratio": None if self.output_ratio is None else list(self.output_ratio),
            "return_indices": self.return_indices,
            "rng": self._rng.bit_generator.state,
            "samples": None if self._samples is None else self._samples.tolist(),
        }
