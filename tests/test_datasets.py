"""cnnpool.datasets: shapes, dtypes, balance, determinism, and no train/test leakage."""

import builtins

import numpy as np
import pytest

pytest.importorskip("skimage")

from cnnpool.datasets import load, load_faces, load_textures  # noqa: E402


# ---------------------------------------------------------------------- faces
def test_faces_shapes_dtypes_and_range():
    x_train, y_train, x_test, y_test, classes = load_faces(seed=0)
    assert x_train.shape == (150, 1, 25, 25) and x_test.shape == (50, 1, 25, 25)
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    assert x_train.flags.c_contiguous and x_test.flags.c_contiguous
    assert classes == ("not face", "face")
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0


def test_faces_split_is_stratified_and_balanced():
    d = load_faces(seed=3)
    assert np.bincount(d.y_train).tolist() == [75, 75]
    assert np.bincount(d.y_test).tolist() == [25, 25]


def test_faces_labels_match_the_source_order():
    """lfw_subset: the first 100 images are faces (label 1), the rest are not."""
    from skimage.data import lfw_subset

    raw = lfw_subset()
    d = load_faces(seed=1)
    idx = d.info["train_index"]
    np.testing.assert_array_equal(d.y_train, (idx < 100).astype(np.int64))
    np.testing.assert_allclose(d.x_train[:, 0], raw[idx], atol=1e-7)


def test_faces_train_and_test_are_disjoint_and_cover_everything():
    d = load_faces(seed=5)
    tr, te = set(d.info["train_index"].tolist()), set(d.info["test_index"].tolist())
    assert not tr & te
    assert tr | te == set(range(200))


def test_faces_deterministic_per_seed_and_varies_across_seeds():
    a, b, c = load_faces(seed=7), load_faces(seed=7), load_faces(seed=8)
    for f in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.info["test_index"], c.info["test_index"])


def test_faces_standardized_uses_training_statistics():
    raw = load_faces(seed=2)
    std = load_faces(seed=2, standardize=True)
    assert std.standardized and not raw.standardized
    assert abs(std.x_train.mean()) < 1e-5 and abs(std.x_train.std() - 1) < 1e-4
    expected = (raw.x_test - raw.pixel_mean) / raw.pixel_std
    np.testing.assert_allclose(std.x_test, expected, atol=1e-5)


# ------------------------------------------------------------------- textures
def test_textures_shapes_dtypes_balance():
    d = load_textures(patch_size=32, train_per_class=40, test_per_class=20, seed=0)
    assert d.x_train.shape == (120, 1, 32, 32) and d.x_test.shape == (60, 1, 32, 32)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert d.classes == ("brick", "grass", "gravel")
    assert np.bincount(d.y_train).tolist() == [40, 40, 40]
    assert np.bincount(d.y_test).tolist() == [20, 20, 20]
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    assert d.image_shape == (1, 32, 32) and d.num_classes == 3


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("patch_size", [16, 32])
def test_textures_no_test_pixel_is_inside_a_training_patch(seed, patch_size):
    """Pixel regions, not values: paint every training patch's footprint on a
    per-source mask and check no test patch's footprint touches it."""
    d = load_textures(patch_size=patch_size, train_per_class=150, test_per_class=30, seed=seed)
    ps = patch_size
    n_src = len(d.classes)
    used = np.zeros((n_src, 512, 512), dtype=bool)
    for src, r, c in d.info["train_origins"]:
        used[src, r : r + ps, c : c + ps] = True
    test_cover = np.zeros_like(used, dtype=np.int32)
    for src, r, c in d.info["test_origins"]:
        assert not used[src, r : r + ps, c : c + ps].any(), (src, r, c)
        test_cover[src, r : r + ps, c : c + ps] += 1
    assert test_cover.max() == 1  # test tiles do not overlap each other either
    # and every test tile lies inside its source's band
    for src, r, _ in d.info["test_origins"]:
        start, stop = d.info["test_bands"][src]
        assert start <= r and r + ps <= stop
    # origins are consistent with the labels
    np.testing.assert_array_equal(d.info["train_origins"][:, 0], d.y_train)
    np.testing.assert_array_equal(d.info["test_origins"][:, 0], d.y_test)


def test_textures_patches_are_the_pixels_at_their_origins():
    from skimage import data

    d = load_textures(patch_size=16, train_per_class=10, test_per_class=5, seed=4)
    images = [getattr(data, t)().astype(np.float64) / 255 for t in d.classes]
    for xs, origins in ((d.x_train, d.info["train_origins"]), (d.x_test, d.info["test_origins"])):
        for x, (src, r, c) in zip(xs, origins, strict=True):
            np.testing.assert_allclose(x[0], images[src][r : r + 16, c : c + 16], atol=1e-6)


def test_textures_deterministic_per_seed():
    kw = dict(patch_size=16, train_per_class=30, test_per_class=10, augment=True)
    a, b = load_textures(seed=11, **kw), load_textures(seed=11, **kw)
    c = load_textures(seed=12, **kw)
    for f in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.x_train, c.x_train)


def test_textures_augment_only_flips_and_rotates_training_patches():
    kw = dict(patch_size=16, train_per_class=30, test_per_class=10, seed=6)
    plain, aug = load_textures(**kw), load_textures(augment=True, **kw)
    np.testing.assert_array_equal(plain.x_test, aug.x_test)
    np.testing.assert_array_equal(plain.y_train, aug.y_train)
    changed = 0
    for p, q in zip(plain.x_train[:, 0], aug.x_train[:, 0], strict=True):
        variants = [np.rot90(p, k) for k in range(4)]
        variants += [v[:, ::-1] for v in variants]
        assert any(np.array_equal(v, q) for v in variants)
        changed += not np.array_equal(p, q)
    assert changed > 0


def test_textures_extra_class_and_standardize():
    d = load_textures(
        patch_size=16,
        train_per_class=10,
        test_per_class=5,
        textures=("brick", "grass", "gravel", "camera"),
        standardize=True,
    )
    assert d.classes[-1] == "camera" and d.num_classes == 4
    assert abs(float(d.x_train.mean())) < 1e-4


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(test_per_class=1000), ValueError, "test_per_class"),
        (dict(patch_size=600), ValueError, "patch_size"),
        (dict(textures=("brick", "nope")), ValueError, "nope"),
        (dict(textures="brick"), ValueError, "textures"),
        (dict(test_fraction=1.5), ValueError, "test_fraction"),
        (dict(seed=-1), TypeError, "seed"),
        (dict(train_per_class=0), ValueError, "train_per_class"),
    ],
)
def test_textures_bad_arguments(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        load_textures(**kwargs)


def test_load_by_name():
    assert load("faces", seed=1).name == "faces"
    assert load("textures", seed=1, train_per_class=5, test_per_class=5).name == "textures"
    with pytest.raises(ValueError, match="dataset must be one of"):
        load("mnist")


def test_missing_skimage_gives_install_hint(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "skimage" or name.startswith("skimage."):
            raise ImportError("No module named 'skimage'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r'pip install "cnnpool\[examples\]"'):
        load_faces()


def test_import_cnnpool_does_not_import_skimage_or_matplotlib():
    import os
    import subprocess
    import sys

    code = (
        "import sys, cnnpool, cnnpool.datasets, cnnpool.experiments; "
        "bad = [m for m in ('skimage', 'matplotlib', 'scipy', 'joblib', 'tqdm') "
        "if m in sys.modules]; print(bad); assert not bad, bad"
    )
    # cwd: from the repository root, "python -c" would import the unbuilt source folder
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=here)


def test_textures_patch_norm_gives_each_patch_zero_mean_unit_std():
    d = load_textures(patch_size=16, train_per_class=20, test_per_class=10, patch_norm=True)
    for x in (d.x_train, d.x_test):
        np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), 0, atol=1e-5)
        np.testing.assert_allclose(x.std(axis=(1, 2, 3)), 1, atol=1e-4)
    assert d.info["patch_norm"] is True
