"""Pooling geometry: output size, ceil-mode clamp, and where every window tap lands.

Everything here is plain integer arithmetic on the *shape* of the input,
never on its values, so it is cheap, cached per input size by
:class:`~cnnpool.pooling.base.Pool2d`, and testable on huge shapes without
allocating them.

Conventions (those of PyTorch, so that the numbers agree):

* Output size along one axis of input size ``L``::

      out = floor_or_ceil((L + 2*p - d*(k - 1) - 1) / s) + 1

  and, in ``ceil_mode``, the last window must *start* inside the input or
  its left padding: if ``(out - 1) * s >= L + p``, drop it.
* A window's taps along the axis are at ``o*s - p + i*d`` for
  ``i = 0 .. k-1``.  A tap is *inside* when it hits the input, and *in the
  padded region* when it is below ``L + p`` (taps past that can only appear
  in ``ceil_mode``; PyTorch's mean counts them out of the divisor even with
  ``count_include_pad``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

_Intp = npt.NDArray[np.intp]


def output_size(
    size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool
) -> int:
    """Number of windows along one axis, by PyTorch's rule (may be < 1)."""
    span = dilation * (kernel - 1) + 1
    numerator = size + 2 * padding - span + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1  # floor division rounds toward -inf, as div_rtn
    if ceil_mode and out > 0 and (out - 1) * stride >= size + padding:
        out -= 1
    return out


@dataclass(frozen=True)
class AxisTaps:
    """Where the taps of every window fall along one axis.

    Attributes
    ----------
    positions : ndarray of intp, shape (out, kernel)
        Input coordinate of each tap (may be negative or >= size).
    lo, hi : ndarray of intp, shape (out,)
        Tap numbers ``i`` in ``[lo, hi)`` are inside the input.  Taps are
        monotonic in ``i``, so the inside ones are always one run.
    count_inside, count_padded : ndarray of intp, shape (out,)
        How many taps hit the input, and the input or its padding.
    """

    positions: _Intp
    lo: _Intp
    hi: _Intp
    count_inside: _Intp
    count_padded: _Intp


def axis_taps(
    size: int, out: int, kernel: int, stride: int, padding: int, dilation: int
) -> AxisTaps:
    """Compute :class:`AxisTaps` for one axis."""
    starts = np.arange(out, dtype=np.intp) * stride - padding
    positions = starts[:, None] + np.arange(kernel, dtype=np.intp) * dilation
    inside = (positions >= 0) & (positions < size)
    count_inside = inside.sum(axis=1).astype(np.intp)
    # Taps below 0 are always within the left padding (padding <= kernel // 2
    # is enforced), so "in the padded region" only cuts the right side.
    count_padded = (positions < size + padding).sum(axis=1).astype(np.intp)
    lo = np.argmax(inside, axis=1).astype(np.intp)
    lo[count_inside == 0] = 0
    hi = lo + count_inside
    return AxisTaps(positions, lo, hi, count_inside, count_padded)


@dataclass(frozen=True)
class PoolGeometry:
    """The complete geometry of one pooling layer on one input size.

    Built by :meth:`Pool2d.geometry_for`; strategies may read it as
    ``self.geometry`` inside ``pool`` and ``route``.

    Attributes
    ----------
    in_size : (int, int)
        ``(H, W)`` of the input.
    out_size : (int, int)
        ``(OH, OW)`` of the output.
    kernel_size, stride, padding, dilation : (int, int)
        The layer's configuration, as pairs.
    rows, cols : AxisTaps
        Tap positions along H and along W.
    """

    in_size: tuple[int, int]
    out_size: tuple[int, int]
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    rows: AxisTaps
    cols: AxisTaps

    @property
    def window_size(self) -> int:
        """``K = kh * kw``: taps per window, the last axis of the windows array."""
        return self.kernel_size[0] * self.kernel_size[1]

    @cached_property
    def taps(self) -> _Intp:
        """Flat index ``ih * W + iw`` of every tap, -1 where it misses the input.

        Shape ``(OH, OW, K)``, dtype intp, taps in row-major window order.
        """
        W = self.in_size[1]
        r, c = self.rows.positions, self.cols.positions
        flat = r[:, None, :, None] * W + c[None, :, None, :]
        hit = ((r >= 0) & (r < self.in_size[0]))[:, None, :, None] & ((c >= 0) & (c < W))[
            None, :, None, :
        ]
        flat = np.where(hit, flat, -1)
        return flat.reshape(self.out_size + (self.window_size,))

    def flat_index(self, tap: np.ndarray) -> np.ndarray:
        """Flat input index ``ih * W + iw`` of tap number ``tap[..., oh, ow]``.

        ``tap`` has shape ``(..., OH, OW)`` (a tap number per window, such as a
        max winner, any integer dtype) and must name a tap that hits the
        input; returns a read-only int64 array of the same shape.

        Arithmetic on the window origins, not a lookup in :attr:`taps`: that
        table has ``OH * OW * K`` entries, too many to build for a large
        input just to report its winners.
        """
        tap = np.asarray(tap)
        W = self.in_size[1]
        kw = self.kernel_size[1]
        row_step = self.dilation[0] * W
        if self.window_size <= 65536:
            k = np.arange(self.window_size, dtype=np.int64)
            within = ((k // kw) * row_step + (k % kw) * self.dilation[1])[tap]
        else:  # a table per tap would be large: divide instead
            i, j = np.divmod(tap.astype(np.int64), kw)
            within = i * row_step + j * self.dilation[1]
        origin = self.rows.positions[:, :1].astype(np.int64) * W + self.cols.positions[:, 0]
        out = within + origin
        out.flags.writeable = False
        return out

    @cached_property
    def inside(self) -> npt.NDArray[np.bool_]:
        """Boolean ``(OH, OW, K)``: True where a tap hits the input."""
        return self.taps >= 0

    @cached_property
    def in_padded(self) -> npt.NDArray[np.bool_]:
        """Boolean ``(OH, OW, K)``: True where a tap hits the input or its padding."""
        pad_h, pad_w = self.padding
        r = self.rows.positions < self.in_size[0] + pad_h
        c = self.cols.positions < self.in_size[1] + pad_w
        both = r[:, None, :, None] & c[None, :, None, :]
        return both.reshape(self.out_size + (self.window_size,))

    @cached_property
    def ranges(self) -> tuple[_Intp, _Intp, _Intp, _Intp, _Intp, _Intp, int, int]:
        """Arguments of the compiled kernels that describe every window.

        ``(row_start, row_lo, row_hi, col_start, col_lo, col_hi, dil_h, dil_w)``:
        the input taps of output ``(oh, ow)`` are rows
        ``row_start[oh] + i * dil_h`` for ``i`` in ``[row_lo[oh], row_hi[oh])``
        and likewise for columns.
        """
        r, c = self.rows, self.cols
        return (
            np.ascontiguousarray(r.positions[:, 0]),
            r.lo,
            r.hi,
            np.ascontiguousarray(c.positions[:, 0]),
            c.lo,
            c.hi,
            self.dilation[0],
            self.dilation[1],
        )

    @cached_property
    def windows(self) -> _Intp:
        """The six window arrays of :attr:`ranges` end to end, shape ``(3*OH + 3*OW,)``.

        What the compiled max/mean kernels take: one array to hand over
        per call instead of six.
        """
        return np.concatenate(self.ranges[:6]).astype(np.intp, copy=False)

    @cached_property
    def kernel_args(self) -> tuple[Any, ...]:
        """``(windows, dil_h, dil_w) + kernel_size + stride``: the geometry
        arguments of every compiled max/mean kernel, in their order, built
        once per geometry."""
        return (self.windows,) + self.ranges[6:] + self.kernel_size + self.stride

    def counts(self, include_pad: bool) -> _Intp:
        """Taps per window that count for a mean, shape ``(OH, OW)``, intp.

        ``include_pad=True`` counts taps in the input or its padding (the
        PyTorch ``count_include_pad`` rule, which leaves out the overhang that
        only ``ceil_mode`` creates); ``False`` counts only taps in the input.
        """
        if include_pad:
            return np.outer(self.rows.count_padded, self.cols.count_padded)
        return np.outer(self.rows.count_inside, self.cols.count_inside)


def make_geometry(
    in_size: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
) -> PoolGeometry:
    """Build and validate the :class:`PoolGeometry` of one input size.

    Raises
    ------
    ValueError
        If the output would be empty (window larger than the padded input),
        or if some window holds no input element at all (possible with
        dilation and padding): such a window has no maximum and no mean,
        and a peer library indexes outside the input there.
    """
    outs = []
    for axis, size, k, s, p, d in zip(
        ("height", "width"), in_size, kernel_size, stride, padding, dilation
    ):
        out = output_size(size, k, s, p, d, ceil_mode)
        if out < 1:
            raise ValueError(
                f"pooling window (kernel_size={tuple(kernel_size)}, "
                f"dilation={tuple(dilation)}, padding={tuple(padding)}) is larger than "
                f"the padded input: input {axis} {size} gives output {axis} {out}; "
                f"input (H, W) = {tuple(in_size)}"
            )
        outs.append(out)
    rows = axis_taps(in_size[0], outs[0], kernel_size[0], stride[0], padding[0], dilation[0])
    cols = axis_taps(in_size[1], outs[1], kernel_size[1], stride[1], padding[1], dilation[1])
    for axis, taps in (("rows", rows), ("columns", cols)):
        empty = np.flatnonzero(taps.count_inside == 0)
        if empty.size:
            raise ValueError(
                f"window {axis} {empty.tolist()[:5]} hold no input element for input "
                f"(H, W) = {tuple(in_size)} with kernel_size={tuple(kernel_size)}, "
                f"stride={tuple(stride)}, padding={tuple(padding)}, "
                f"dilation={tuple(dilation)}: every tap falls in the padding or "
                f"between dilated taps. Use less padding or dilation."
            )
    return PoolGeometry(
        _two(in_size),
        (outs[0], outs[1]),
        _two(kernel_size),
        _two(stride),
        _two(padding),
        _two(dilation),
        rows,
        cols,
    )


def _two(pair: Sequence[int]) -> tuple[int, int]:
    """A pair given as any two-item sequence, as a tuple."""
    return (pair[0], pair[1])
