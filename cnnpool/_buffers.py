"""Large output arrays that a layer reuses once its caller has let go of them.

A layer's backward returns a fresh input gradient as large as its input
(16 MiB for a (64, 32, 32, 32) float64 batch).  The C allocator serves an
array that large (above 128 KiB by default) from pages the kernel must map and zero on first touch,
and in a process that also allocates elsewhere (another library, the
rest of a training step) it keeps giving them back and mapping them
again: on this project's benchmark machine that doubled the median time
of a max-pooling forward+backward whose kernels take 3 ms.

:class:`OutputBuffers` keeps the last buffer handed out under each name
and hands it out again only when nothing outside refers to it any more:
no array, view, slice or memoryview of it is alive.  CPython's reference
count says so exactly (every NumPy view of the buffer holds a reference to
it; the count is read on the cache's own pointer, ``_arrays.sole_reference``),
so a result the caller still holds is never overwritten.  The cost is
memory: one buffer per name stays allocated between calls, as a
framework's caching allocator would keep it.

Large buffers are also aligned to 64 bytes (NumPy guarantees 16), which
lets kernels write whole cache lines with streaming stores.
"""

from __future__ import annotations

from math import prod
from typing import Any

import numpy as np

from ._arrays import sole_reference

#: Smaller arrays come straight from ``np.empty``: malloc recycles them cheaply.
#: (Above glibc's 128 KiB mmap threshold it often does not: a training step of
#: the comparison CNN, with 128-512 KiB activations, page-faulted 448 times.)
REUSE_MIN_BYTES = 64 << 10

#: Alignment of the large buffers, a cache line.
ALIGN = 64


def _reusable(cache: dict[str, np.ndarray], name: str, nbytes: int) -> np.ndarray | None:
    if not sole_reference(cache, name):
        return None  # absent, or some array, view or memoryview still uses it
    buf = cache[name]
    return buf if buf.size == nbytes + ALIGN else None


class OutputBuffers:
    """Named output arrays, reused when the previous one is no longer referenced.

    Not thread-safe: one instance belongs to one layer, which is used by one
    thread at a time (see the thread-safety notes of :class:`~cnnpool.Pool2d`).
    """

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}

    def empty(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape`` and ``dtype``.

        At least :data:`REUSE_MIN_BYTES` large, it is 64-byte aligned and
        may share memory with an earlier result of the same ``name`` that
        nobody refers to any more; smaller, it is a plain ``np.empty``.
        """
        if not isinstance(dtype, np.dtype):
            dtype = np.dtype(dtype)
        nbytes = prod(shape) * dtype.itemsize  # math.prod: np.prod costs ~30x more
        if nbytes < REUSE_MIN_BYTES:
            return np.empty(shape, dtype)
        buf = _reusable(self._cache, name, nbytes)
        if buf is None:
            buf = self._cache[name] = np.empty(nbytes + ALIGN, np.uint8)
        start = -buf.ctypes.data % ALIGN
        return buf[start : start + nbytes].view(dtype).reshape(shape)

    def clear(self) -> None:
        """Drop the cached buffers (arrays already handed out stay valid)."""
        self._cache.clear()
