"""Your own arrays: an ``.npz`` file with ``x_train, y_train, x_test, y_test``.

Images are NCHW (``C`` = 1 or 3) or NHW (gray), of any integer, float or
boolean type (integers are scaled to [0, 1] by their type's maximum);
labels are integers ``0 .. K-1``.  An optional ``classes`` array of ``K``
strings names the classes.

A file from a stranger is bad input: it is opened with
``allow_pickle=False`` (no object arrays, so no code runs), and each
array's declared shape and type are read from its header and checked
(against ``max_bytes`` and against the size the archive declares for the
member) *before* the array is allocated.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from .dataset import DataError, finish
from .images import COLORS, FIT_MODES, parse_size, to_color, to_float01
from .images import fit as fit_image

__all__ = ["load_npz", "MAX_BYTES"]

#: The largest array :func:`load_npz` allocates, in bytes (2 GiB).
MAX_BYTES = 2 * 1024**3

KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(
    path,
    seed=0,
    *,
    size=None,
    color=None,
    fit_mode="resize",
    standardize=False,
    max_bytes=MAX_BYTES,
):
    """Load ``x_train, y_train, x_test, y_test`` (and optional ``classes``) from an npz file.

    Parameters
    ----------
    path : str or os.PathLike
    seed : int
        Unused (the file holds its own split); accepted so that every loader
        has the same call.
    size, color, fit_mode, standardize
        As for :func:`~cnnpool.datasets.load_folder`; ``color=None`` keeps
        the file's channels (1 or 3).
    max_bytes : int
        Refuse an array whose declared size exceeds this many bytes.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        Not an npz file, a missing array, object arrays, an absurd or
        inconsistent declared size, images that are not NHW/NCHW, lengths of
        images and labels that differ, labels that are not integers in
        ``0 .. K-1``, non-finite pixels.
    """
    del seed
    size = parse_size(size)
    if color is not None and color not in COLORS:
        raise ValueError(f"color must be one of {COLORS} or None, got {color!r}")
    if fit_mode not in FIT_MODES:
        raise ValueError(f"fit_mode must be one of {FIT_MODES}, got {fit_mode!r}")
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise DataError(f"data file {path!r} does not exist")
    arrays = _read_checked(path, max_bytes)
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise DataError(
            f"{path!r} lacks {', '.join(missing)}; it must hold x_train, y_train, x_test, "
            f"y_test (it holds: {', '.join(sorted(arrays)) or 'nothing'})"
        )
    x_train = _images(arrays["x_train"], "x_train", path)
    x_test = _images(arrays["x_test"], "x_test", path)
    y_train = _labels(arrays["y_train"], "y_train", path)
    y_test = _labels(arrays["y_test"], "y_test", path)
    for x, y, xn, yn in (
        (x_train, y_train, "x_train", "y_train"),
        (x_test, y_test, "x_test", "y_test"),
    ):
        if len(x) != len(y):
            raise DataError(f"{path!r}: {xn} holds {len(x)} images but {yn} holds {len(y)} labels")
        if len(x) == 0:
            raise DataError(f"{path!r}: {xn} holds no images")
    if size is None and x_train.shape[2:] != x_test.shape[2:]:
        raise DataError(
            f"{path!r}: x_train images are {x_train.shape[2]}x{x_train.shape[3]} but x_test "
            f"images are {x_test.shape[2]}x{x_test.shape[3]}; give a size to bring them to one"
        )
    if x_train.shape[1] != x_test.shape[1]:
        raise DataError(
            f"{path!r}: x_train has {x_train.shape[1]} channel(s) but x_test {x_test.shape[1]}"
        )
    if "classes" in arrays:
        names = arrays["classes"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise DataError(f"{path!r}: classes must be a 1-D array of strings")
        classes = tuple(str(c) for c in names)
    else:
        # The classes are those of the training labels: a test label beyond them is out of range.
        classes = tuple(str(k) for k in range(max(int(y_train.max()), 0) + 1))
    k = len(classes)
    for y, yn in ((y_train, "y_train"), (y_test, "y_test")):
        bad = (y < 0) | (y >= k)
        if bad.any():
            raise DataError(
                f"{path!r}: {yn} holds labels out of range 0..{k - 1} "
                f"(e.g. {int(y[bad][0])} at index {int(np.flatnonzero(bad)[0])})"
            )
    counts = np.bincount(y_train, minlength=k)
    if k < 2 or (counts > 0).sum() < 2:
        raise DataError(f"{path!r}: y_train holds one class only; a classifier needs two or more")
    empty = [classes[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise DataError(f"{path!r}: class(es) {', '.join(map(repr, empty))} have no training image")
    x_train = _convert(x_train, size, color, fit_mode)
    x_test = _convert(x_test, size, color, fit_mode)
    chosen = "rgb" if x_train.shape[1] == 3 else "gray"
    info = {
        "source": path,
        "color": chosen,
        "size": list(x_train.shape[2:]),
        "fit": None if size is None else fit_mode,
        "split": "fixed (the file's x_train / x_test)",
    }
    name = os.path.splitext(os.path.basename(path))[0]
    return finish(name, classes, x_train, y_train, x_test, y_test, standardize, info)


def _read_checked(path, max_bytes):
    """Every array of the archive, each checked from its header before it is read."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path!r} is not an .npz file (a zip of .npy arrays): {exc}") from None
    out = {}
    with archive:
        for member in archive.infolist():
            if not member.filename.endswith(".npy"):
                continue
            key = member.filename[:-4]
            try:
                with archive.open(member) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        read_header = np.lib.format.read_array_header_1_0
                    elif version == (2, 0):
                        read_header = np.lib.format.read_array_header_2_0
                    else:
                        raise ValueError(f".npy format version {version} is not supported")
                    shape, _, dtype = read_header(fh, max_header_size=10_000)
                    header_end = fh.tell()
            except Exception as exc:  # noqa: BLE001 - any malformed header
                raise DataError(
                    f"{path!r}: array {key!r} has no valid .npy header ({exc})"
                ) from None
            if dtype.hasobject:
                raise DataError(
                    f"{path!r}: array {key!r} holds Python objects, which would need pickle "
                    "to load; save numbers (or strings for classes) only"
                )
            nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if nbytes > max_bytes:
                raise DataError(
                    f"{path!r}: array {key!r} declares shape {shape} of {dtype} "
                    f"({nbytes / 1024**2:.0f} MiB), more than the {max_bytes / 1024**2:.0f} "
                    "MiB allowed (max_bytes)"
                )
            if header_end + nbytes > member.file_size:
                raise DataError(
                    f"{path!r}: array {key!r} declares shape {shape} of {dtype} ({nbytes} "
                    f"bytes) but its member holds only {member.file_size - header_end}: the "
                    "file is truncated or inconsistent"
                )
            try:
                with archive.open(member) as fh:
                    out[key] = np.lib.format.read_array(fh, allow_pickle=False)
            except Exception as exc:  # noqa: BLE001 - a damaged member
                raise DataError(f"{path!r}: cannot read array {key!r} ({exc})") from None
    return out


def _images(x, name, path):
    if x.dtype.kind not in "buif":
        raise DataError(f"{path!r}: {name} has type {x.dtype}; images must be numbers")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(
            f"{path!r}: {name} has shape {x.shape}; images must be NCHW with 1 or 3 channels, "
            "or NHW (gray)"
        )
    if min(x.shape[2:]) < 1:
        raise DataError(f"{path!r}: {name} has empty images (shape {x.shape})")
    try:
        return to_float01(x)
    except DataError as exc:
        raise DataError(f"{path!r}: {name} has {exc}") from None


def _labels(y, name, path):
    if y.ndim != 1:
        raise DataError(f"{path!r}: {name} has shape {y.shape}; labels must be 1-D")
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        return y.astype(np.int64)
    raise DataError(f"{path!r}: {name} must hold integer class numbers, got {y.dtype}")


def _convert(x, size, color, fit_mode):
    """Colour and size of NCHW float images, one image at a time where needed."""
    if color is not None and (x.shape[1] == 3) != (color == "rgb"):
        x = np.stack([np.moveaxis(np.atleast_3d(to_color(im, color)), -1, 0) for im in _hwc(x)])
    if size is not None and tuple(x.shape[2:]) != size:
        x = np.stack(
            [np.moveaxis(np.atleast_3d(fit_image(im, size, fit_mode)), -1, 0) for im in _hwc(x)]
        )
    return x


def _hwc(x):
    for im in x:
        yield im[0] if im.shape[0] == 1 else np.moveaxis(im, 0, -1)
