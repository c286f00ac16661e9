"""Argument and array validation shared by every layer.

Every public layer validates here, in Python, before it enters a compiled
kernel that runs with bounds checks off.  One message style throughout:
the argument is named, and so are the shapes or values that were wrong.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import numpy.typing as npt

#: The floating dtypes the compiled kernels are built for.
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


#: Largest kernel size, stride, padding or dilation: products of two of them
#: stay far inside the compiled kernels' 64-bit ``Py_ssize_t`` arithmetic.
MAX_GEOMETRY = 2**31 - 1


def pair(value: Any, name: str, *, minimum: int = 1) -> tuple[int, int]:
    """Return ``value`` as a pair of Python ints, each in ``[minimum, MAX_GEOMETRY]``.

    Parameters
    ----------
    value : int or tuple of two ints
        What the user passed (``3`` or ``(3, 2)``).
    name : str
        The argument's name, used in the error message.
    minimum : int
        The smallest allowed value.

    Returns
    -------
    tuple of (int, int)
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        items = (int(value), int(value))
    elif (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)
    ):
        items = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(items) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if max(items) > MAX_GEOMETRY:
        raise ValueError(f"{name} must be at most 2**31 - 1, got {value!r}")
    return items


def positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as a Python int, checking type and lower bound."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def float_dtype(dtype: npt.DTypeLike, name: str = "dtype") -> np.dtype[Any]:
    """Return ``dtype`` as a NumPy dtype, which must be float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dt}")
    return dt


def refuse_masked(x: Any, name: str) -> None:
    """Raise ``TypeError`` for a masked array: every layer would ignore its mask."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a masked array (shape {x.shape}); cnnpool would silently ignore "
            f"its mask: pass {name}.filled(value) with the value masked elements should take"
        )


def as_float_array(
    x: Any, name: str, ndim: int | None = None, *, layout: str = "NCHW"
) -> npt.NDArray[np.floating[Any]]:
    """Validate ``x`` and return it as a C-contiguous float32/float64 array.

    A non-contiguous, Fortran-ordered, negative-stride or read-only input is
    accepted (copied when needed); its values are never modified.

    Parameters
    ----------
    x : array_like
        The input.  Must already be float32 or float64: integer, bool,
        complex and object arrays are refused rather than silently cast,
        because a silent cast would hide a bug in the caller; so are masked
        arrays, whose mask would be ignored.
    name : str
        The argument's name, for error messages.
    ndim : int, optional
        The required number of dimensions.
    layout : str
        How the dimensions are read, used in the message (``"NCHW"``).

    Returns
    -------
    numpy.ndarray
        C-contiguous, float32 or float64.
    """
    if type(x) is not np.ndarray:
        refuse_masked(x, name)
    if not isinstance(x, np.ndarray):
        if isinstance(x, (list, tuple)):
            x = np.asarray(x)
            if x.dtype.kind in "iu" or x.dtype == bool:
                raise TypeError(
                    f"{name} must be a float32 or float64 array, got a sequence "
                    f"of {x.dtype} values; convert it with np.asarray(..., "
                    f"dtype=np.float32) first"
                )
        else:
            raise TypeError(f"{name} must be a NumPy array, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {x.dtype} (shape {x.shape})")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(
            f"{name} must be {ndim}-D ({layout}), got {x.ndim}-D array of shape {x.shape}"
        )
    return np.ascontiguousarray(x)


#: From this size on, :func:`owned` copies into a reused buffer: fresh memory
#: that large is mapped and zeroed by the kernel on every call, while below it
#: ``malloc`` recycles freed blocks and the buffer bookkeeping would cost more.
REUSE_COPY_BYTES = 1 << 20


def owned(x: np.ndarray, original: Any, buffers: Any = None) -> np.ndarray:
    """``x``, or a copy of it when it shares memory with the caller's ``original``.

    For what a layer keeps for its backward pass: the caller may edit its
    input in place after the forward pass (PyTorch detects that and
    raises; a copy makes it harmless).  ``x`` is what
    :func:`as_float_array` returned for ``original``: when that already
    had to copy, no second copy is made.  With ``buffers`` (the layer's
    :class:`~cnnpool._buffers.OutputBuffers`) a copy of :data:`REUSE_COPY_BYTES`
    or more reuses the memory of the previous one once nothing refers to it.
    """
    if not (isinstance(original, np.ndarray) and np.may_share_memory(x, original)):
        return x
    if buffers is None or x.nbytes < REUSE_COPY_BYTES:
        return x.copy()
    copy: np.ndarray = buffers.empty("saved_input", x.shape, x.dtype)
    np.copyto(copy, x)
    return copy


def grad_like(
    grad: Any, expected_shape: tuple[int, ...], dtype: npt.DTypeLike, name: str = "grad_output"
) -> npt.NDArray[np.floating[Any]]:
    """Validate an incoming gradient against the saved output shape and dtype."""
    if type(grad) is not np.ndarray:
        refuse_masked(grad, name)
    if not isinstance(grad, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(grad).__name__}")
    if grad.shape != tuple(expected_shape):
        raise ValueError(
            f"{name} must have the shape of the forward output "
            f"{tuple(expected_shape)}, got {grad.shape}"
        )
    if grad.dtype != dtype:
        raise TypeError(
            f"{name} must have the dtype of the forward output ({dtype}), got {grad.dtype}"
        )
    return np.ascontiguousarray(grad)
