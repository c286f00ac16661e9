"""Data for one seed of the comparison (the split depends on the seed)."""

from __future__ import annotations

import os

import numpy as np

from .settings import BUILTIN_DATASETS

__all__ = ["load_dataset", "validation_split", "dataset_info"]


def load_dataset(settings, seed, progress=False):
    """The dataset of ``settings`` for one seed (the split depends on the seed).

    A built-in set (``"faces"``, ``"textures"``) or your own: a folder of
    class subfolders or an ``.npz`` file, with ``settings.color``,
    ``settings.size``, ``settings.fit``, ``settings.test_fraction`` and
    ``settings.strict``.  ``progress`` shows a bar while a folder is read
    (the first time; the decoded pictures are cached).
    """
    from ..datasets import load, load_folder, load_npz

    options = dict(settings.dataset_options)
    options.setdefault("standardize", settings.standardize)
    if settings.dataset in BUILTIN_DATASETS:
        return load(settings.dataset, seed=seed, **options)
    own = {"size": settings.size, "color": settings.color, "fit_mode": settings.fit}
    if settings.dataset.lower().endswith(".npz") and os.path.isfile(settings.dataset):
        return load_npz(settings.dataset, seed=seed, **own, **options)
    own.update(test_fraction=settings.test_fraction, strict=settings.strict, progress=progress)
    return load_folder(settings.dataset, seed=seed, **own, **options)


def validation_split(data, fraction, seed):
    """``data`` with its test set replaced by ``fraction`` of its training set.

    The learning-rate search trains on the rest and evaluates on this
    validation part; the returned Dataset holds no test image at all, so
    nothing of the test set can reach the choice.  Stratified, drawn from
    ``seed``; every class keeps at least one training and one validation
    image.
    """
    from ..datasets import Dataset
    from ..datasets.dataset import stratified_split

    train_idx, val_idx = stratified_split(data.y_train, fraction, [seed, 104729], data.classes)
    return Dataset(
        x_train=data.x_train[train_idx],
        y_train=data.y_train[train_idx],
        x_test=data.x_train[val_idx],
        y_test=data.y_train[val_idx],
        classes=data.classes,
        name=f"{data.name} (validation split)",
        standardized=data.standardized,
        pixel_mean=data.pixel_mean,
        pixel_std=data.pixel_std,
        info={"validation_fraction": fraction, "seed": seed},
    )


def dataset_info(data):
    """What ``results.json`` records about one seed's :class:`~cnnpool.datasets.Dataset`."""
    return {
        "name": data.name,
        "classes": list(data.classes),
        "train_size": len(data.x_train),
        "test_size": len(data.x_test),
        "image_shape": list(data.image_shape),
        "standardized": data.standardized,
        "train_class_counts": np.bincount(data.y_train).tolist(),
        "test_class_counts": np.bincount(data.y_test).tolist(),
        "color": "rgb" if data.image_shape[0] == 3 else "gray",
        "split": data.info.get("split"),
        "fit": data.info.get("fit"),
        "source": data.info.get("source"),
        "files_skipped": len(data.info.get("skipped", ())),
        # the first unreadable files and why (all of them are in the log)
        "skipped": [list(x) for x in data.info.get("skipped", ())][:100],
    }
