"""Small image datasets that ship inside scikit-image: no download, no network.

Two tasks for comparing pooling strategies on real pictures:

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

Both return a :class:`Dataset`: ``float32`` arrays in NCHW layout (one
channel), integer labels (``int64``) and the class names.  By default the
pixels are in ``[0, 1]``; with ``standardize=True`` they are shifted and
scaled by the *training* set's mean and standard deviation (one number
each, so test pixels are transformed exactly as training pixels are, and
no statistic of the test set leaks into the inputs).  The same arguments
and seed always give the same arrays.

scikit-image is an optional dependency: it is imported only when a loader
is called.  Install it with ``pip install "cnnpool[examples]"``.
"""

from __future__ import annotations

import numpy as np

from .dataset import check_count, check_fraction, check_seed, finish, skimage_data

__all__ = ["load_faces", "load_textures", "TEXTURES", "NAMES"]

#: The texture photographs of ``skimage.data`` :func:`load_textures` cuts from.
TEXTURES = ("brick", "grass", "gravel")

#: The dataset names :func:`load` accepts.
NAMES = ("faces", "textures")


def _augment(patches, rng):
    """A random one of the 8 flips/right-angle rotations for each patch (N, H, W)."""
    out = np.empty_like(patches)
    choice = rng.integers(0, 8, size=len(patches))
    for i, (p, k) in enumerate(zip(patches, choice, strict=True)):
        q = np.rot90(p, k % 4)
        out[i] = q[:, ::-1] if k >= 4 else q
    return out


# --------------------------------------------------------------------- loaders
def load_faces(seed=0, test_fraction=0.25, standardize=False):
    """Faces versus non-faces: ``skimage.data.lfw_subset()``, 25x25 grayscale.

    Parameters
    ----------
    seed : int
        Seeds the split.  The same seed gives the same split.
    test_fraction : float
        Share of *each* class held out for testing (stratified), default
        0.25: 150 training and 50 test images, balanced.
    standardize : bool
        Standardise pixels with the training mean and std (see module docs).

    Returns
    -------
    Dataset
        Classes ``("not face", "face")``: label 1 is a face.

    Examples
    --------
    >>> from cnnpool.datasets import load_faces
    >>> x_train, y_train, x_test, y_test, classes = load_faces(seed=0)
    >>> x_train.shape, x_test.shape, classes
    ((150, 1, 25, 25), (50, 1, 25, 25), ('not face', 'face'))
    """
    seed = check_seed(seed)
    test_fraction = check_fraction(test_fraction, "test_fraction")
    images = np.asarray(skimage_data().lfw_subset(), dtype=np.float64)
    half = len(images) // 2
    labels = np.r_[np.ones(half, np.int64), np.zeros(len(images) - half, np.int64)]
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for cls in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_test = max(1, int(round(test_fraction * len(members))))
        test_idx.append(members[:n_test])
        train_idx.append(members[n_test:])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = np.sort(np.concatenate(test_idx))
    info = {
        "seed": seed,
        "test_fraction": test_fraction,
        "source": "skimage.data.lfw_subset()",
        "train_index": train_idx,
        "test_index": test_idx,
    }
    return finish(
        "faces",
        ("not face", "face"),
        images[train_idx],
        labels[train_idx],
        images[test_idx],
        labels[test_idx],
        standardize,
        info,
    )


def load_textures(
    patch_size=32,
    train_per_class=200,
    test_per_class=48,
    seed=0,
    textures=TEXTURES,
    test_fraction=0.25,
    augment=False,
    standardize=False,
    patch_norm=False,
):
    """Texture patches, labelled by the photograph they were cut from.

    Each source photograph (``skimage.data.brick()`` etc., 512x512) is split
    into a horizontal *test band* of ``test_fraction`` of its rows, at a
    position drawn from the seed, and the rows outside it.  Training patches
    are random crops lying wholly outside the band (they may overlap each
    other); test patches are distinct non-overlapping tiles of the band.  No
    test pixel is ever inside a training patch.

    Parameters
    ----------
    patch_size : int
        Side of the square patches (default 32).
    train_per_class, test_per_class : int
        Patches per class.  ``test_per_class`` is at most the number of
        tiles that fit in the band (64 for the defaults).
    seed : int
        Seeds the band positions, the crops and the augmentation.
    textures : sequence of str
        Names of ``skimage.data`` images to use as classes (default
        ``("brick", "grass", "gravel")``); any grayscale or colour image of
        scikit-image works (colour is converted to gray).
    test_fraction : float
        Share of each photograph's rows reserved for testing.
    augment : bool
        Apply a random flip/right-angle rotation to each *training* patch.
    standardize : bool
        Standardise pixels with the training mean and std (see module docs).
    patch_norm : bool
        Give every patch zero mean and unit standard deviation (each patch
        by its own statistics), so that brightness and contrast no longer
        tell the classes apart and only the texture's structure does.  The
        pixels are then not in ``[0, 1]``; ``standardize`` is not needed.

    Returns
    -------
    Dataset
        ``info["train_origins"]`` and ``info["test_origins"]`` hold the
        ``(source, row, col)`` of every patch's top-left pixel, and
        ``info["test_bands"]`` the ``(start, stop)`` rows of each band.
    """
    seed = check_seed(seed)
    patch_size = check_count(patch_size, "patch_size", 2)
    train_per_class = check_count(train_per_class, "train_per_class")
    test_per_class = check_count(test_per_class, "test_per_class")
    test_fraction = check_fraction(test_fraction, "test_fraction")
    if isinstance(textures, str) or len(textures) < 2:
        raise ValueError(f"textures must name at least two images, got {textures!r}")
    data = skimage_data()
    rng = np.random.default_rng(seed)
    ps = patch_size

    xs_train, ys_train, xs_test, ys_test = [], [], [], []
    origins_train, origins_test, bands = [], [], []
    for cls, texture in enumerate(textures):
        loader = getattr(data, texture, None)
        if loader is None or not callable(loader):
            raise ValueError(f"textures: skimage.data has no image called {texture!r}")
        image = _as_gray01(loader(), texture)
        h, w = image.shape
        band_rows = max(ps, int(round(test_fraction * h)))
        band_rows -= band_rows % ps  # a whole number of tile rows
        if band_rows + ps > h or w < ps:
            raise ValueError(
                f"patch_size={ps} is too large for {texture!r} of shape {image.shape} "
                f"with test_fraction={test_fraction}"
            )
        start = int(rng.integers(0, h - band_rows + 1))
        stop = start + band_rows
        bands.append((start, stop))

        # Test: distinct non-overlapping tiles of the band.
        tile_rows = np.arange(start, stop - ps + 1, ps)
        tile_cols = np.arange(0, w - ps + 1, ps)
        n_tiles = len(tile_rows) * len(tile_cols)
        if test_per_class > n_tiles:
            raise ValueError(
                f"test_per_class={test_per_class} is more than the {n_tiles} tiles of "
                f"{ps}x{ps} that fit in the test band of {texture!r}; lower it or raise "
                "test_fraction"
            )
        pick = rng.choice(n_tiles, size=test_per_class, replace=False)
        rows_t = tile_rows[pick // len(tile_cols)]
        cols_t = tile_cols[pick % len(tile_cols)]

        # Train: random crops whose rows avoid the band entirely.
        allowed = np.r_[np.arange(0, start - ps + 1), np.arange(stop, h - ps + 1)]
        rows_r = rng.choice(allowed, size=train_per_class)
        cols_r = rng.integers(0, w - ps + 1, size=train_per_class)

        xs_test.append(_crop(image, rows_t, cols_t, ps))
        xs_train.append(_crop(image, rows_r, cols_r, ps))
        ys_test.append(np.full(test_per_class, cls, np.int64))
        ys_train.append(np.full(train_per_class, cls, np.int64))
        origins_test.append(np.c_[np.full(test_per_class, cls), rows_t, cols_t])
        origins_train.append(np.c_[np.full(train_per_class, cls), rows_r, cols_r])

    x_train, y_train = np.concatenate(xs_train), np.concatenate(ys_train)
    origins_train = np.concatenate(origins_train).astype(np.int64)
    order = rng.permutation(len(x_train))
    x_train, y_train, origins_train = x_train[order], y_train[order], origins_train[order]
    x_test = np.concatenate(xs_test)
    if augment:
        x_train = _augment(x_train, rng)
    if patch_norm:
        x_train, x_test = _patch_normalize(x_train), _patch_normalize(x_test)
    info = {
        "seed": seed,
        "patch_size": ps,
        "textures": tuple(textures),
        "test_fraction": test_fraction,
        "augment": bool(augment),
        "patch_norm": bool(patch_norm),
        "test_bands": bands,
        "train_origins": origins_train,
        "test_origins": np.concatenate(origins_test).astype(np.int64),
        "source": "skimage.data." + "/".join(textures),
    }
    return finish(
        "textures",
        textures,
        x_train,
        y_train,
        x_test,
        np.concatenate(ys_test),
        standardize,
        info,
    )


def _patch_normalize(patches):
    """Each patch (N, H, W) shifted to mean 0 and scaled to std 1 (flat patches: std 1)."""
    mean = patches.mean(axis=(1, 2), keepdims=True)
    std = patches.std(axis=(1, 2), keepdims=True)
    return (patches - mean) / np.where(std > 0, std, 1.0)


def _crop(image, rows, cols, ps):
    """The ``ps`` x ``ps`` patches of ``image`` with top-left corners ``(rows, cols)``."""
    return np.stack([image[r : r + ps, c : c + ps] for r, c in zip(rows, cols, strict=True)])


def _as_gray01(image, name):
    """A 2-D float64 image in [0, 1] from whatever skimage.data returns."""
    image = np.asarray(image)
    if image.ndim == 3:
        if image.shape[-1] == 4:
            image = image[..., :3]
        weights = np.array([0.2125, 0.7154, 0.0721])  # skimage.color.rgb2gray's
        scale = 255.0 if image.dtype == np.uint8 else 1.0
        return (image.astype(np.float64) / scale) @ weights
    if image.ndim != 2:
        raise ValueError(f"textures: {name!r} is not a 2-D image (shape {image.shape})")
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float64) / np.iinfo(image.dtype).max
    return image.astype(np.float64)  # bool, or float already in [0, 1]
