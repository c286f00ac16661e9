"""Your own pictures: a folder with one subfolder per class.

Two layouts::

    DIR/cat/*.png, DIR/dog/*.jpg, ...             split by seed (stratified)
    DIR/train/cat/..., DIR/test/cat/..., ...      your fixed split

Any format scikit-image reads (PNG, JPEG, TIFF, BMP, ...).  Files and
folders whose name starts with ``.`` are ignored.  A file that is not a
readable image (corrupt, or not a picture at all) is skipped and counted,
with its name and the reason in the log and in ``Dataset.info["skipped"]``;
with ``strict=True`` it is refused instead.  Reading is done once per
folder and options (cached while the files are unchanged), so that the
per-seed splits of a comparison do not read the pictures again.
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np

from .dataset import DataError, check_fraction, check_seed, finish, stratified_split
from .images import COLORS, FIT_MODES, color_of, fit, parse_size, to_color, to_float01

log = logging.getLogger(__name__)

__all__ = ["load_folder"]

# (key) -> decoded pictures; a few entries, for the seeds of one comparison.
_CACHE: dict = {}
_CACHE_SIZE = 2


def load_folder(
    path,
    seed=0,
    *,
    size=None,
    color=None,
    fit_mode="resize",
    test_fraction=0.25,
    strict=False,
    standardize=False,
    progress=False,
):
    """Load a folder of class subfolders as a :class:`~cnnpool.datasets.Dataset`.

    Parameters
    ----------
    path : str or os.PathLike
        The folder: ``DIR/<class>/<image>``, or ``DIR/train/<class>/...``
        and ``DIR/test/<class>/...`` for a fixed split.
    seed : int
        Seeds the stratified train/test split (ignored with a fixed split).
    size : int, "HxW", (H, W) or None
        Bring every image to this size (see ``fit_mode``).  None: the images
        must all have one size already.
    color : {"gray", "rgb"} or None
        Convert every image to gray (1 channel, ITU-R BT.709 weights) or RGB
        (3 channels; gray images are repeated).  None: RGB if any image has
        colour, else gray.  An alpha channel is dropped.
    fit_mode : {"resize", "crop"}
        ``"resize"`` scales to exactly ``size``; ``"crop"`` keeps the aspect
        ratio and cuts out the centre.
    test_fraction : float
        Share of each class held out for testing, when there is no ``test/``.
    strict : bool
        Refuse a file that is not a readable image instead of skipping it.
    standardize : bool
        Standardise pixels with the training set's mean and standard deviation.
    progress : bool
        Show a progress bar (tqdm, on stderr) while reading.

    Returns
    -------
    Dataset
        ``x`` of shape (N, C, H, W), pixels in [0, 1] (unless standardised);
        ``classes`` are the subfolder names, sorted.

    Raises
    ------
    DataError
        A missing or empty folder, one class only, a class without images or
        with too few for the split, images of several sizes without
        ``size``, or (with ``strict``) a file that is not a readable image.
    """
    seed = check_seed(seed)
    test_fraction = check_fraction(test_fraction, "test_fraction")
    size = parse_size(size)
    if color is not None and color not in COLORS:
        raise ValueError(f"color must be one of {COLORS} or None, got {color!r}")
    if fit_mode not in FIT_MODES:
        raise ValueError(f"fit_mode must be one of {FIT_MODES}, got {fit_mode!r}")
    root = os.path.abspath(os.fspath(path))
    layout = _layout(root)
    key = (root, size, color, fit_mode, bool(strict), _signature(layout))
    loaded = _CACHE.get(key)
    if loaded is None:
        loaded = _read(root, layout, size, color, fit_mode, strict, progress)
        while len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = loaded
    x, y, classes, part, info = loaded
    info = dict(info, seed=seed, path=root)
    if part is None:
        info["split"] = f"stratified by seed, test_fraction {test_fraction:g}"
        info["test_fraction"] = test_fraction
        train_idx, test_idx = stratified_split(y, test_fraction, seed, classes)
    else:
        info["split"] = "fixed (train/ and test/ folders)"
        train_idx, test_idx = np.flatnonzero(part == 0), np.flatnonzero(part == 1)
    return finish(
        os.path.basename(root.rstrip(os.sep)) or root,
        classes,
        x[train_idx],
        y[train_idx],
        x[test_idx],
        y[test_idx],
        standardize,
        info,
    )


def _visible(folder):
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def _layout(root):
    """``{part: {class: [files]}}`` with part ``None`` (one pool) or ``"train"``/``"test"``."""
    if not os.path.exists(root):
        raise DataError(f"data folder {root!r} does not exist")
    if not os.path.isdir(root):
        raise DataError(f"data {root!r} is not a folder (nor an .npz file)")
    names = _visible(root)
    dirs = [n for n in names if os.path.isdir(os.path.join(root, n))]
    if "train" in dirs or "test" in dirs:
        if not ("train" in dirs and "test" in dirs):
            have, lack = ("train", "test") if "train" in dirs else ("test", "train")
            raise DataError(
                f"data folder {root!r} has {have}/ but no {lack}/: give both (each with one "
                "subfolder per class) for a fixed split, or neither for a split by seed"
            )
        parts = {p: _classes(os.path.join(root, p)) for p in ("train", "test")}
        extra = sorted(set(parts["test"]) - set(parts["train"]))
        if extra:
            raise DataError(
                f"data folder {root!r}: test/ has classes that train/ lacks: {', '.join(extra)}"
            )
        missing = sorted(set(parts["train"]) - set(parts["test"]))
        if missing:
            raise DataError(
                f"data folder {root!r}: train/ has classes without test images: "
                f"{', '.join(missing)}"
            )
        return parts
    return {None: _classes(root)}


def _classes(folder):
    names = _visible(folder)
    dirs = [n for n in names if os.path.isdir(os.path.join(folder, n))]
    if not names:
        raise DataError(f"data folder {folder!r} is empty: put one subfolder per class in it")
    if not dirs:
        raise DataError(
            f"data folder {folder!r} has no class subfolders: put the images of each class "
            "in a subfolder named after the class (DIR/cat/1.png, DIR/dog/2.png, ...)"
        )
    if len(dirs) == 1:
        raise DataError(
            f"data folder {folder!r} has one class only ({dirs[0]!r}): a classifier needs at "
            "least two class subfolders"
        )
    loose = len(names) - len(dirs)
    if loose:
        log.warning("%s: %d file(s) outside the class subfolders ignored", folder, loose)
    out = {}
    for d in dirs:
        sub = os.path.join(folder, d)
        files = [os.path.join(sub, n) for n in _visible(sub)]
        files = [f for f in files if os.path.isfile(f)]
        if not files:
            raise DataError(f"class {d!r} ({sub!r}) has no files")
        out[d] = files
    return out


def _signature(layout):
    """Names, sizes and modification times of every file: a changed file reads again."""
    sig = []
    for part, classes in layout.items():
        for cls, files in classes.items():
            for f in files:
                st = os.stat(f)
                sig.append((part, cls, f, st.st_size, st.st_mtime_ns))
    return hash(tuple(sig))


def _read(root, layout, size, color, fit_mode, strict, progress):
    from skimage import io

    classes = tuple(next(iter(layout.values())))
    jobs = [
        (f, k, part)
        for part, by_class in layout.items()
        for k, cls in enumerate(classes)
        for f in by_class[cls]
    ]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=f"reading {os.path.basename(root)}", unit="image")
    images, labels, parts, skipped = [], [], [], []
    try:
        for f, k, part in jobs:
            try:
                with warnings.catch_warnings():
                    # imageio tries its plugins in turn on a file that is not a picture,
                    # and some warn (deprecations) before failing: the skip says it all
                    warnings.simplefilter("ignore")
                    raw = io.imread(f)
                image = to_float01(raw)
                mode = color_of(image)
                # Bring each picture to its final size at once (in its own colour mode,
                # alpha dropped), so that a folder of large photographs never holds more
                # than the small images in memory.
                image = to_color(image, mode)
                shape = image.shape[:2]
                if size is not None:
                    image = fit(image, size, fit_mode)
                image = image.astype(np.float32)
            except Exception as exc:  # noqa: BLE001 - any reader error means "not an image"
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if strict:
                    raise DataError(
                        f"{f!r} is not a readable image ({reason}); remove it, or leave out "
                        "strict (--strict) to skip such files with a count"
                    ) from None
                skipped.append((f, reason[:200]))
            else:
                images.append((f, image, mode, shape))
                labels.append(k)
                parts.append(part)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if skipped:
        shown = "; ".join(f"{os.path.relpath(f, root)} ({r})" for f, r in skipped[:5])
        more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        log.warning(
            "%s: skipped %d of %d files that are not readable images: %s%s",
            root,
            len(skipped),
            len(jobs),
            shown,
            more,
        )
    labels = np.asarray(labels, np.int64)
    parts_arr = np.asarray([0 if p == "train" else 1 for p in parts], np.int8)
    for part in layout:
        in_part = labels if part is None else labels[parts_arr == (0 if part == "train" else 1)]
        counts = np.bincount(in_part, minlength=len(classes))
        empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
        if empty:
            where = "" if part is None else f" in {part}/"
            raise DataError(
                f"class {empty[0]!r}{where} has no readable image (of {root!r})"
                + (f"; {len(skipped)} file(s) were skipped as unreadable" if skipped else "")
            )
    chosen = color or ("rgb" if any(m == "rgb" for _, _, m, _ in images) else "gray")
    if size is None:
        shapes = {}
        for f, _, _, shape in images:
            shapes.setdefault(shape, f)
        if len(shapes) > 1:
            eg = ", ".join(
                f"{os.path.relpath(f, root)} is {s[0]}x{s[1]}" for s, f in list(shapes.items())[:3]
            )
            raise DataError(
                f"the images of {root!r} have {len(shapes)} different sizes ({eg}); "
                "give a size (--size H or HxW) to bring them to one"
            )
    out = []
    for _, im, _, _ in images:
        im = to_color(im, chosen)
        out.append(im.transpose(2, 0, 1) if im.ndim == 3 else im[None])
    x = np.stack(out).astype(np.float32)
    info = {
        "source": root,
        "color": chosen,
        "size": list(x.shape[2:]),
        "fit": None if size is None else fit_mode,
        "files": len(jobs),
        "read": len(images),
        "skipped": [[os.path.relpath(f, root), r] for f, r in skipped],
    }
    part = None if None in layout else parts_arr
    return x, labels, classes, part, info
