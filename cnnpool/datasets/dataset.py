"""The :class:`Dataset` every loader returns, and the checks loaders share."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Dataset", "DataError"]


class DataError(ValueError):
    """Data that cannot be used as given: the message says which file or array, and why."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of images (one channel for gray, three for RGB).

    Unpacks as ``x_train, y_train, x_test, y_test, classes = dataset``.

    Attributes
    ----------
    x_train, x_test : ndarray of float32, shape (N, C, H, W)
        The images, NCHW (``C`` is 1 for the built-in sets).  In ``[0, 1]`` unless ``standardized``.
    y_train, y_test : ndarray of int64, shape (N,)
        Class numbers, indices into ``classes``.
    classes : tuple of str
        The class names.
    name : str
        ``"faces"``, ``"textures"``, or the folder's or file's name.
    standardized : bool
        Whether the pixels were standardised with the training statistics
        ``pixel_mean`` and ``pixel_std`` (``x = (raw - mean) / std``).
    pixel_mean, pixel_std : float
        The training set's raw pixel mean and standard deviation (in the
        ``[0, 1]`` scale), whether or not they were applied.
    info : dict
        Everything else a user may want to check: the seed and arguments;
        for a folder the files read, skipped and their reasons; for
        textures the origin ``(source, row, col)`` of every patch
        (``train_origins``, ``test_origins``, arrays of shape ``(N, 3)``)
        and the rows of the test band of each source image.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple
    name: str = ""
    standardized: bool = False
    pixel_mean: float = 0.0
    pixel_std: float = 1.0
    info: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.x_train, self.y_train, self.x_test, self.y_test, self.classes))

    @property
    def num_classes(self):
        return len(self.classes)

    @property
    def image_shape(self):
        """``(C, H, W)`` of one image."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self):
        return (
            f"Dataset({self.name!r}, train={self.x_train.shape}, test={self.x_test.shape}, "
            f"classes={self.classes}, standardized={self.standardized})"
        )


# --------------------------------------------------------------------- helpers
def skimage_data():
    """``skimage.data``, or an ImportError that says how to get it."""
    try:
        from skimage import data
    except ImportError as exc:
        raise ImportError(
            "cnnpool.datasets needs scikit-image, an optional dependency. "
            'Install it with: pip install "cnnpool[examples]"  (or: pip install scikit-image)'
        ) from exc
    return data


def check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise TypeError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def check_fraction(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def check_count(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def finish(name, classes, x_train, y_train, x_test, y_test, standardize, info):
    """Common tail: dtype, layout, optional standardisation, the Dataset.

    ``x_train`` and ``x_test`` are (N, H, W) (one channel is added) or
    (N, C, H, W).  Standardisation uses one mean and one standard deviation
    over every training pixel and channel.
    """
    if x_train.ndim == 3:
        x_train, x_test = x_train[:, None], x_test[:, None]
    x_train = np.ascontiguousarray(x_train, dtype=np.float32)
    x_test = np.ascontiguousarray(x_test, dtype=np.float32)
    mean = float(x_train.mean(dtype=np.float64))
    std = float(x_train.std(dtype=np.float64))
    if standardize:
        scale = std if std > 0 else 1.0
        x_train = ((x_train - np.float32(mean)) / np.float32(scale)).astype(np.float32)
        x_test = ((x_test - np.float32(mean)) / np.float32(scale)).astype(np.float32)
    return Dataset(
        x_train=x_train,
        y_train=np.asarray(y_train, dtype=np.int64),
        x_test=x_test,
        y_test=np.asarray(y_test, dtype=np.int64),
        classes=tuple(classes),
        name=name,
        standardized=bool(standardize),
        pixel_mean=mean,
        pixel_std=std,
        info=info,
    )


def stratified_split(labels, test_fraction, seed, classes):
    """Train and test indices: ``test_fraction`` of each class held out, drawn from ``seed``.

    Every class keeps at least one training and one test image; a class
    with fewer than two images is refused (:class:`DataError`).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for k, name in enumerate(classes):
        members = np.flatnonzero(labels == k)
        if len(members) < 2:
            raise DataError(
                f"class {name!r} has {len(members)} image(s); a train/test split needs at "
                "least 2 per class (one to train on, one to test on)"
            )
        members = rng.permutation(members)
        n_test = min(len(members) - 1, max(1, int(round(test_fraction * len(members)))))
        test_idx.append(members[:n_test])
        train_idx.append(members[n_test:])
    return rng.permutation(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))
