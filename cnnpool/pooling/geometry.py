"""Pooling geometry in 1, 2 or 3 spatial dimensions: output size, ceil-mode
clamp, padding forms, and where every window tap lands.

Everything here is plain integer arithmetic on the *shape* of the input,
never on its values, so it is cheap, cached per input size by
:class:`~cnnpool.pooling.base.Pool2d`, and testable on huge shapes without
allocating them.  Each spatial axis is independent (an :class:`AxisTaps`
per axis); the N-d tables (:attr:`PoolGeometry.taps` and friends) are
their outer products, taps in row-major window order.

Conventions (those of PyTorch, so that the numbers agree), along one axis
of input size ``L`` with padding ``pb`` before and ``pa`` after:

* Output size::

      out = floor_or_ceil((L + pb + pa - d*(k - 1) - 1) / s) + 1

  and, in ``ceil_mode``, the last window must *start* inside the input or
  its leading padding: if ``(out - 1) * s >= L + pb``, drop it (PyTorch's
  ``pooling_output_shape_pad_lr``).
* A window's taps along the axis are at ``o*s - pb + i*d`` for
  ``i = 0 .. k-1``.  A tap is *inside* when it hits the input, and *in the
  padded region* when it is below ``L + pa`` (taps past that can only appear
  in ``ceil_mode``; PyTorch's mean counts them out of the divisor even with
  ``count_include_pad``).

Padding forms (:func:`parse_padding`), for ``n`` spatial axes:

* an int, or ``n`` ints: the same padding before and after each axis
  (PyTorch's form; at most half the kernel, PyTorch's rule);
* ``2n`` ints: ``(before, after)`` per axis, in axis order -- for 2-D
  ``(top, bottom, left, right)`` (ONNX's ``pads`` hold all the befores,
  then all the afters; ``torch.nn.functional.pad`` lists the *last* axis
  first: neither is this order).  Each side may be up to the dilated kernel
  extent minus one, as in ONNX;
* ``"valid"``: no padding; ``"same"``: ONNX's ``auto_pad="SAME_UPPER"``,
  output ``ceil(L / s)`` with the odd extra pad at the end; ``"same_lower"``:
  ``SAME_LOWER``, the extra pad at the start.  Resolved per input size.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

_Intp = npt.NDArray[np.intp]

#: The largest kernel size, stride, padding or dilation accepted (int32 range).
MAX_GEOMETRY = 2**31 - 1

#: The string forms of ``padding``.
PADDING_MODES = ("valid", "same", "same_lower")

_AXIS_NAMES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}
_SHAPE_NAMES = {1: "(L,)", 2: "(H, W)", 3: "(D, H, W)"}
_PAD_ORDER = {
    1: "(before, after)",
    2: "(top, bottom, left, right)",
    3: "(front, back, top, bottom, left, right)",
}


def axis_names(n: int) -> tuple[str, ...]:
    """Names of the ``n`` spatial axes, for messages (``("height", "width")``)."""
    return _AXIS_NAMES.get(n, tuple(f"axis {i}" for i in range(n)))


def shape_name(n: int) -> str:
    """How the spatial size of ``n`` axes is spelled in messages (``"(H, W)"``)."""
    return _SHAPE_NAMES.get(n, f"({n} spatial sizes)")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def spatial_tuple(value: Any, name: str, n: int, *, minimum: int = 1) -> tuple[int, ...]:
    """``value`` as ``n`` Python ints (one per spatial axis), each in ``[minimum, 2**31)``.

    An int stands for the same value on every axis.
    """
    if _is_int(value):
        items = (int(value),) * n
    elif isinstance(value, (tuple, list)) and len(value) == n and all(map(_is_int, value)):
        items = tuple(int(v) for v in value)
    else:
        axes = ", ".join(axis_names(n))
        raise TypeError(
            f"{name} must be an int or {n} ints (one per spatial axis: {axes}), got {value!r}"
        )
    if min(items) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if max(items) > MAX_GEOMETRY:
        raise ValueError(f"{name} must be at most 2**31 - 1, got {value!r}")
    return items


def parse_padding(
    value: Any, n: int, kernel_size: Sequence[int], dilation: Sequence[int]
) -> str | tuple[int, ...]:
    """Validate a pooling layer's ``padding`` and return its normal form.

    Returns a mode string (``"valid"``, ``"same"``, ``"same_lower"``), ``n``
    ints (the same padding on both sides of each axis) or ``2n`` ints
    (``(before, after)`` per axis).  See the module notes for the rules.
    """
    per_axis = f"{n} ints (one per axis, both sides), " if n > 1 else ""
    form = (
        f"an int, {per_axis}{2 * n} ints "
        f"{_PAD_ORDER.get(n, '(before, after) per axis')}, or one of "
        f"{', '.join(repr(m) for m in PADDING_MODES)}"
    )
    if isinstance(value, str):
        if value.lower() not in PADDING_MODES:
            raise ValueError(f"padding must be {form}; got the string {value!r}")
        return value.lower()
    if _is_int(value):
        items: tuple[int, ...] = (int(value),) * n
    elif isinstance(value, (tuple, list)) and len(value) in (n, 2 * n) and all(map(_is_int, value)):
        items = tuple(int(v) for v in value)
    else:
        got = f"{len(value)} items {value!r}" if isinstance(value, (tuple, list)) else repr(value)
        raise TypeError(f"padding must be {form}; got {got}")
    if min(items) < 0:
        raise ValueError(f"padding must be >= 0, got {value!r}")
    if len(items) == n:
        for axis, k, p in zip(axis_names(n), kernel_size, items):
            if p > k // 2:
                raise ValueError(
                    f"padding must be at most half the kernel size (PyTorch's rule), got "
                    f"padding={items} for kernel_size={tuple(kernel_size)} (the {axis} "
                    f"axis pads {p} on each side of a kernel of {k}); pad one side only "
                    f"with the {2 * n}-int form {_PAD_ORDER.get(n, '')}, or 'same'"
                )
        return items
    for i, (axis, k, d) in enumerate(zip(axis_names(n), kernel_size, dilation)):
        extent = d * (k - 1) + 1
        for side, p in zip(("before", "after"), items[2 * i : 2 * i + 2]):
            if p >= extent:
                raise ValueError(
                    f"padding {side} the {axis} axis is {p}, but a window spans only "
                    f"{extent} element(s) there (kernel_size={tuple(kernel_size)}, "
                    f"dilation={tuple(dilation)}): a window could lie wholly in the "
                    f"padding; got padding={value!r} {_PAD_ORDER.get(n, '')}"
                )
    return items


def resolve_padding(
    padding: str | Sequence[int],
    in_size: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> tuple[tuple[int, int], ...]:
    """``(before, after)`` per axis for an input of spatial size ``in_size``.

    ``padding`` is in the normal form of :func:`parse_padding`.  The string
    modes follow ONNX's ``auto_pad``: ``"same"`` pads ``ceil(L / s)``
    windows' worth with the odd element at the end (``SAME_UPPER``),
    ``"same_lower"`` at the start, ``"valid"`` not at all.
    """
    n = len(in_size)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        pads = []
        for size, k, s, d in zip(in_size, kernel_size, stride, dilation):
            out = -(-size // s)
            total = max(0, (out - 1) * s + d * (k - 1) + 1 - size)
            small, large = total // 2, total - total // 2
            pads.append((small, large) if padding == "same" else (large, small))
        return tuple(pads)
    if len(padding) == n:
        return tuple((p, p) for p in padding)
    return tuple((padding[2 * i], padding[2 * i + 1]) for i in range(n))


def output_size(
    size: int,
    kernel: int,
    stride: int,
    padding: int,
    dilation: int,
    ceil_mode: bool,
    padding_after: int | None = None,
) -> int:
    """Number of windows along one axis, by PyTorch's rule (may be < 1).

    ``padding`` pads before the input, and after it too unless
    ``padding_after`` is given.
    """
    after = padding if padding_after is None else padding_after
    span = dilation * (kernel - 1) + 1
    numerator = size + padding + after - span + (stride - 1 if ceil_mode else 0)
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
    size: int,
    out: int,
    kernel: int,
    stride: int,
    padding: int,
    dilation: int,
    padding_after: int | None = None,
) -> AxisTaps:
    """Compute :class:`AxisTaps` for one axis (``padding`` before, ``padding_after`` after)."""
    after = padding if padding_after is None else padding_after
    starts = np.arange(out, dtype=np.intp) * stride - padding
    positions = starts[:, None] + np.arange(kernel, dtype=np.intp) * dilation
    inside = (positions >= 0) & (positions < size)
    count_inside = inside.sum(axis=1).astype(np.intp)
    # Taps never fall before the leading padding (windows start there), so
    # "in the padded region" only cuts the end: below L + padding_after.
    count_padded = (positions < size + after).sum(axis=1).astype(np.intp)
    lo = np.argmax(inside, axis=1).astype(np.intp)
    lo[count_inside == 0] = 0
    hi = lo + count_inside
    return AxisTaps(positions, lo, hi, count_inside, count_padded)


def _trivial_axis() -> AxisTaps:
    """The taps of a unit axis (size 1, one window of one tap): how 1-D runs as 2-D."""
    one = np.ones(1, dtype=np.intp)
    zero = np.zeros(1, dtype=np.intp)
    return AxisTaps(zero.reshape(1, 1), zero, one, one, one)


def _outer(per_axis: Sequence[np.ndarray], op: Any) -> np.ndarray:
    """``op``-combine one ``(O_a, K_a)`` array per axis into ``(O_1..O_n, K_1..K_n)``."""
    n = len(per_axis)
    result = None
    for a, arr in enumerate(per_axis):
        shape = [1] * (2 * n)
        shape[a], shape[n + a] = arr.shape
        term = arr.reshape(shape)
        result = term if result is None else op(result, term)
    assert result is not None
    return result


@dataclass(frozen=True)
class PoolGeometry:
    """The complete geometry of one pooling layer on one input size.

    Built by :meth:`Pool2d.geometry_for`; strategies may read it as
    ``self.geometry`` inside ``pool`` and ``route``.  ``n`` below is the
    number of spatial axes (1, 2 or 3).

    Attributes
    ----------
    in_size : tuple of n ints
        Spatial size of the input: ``(L,)``, ``(H, W)`` or ``(D, H, W)``.
    out_size : tuple of n ints
        Spatial size of the output.
    kernel_size, stride, dilation : tuple of n ints
        The layer's configuration, one per axis.
    pads : tuple of n (int, int)
        Padding ``(before, after)`` per axis, string modes resolved for
        this input size.
    axes : tuple of n AxisTaps
        Tap positions along each axis.
    """

    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    axes: tuple[AxisTaps, ...]

    @cached_property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.in_size)

    @property
    def padding(self) -> tuple[int, ...]:
        """The padding as a layer spells it: ``n`` ints when every axis pads
        both sides alike, else ``2n`` ints ``(before, after)`` per axis."""
        if all(b == a for b, a in self.pads):
            return tuple(b for b, _ in self.pads)
        return tuple(p for pair in self.pads for p in pair)

    @property
    def rows(self) -> AxisTaps:
        """Taps along the second-to-last axis (H; a unit axis for 1-D)."""
        return self._axes2d[0]

    @property
    def cols(self) -> AxisTaps:
        """Taps along the last axis (W, or L for 1-D)."""
        return self.axes[-1]

    @property
    def window_size(self) -> int:
        """``K``: taps per window (``kh * kw`` in 2-D), the last axis of the windows array."""
        return math.prod(self.kernel_size)

    @property
    def plane_size(self) -> int:
        """Elements in one spatial plane of the input (``H * W`` in 2-D)."""
        return math.prod(self.in_size)

    def _strides(self) -> list[int]:
        """Flat-index step of each spatial axis in a C-ordered plane."""
        steps = [1] * self.ndim
        for a in range(self.ndim - 2, -1, -1):
            steps[a] = steps[a + 1] * self.in_size[a + 1]
        return steps

    @cached_property
    def taps(self) -> _Intp:
        """Flat index in the plane of every tap (``ih * W + iw`` in 2-D), -1 where it
        misses the input.

        Shape ``(*out_size, K)``, dtype intp, taps in row-major window order.
        """
        flat = _outer([ax.positions * step for ax, step in zip(self.axes, self._strides())], np.add)
        hit = _outer(
            [
                (ax.positions >= 0) & (ax.positions < size)
                for ax, size in zip(self.axes, self.in_size)
            ],
            np.logical_and,
        )
        flat = np.where(hit, flat, -1)
        return flat.reshape(self.out_size + (self.window_size,))

    def flat_index(self, tap: np.ndarray) -> np.ndarray:
        """Flat input index (``ih * W + iw`` in 2-D) of tap number ``tap[..., *out]``.

        ``tap`` has shape ``(..., *out_size)`` (a tap number per window, such
        as a max winner, any integer dtype) and must name a tap that hits
        the input; returns a read-only int64 array of the same shape.

        Arithmetic on the window origins, not a lookup in :attr:`taps`: that
        table has ``prod(out_size) * K`` entries, too many to build for a
        large input just to report its winners.
        """
        tap = np.asarray(tap)
        steps = self._strides()
        if self.window_size <= 65536:
            offsets = _outer(
                [
                    (np.arange(k, dtype=np.int64) * d * step)[None, :]
                    for k, d, step in zip(self.kernel_size, self.dilation, steps)
                ],
                np.add,
            )
            within = offsets.reshape(-1)[tap]
        else:  # a table per tap would be large: divide instead
            rest = tap.astype(np.int64)
            within = np.zeros(rest.shape, dtype=np.int64)
            for k, d, step in reversed(list(zip(self.kernel_size, self.dilation, steps))):
                rest, i = np.divmod(rest, k)
                within += i * (d * step)
        origin = _outer(
            [ax.positions[:, :1].astype(np.int64) * step for ax, step in zip(self.axes, steps)],
            np.add,
        ).reshape(self.out_size)
        out = within + origin
        out.flags.writeable = False
        return out

    @cached_property
    def inside(self) -> npt.NDArray[np.bool_]:
        """Boolean ``(*out_size, K)``: True where a tap hits the input."""
        return self.taps >= 0

    @cached_property
    def in_padded(self) -> npt.NDArray[np.bool_]:
        """Boolean ``(*out_size, K)``: True where a tap hits the input or its padding."""
        below = [
            ax.positions < size + after
            for ax, size, (_, after) in zip(self.axes, self.in_size, self.pads)
        ]
        return _outer(below, np.logical_and).reshape(self.out_size + (self.window_size,))

    def counts(self, include_pad: bool) -> _Intp:
        """Taps per window that count for a mean, shape ``out_size``, intp.

        ``include_pad=True`` counts taps in the input or its padding (the
        PyTorch ``count_include_pad`` rule, which leaves out the overhang that
        only ``ceil_mode`` creates past the trailing padding); ``False``
        counts only taps in the input.
        """
        per_axis = [
            (ax.count_padded if include_pad else ax.count_inside)[:, None] for ax in self.axes
        ]
        return _outer(per_axis, np.multiply).reshape(self.out_size).astype(np.intp)

    # ------------------------------------------------- compiled 2-D kernels
    # The 2-D compiled kernels (max, mean, stochastic, mixed) take an (H, W)
    # plane; 1-D runs on them as a (1, L) plane, with a unit leading axis.
    @cached_property
    def _axes2d(self) -> tuple[AxisTaps, AxisTaps]:
        if self.ndim == 2:
            return (self.axes[0], self.axes[1])
        if self.ndim == 1:
            return (_trivial_axis(), self.axes[0])
        raise ValueError(
            f"a {self.ndim}-D geometry has no 2-D kernel arguments (the 2-D kernels "
            f"run 1-D and 2-D pooling only)"
        )

    def _pair(self, values: tuple[int, ...]) -> tuple[int, int]:
        return (1, values[0]) if self.ndim == 1 else (values[-2], values[-1])

    @cached_property
    def plane2d(self) -> tuple[int, int]:
        """``(H, W)`` of the input plane as the 2-D kernels see it (``(1, L)`` in 1-D)."""
        self._axes2d  # noqa: B018  (refuses 3-D)
        return self._pair(self.in_size)

    @cached_property
    def out2d(self) -> tuple[int, int]:
        """``(OH, OW)`` of the output plane as the 2-D kernels see it (``(1, OL)`` in 1-D)."""
        self._axes2d  # noqa: B018
        return self._pair(self.out_size)

    @cached_property
    def axis_ranges(self) -> tuple[tuple[_Intp, _Intp, _Intp], ...]:
        """``(start, lo, hi)`` per axis: the input taps of output ``o`` along the
        axis are ``start[o] + i * dilation`` for ``i`` in ``[lo[o], hi[o])``.

        Contiguous intp arrays of length ``out_size[axis]`` each: what the
        compiled 3-D kernels take, axis by axis.
        """
        return tuple((np.ascontiguousarray(ax.positions[:, 0]), ax.lo, ax.hi) for ax in self.axes)

    @cached_property
    def ranges(self) -> tuple[_Intp, _Intp, _Intp, _Intp, _Intp, _Intp, int, int]:
        """Arguments of the compiled 2-D kernels that describe every window.

        ``(row_start, row_lo, row_hi, col_start, col_lo, col_hi, dil_h, dil_w)``:
        the input taps of output ``(oh, ow)`` are rows
        ``row_start[oh] + i * dil_h`` for ``i`` in ``[row_lo[oh], row_hi[oh])``
        and likewise for columns.  1-D and 2-D geometries only (1-D as a
        ``(1, L)`` plane).
        """
        r, c = self._axes2d
        dil = self._pair(self.dilation)
        return (
            np.ascontiguousarray(r.positions[:, 0]),
            r.lo,
            r.hi,
            np.ascontiguousarray(c.positions[:, 0]),
            c.lo,
            c.hi,
            dil[0],
            dil[1],
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
        arguments of every compiled 2-D max/mean kernel, in their order, built
        once per geometry (1-D: as a ``(1, L)`` plane)."""
        return (
            (self.windows,)
            + self.ranges[6:]
            + self._pair(self.kernel_size)
            + self._pair(self.stride)
        )


def make_geometry(
    in_size: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int] | Sequence[tuple[int, int]],
    dilation: Sequence[int],
    ceil_mode: bool,
) -> PoolGeometry:
    """Build and validate the :class:`PoolGeometry` of one input size.

    ``in_size``, ``kernel_size``, ``stride`` and ``dilation`` hold one int
    per spatial axis (1, 2 or 3 of them); ``padding`` one int per axis (both
    sides) or one ``(before, after)`` pair per axis.

    Raises
    ------
    ValueError
        If the output would be empty (window larger than the padded input),
        or if some window holds no input element at all (possible with
        dilation and padding): such a window has no maximum and no mean,
        and a peer library indexes outside the input there.
    """
    n = len(in_size)
    in_size = tuple(int(v) for v in in_size)
    pads = tuple(
        (int(p[0]), int(p[1])) if isinstance(p, (tuple, list)) else (int(p), int(p))
        for p in padding
    )
    config = (
        f"kernel_size={tuple(kernel_size)}, stride={tuple(stride)}, "
        f"padding={_shown(pads)}, dilation={tuple(dilation)}"
    )
    outs = []
    for axis, size, k, s, (pb, pa), d in zip(
        axis_names(n), in_size, kernel_size, stride, pads, dilation
    ):
        out = output_size(size, k, s, pb, d, ceil_mode, pa)
        if out < 1:
            raise ValueError(
                f"pooling window ({config}) is larger than the padded input: input "
                f"{axis} {size} gives output {axis} {out}; input {shape_name(n)} = {in_size}"
            )
        outs.append(out)
    axes = tuple(
        axis_taps(size, out, k, s, pb, d, pa)
        for size, out, k, s, (pb, pa), d in zip(in_size, outs, kernel_size, stride, pads, dilation)
    )
    for axis, taps in zip(axis_names(n), axes):
        empty = np.flatnonzero(taps.count_inside == 0)
        if empty.size:
            raise ValueError(
                f"windows {empty.tolist()[:5]} along the {axis} axis hold no input element "
                f"for input {shape_name(n)} = {in_size} with {config}: every tap falls in "
                f"the padding or between dilated taps. Use less padding or dilation."
            )
    return PoolGeometry(
        in_size,
        tuple(outs),
        tuple(int(v) for v in kernel_size),
        tuple(int(v) for v in stride),
        pads,
        tuple(int(v) for v in dilation),
        axes,
    )


def _shown(pads: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
    """Padding pairs as the layer spells them (``n`` or ``2n`` ints)."""
    if all(b == a for b, a in pads):
        return tuple(b for b, _ in pads)
    return tuple(p for pair in pads for p in pair)
