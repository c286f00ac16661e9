"""One image brought to the form a data set needs: floats in [0, 1], a colour mode, a size."""

from __future__ import annotations

import numpy as np

from .dataset import DataError

__all__ = ["COLORS", "FIT_MODES", "parse_size", "to_float01", "color_of", "to_color", "fit"]

#: Colour modes: one channel (gray) or three (RGB).
COLORS = ("gray", "rgb")

#: How images of another size are brought to ``size``.
FIT_MODES = ("resize", "crop")

# skimage.color.rgb2gray's weights (ITU-R BT.709).
_GRAY = np.array([0.2125, 0.7154, 0.0721])

#: The largest side ``size`` accepts (a typo such as 32000 would allocate gigabytes).
MAX_SIDE = 4096


def parse_size(size):
    """``32``, ``"32"``, ``"32x48"`` or ``(32, 48)`` -> ``(H, W)``; None stays None."""
    if size is None:
        return None
    try:
        if isinstance(size, str):
            parts = [int(p) for p in size.lower().split("x")]
        elif isinstance(size, (int, np.integer)) and not isinstance(size, bool):
            parts = [int(size)]
        else:
            parts = [int(p) for p in size]
            if any(isinstance(p, bool) for p in size):
                raise ValueError
        if len(parts) == 1:
            parts *= 2
        if len(parts) != 2:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"size must be H or HxW (e.g. 32 or 32x48), got {size!r}") from None
    if min(parts) < 1 or max(parts) > MAX_SIDE:
        raise ValueError(f"size must have sides between 1 and {MAX_SIDE}, got {size!r}")
    return tuple(parts)


def to_float01(image):
    """Pixels as float64: integers scaled by their type's maximum, floats kept (must be finite)."""
    a = np.asarray(image)
    if a.dtype == bool:
        return a.astype(np.float64)
    if np.issubdtype(a.dtype, np.unsignedinteger):
        return a.astype(np.float64) / np.iinfo(a.dtype).max
    if np.issubdtype(a.dtype, np.signedinteger):
        info = np.iinfo(a.dtype)  # as skimage.util.img_as_float: [min, max] -> [-1, 1]
        return np.maximum(a.astype(np.float64) / info.max, -1.0)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise DataError("pixel values that are NaN or infinite")
        return a.astype(np.float64)
    raise DataError(f"pixels of type {a.dtype} (expected integers, floats or booleans)")


def color_of(image):
    """``"gray"`` or ``"rgb"`` for an (H, W[, C]) image; DataError for other shapes."""
    if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 2)):
        return "gray"
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        return "rgb"
    raise DataError(f"not a 2-D gray or RGB image (array shape {image.shape})")


def to_color(image, color):
    """(H, W) for gray, (H, W, 3) for RGB; an alpha channel is dropped."""
    if image.ndim == 3 and image.shape[-1] in (1, 2):  # gray, gray + alpha
        image = image[..., 0]
    elif image.ndim == 3 and image.shape[-1] == 4:  # RGBA
        image = image[..., :3]
    if color == "gray":
        return image @ _GRAY if image.ndim == 3 else image
    return image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)


def fit(image, size, mode="resize"):
    """``image`` (H, W[, C]) brought to ``size`` = (H', W').

    ``"resize"`` scales to exactly ``size`` (the aspect ratio may change;
    anti-aliased when shrinking).  ``"crop"`` scales, keeping the aspect
    ratio, until the image covers ``size``, then cuts out the centre.
    """
    h, w = image.shape[:2]
    if (h, w) == tuple(size):
        return image
    from skimage.transform import resize

    th, tw = size
    if mode == "crop":
        scale = max(th / h, tw / w)
        sh, sw = max(th, round(h * scale)), max(tw, round(w * scale))
        if (sh, sw) != (h, w):
            image = resize(image, (sh, sw), anti_aliasing=scale < 1, preserve_range=True)
        top, left = (sh - th) // 2, (sw - tw) // 2
        return image[top : top + th, left : left + tw]
    shrink = th < h or tw < w
    return resize(image, (th, tw), anti_aliasing=shrink, preserve_range=True)
