"""Data for one seed of the comparison (the split depends on the seed)."""

from __future__ import annotations

import numpy as np

__all__ = ["load_dataset", "dataset_info"]


def load_dataset(settings, seed):
    """The dataset of ``settings`` for one seed (the split depends on the seed)."""
    from ..datasets import load

    options = dict(settings.dataset_options)
    options.setdefault("standardize", settings.standardize)
    return load(settings.dataset, seed=seed, **options)


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
    }
