"""Image data sets for the pooling comparison: built-in ones, your folder, your arrays.

Built in, from pictures that ship inside scikit-image (no download):

:func:`load_faces`
    ``skimage.data.lfw_subset()``: 200 grayscale 25x25 crops, the first 100
    faces from Labeled Faces in the Wild, the other 100 not faces.  Two
    classes, a stratified train/test split drawn from the seed.
:func:`load_textures`
    Square patches cut from the ``brick``, ``grass`` and ``gravel`` texture
    photographs (512x512 each), labelled by the photograph they come from.
    Test patches come from a horizontal band of each photograph that no
    training patch touches, so a model cannot pass the test by remembering
    pixels it was trained on.

Your own:

:func:`load_folder`
    A folder with one subfolder of pictures per class (PNG, JPEG, TIFF, ...),
    split by seed, or with ``train/`` and ``test/`` for a fixed split; gray
    or RGB, brought to one size.
:func:`load_npz`
    An ``.npz`` file with ``x_train, y_train, x_test, y_test``.

All return a :class:`Dataset`: ``float32`` arrays in NCHW layout, integer
labels (``int64``) and the class names.  By default the pixels are in
``[0, 1]``; with ``standardize=True`` they are shifted and scaled by the
*training* set's mean and standard deviation (one number each, so test
pixels are transformed exactly as training pixels are, and no statistic of
the test set leaks into the inputs).  The same arguments and seed always
give the same arrays.  Data that cannot be used raises :class:`DataError`
(a ``ValueError``) saying which file or array, and why.

scikit-image is an optional dependency: it is imported only when a loader
is called.  Install it with ``pip install "cnnpool[examples]"``.
"""

from __future__ import annotations

import os

from .builtin import NAMES, TEXTURES, load_faces, load_textures
from .dataset import DataError, Dataset
from .folder import load_folder
from .npz import load_npz

__all__ = [
    "Dataset",
    "DataError",
    "load_faces",
    "load_textures",
    "load_folder",
    "load_npz",
    "load",
    "TEXTURES",
    "NAMES",
]


def load(name, seed=0, **kwargs):
    """Load a data set by name or path; ``kwargs`` go to the loader.

    ``"faces"`` and ``"textures"`` are the built-in sets; a path to a folder
    loads it with :func:`load_folder`, a path ending in ``.npz`` with
    :func:`load_npz`.
    """
    if name == "faces":
        return load_faces(seed=seed, **kwargs)
    if name == "textures":
        return load_textures(seed=seed, **kwargs)
    if isinstance(name, (str, os.PathLike)):
        text = os.fspath(name)
        if text.lower().endswith(".npz"):
            return load_npz(text, seed=seed, **kwargs)
        if os.sep in text or "/" in text or os.path.exists(text):
            return load_folder(text, seed=seed, **kwargs)
    raise ValueError(
        f"dataset must be one of {NAMES}, a folder of class subfolders or an .npz file, "
        f"got {name!r}"
    )
