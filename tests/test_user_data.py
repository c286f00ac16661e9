"""Your own images: a folder of class subfolders or an .npz file, and every bad-data case.

The pictures are cut from images that ship with scikit-image, written as
PNG/JPEG/TIFF files into a temporary folder the way a user would have them.
"""

import io
import json
import logging
import zipfile

import numpy as np
import pytest

pytest.importorskip("skimage")

from skimage import data as skdata  # noqa: E402
from skimage import io as skio  # noqa: E402

from cnnpool.datasets import DataError, load, load_folder, load_npz  # noqa: E402
from cnnpool.datasets import folder as folder_module  # noqa: E402

PICTURES = ("astronaut", "coffee", "chelsea")  # RGB pictures of scikit-image


def make_folder(root, per_class=12, side=64, rgb=True, ext="png", classes=PICTURES, seed=0):
    """``root/<picture>/<i>.<ext>``: random ``side`` x ``side`` crops of each picture."""
    rng = np.random.default_rng(seed)
    for name in classes:
        img = getattr(skdata, name)()
        if not rgb:
            img = (img @ [0.2125, 0.7154, 0.0721]).astype(np.uint8)
        (root / name).mkdir(parents=True, exist_ok=True)
        h, w = img.shape[:2]
        for i in range(per_class):
            r, c = rng.integers(0, h - side), rng.integers(0, w - side)
            skio.imsave(
                root / name / f"{i:03d}.{ext}",
                img[r : r + side, c : c + side],
                check_contrast=False,
            )
    return root


@pytest.fixture(autouse=True)
def _fresh_cache():
    folder_module._CACHE.clear()
    yield
    folder_module._CACHE.clear()


# ------------------------------------------------------------------- folders
def test_folder_rgb_split_by_seed(tmp_path):
    root = make_folder(tmp_path / "pics", per_class=12)
    d = load_folder(root, seed=0)
    assert d.classes == ("astronaut", "chelsea", "coffee")  # sorted subfolder names
    assert d.x_train.shape == (27, 3, 64, 64) and d.x_test.shape == (9, 3, 64, 64)
    assert d.x_train.dtype == np.float32 and 0 <= d.x_train.min() and d.x_train.max() <= 1
    assert np.bincount(d.y_test).tolist() == [3, 3, 3]  # stratified: 25% of each class
    assert d.info["color"] == "rgb" and d.info["split"].startswith("stratified")
    # the pixels are the file's, scaled to [0, 1]
    first = skio.imread(root / "astronaut" / "000.png").astype(np.float32) / 255
    x_all = np.concatenate([d.x_train, d.x_test])
    assert any(np.array_equal(x.transpose(1, 2, 0), first) for x in x_all)
    # another seed, another split; the same seed, the same split
    assert not np.array_equal(load_folder(root, seed=1).y_test, d.y_test) or not np.array_equal(
        load_folder(root, seed=1).x_test, d.x_test
    )
    assert np.array_equal(load_folder(root, seed=0).x_test, d.x_test)


def test_folder_color_and_size(tmp_path):
    root = make_folder(tmp_path / "pics", per_class=4, side=40)
    gray = load_folder(root, color="gray", size=32)
    assert gray.x_train.shape[1:] == (1, 32, 32) and gray.info["color"] == "gray"
    crop = load_folder(root, size="16x24", fit_mode="crop")
    assert crop.x_train.shape[1:] == (3, 16, 24) and crop.info["fit"] == "crop"
    gray_root = make_folder(tmp_path / "gray", per_class=4, side=20, rgb=False, ext="tif")
    g = load_folder(gray_root)
    assert g.x_train.shape[1:] == (1, 20, 20) and g.info["color"] == "gray"
    assert load_folder(gray_root, color="rgb").x_train.shape[1:] == (3, 20, 20)


def test_crop_keeps_the_centre(tmp_path):
    root = tmp_path / "c"
    for k, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i in range(2):
            img = np.zeros((20, 40), np.uint8)
            img[:, 10:30] = 200 + k  # the centre 20x20 is bright, the sides dark
            skio.imsave(root / name / f"{i}.png", img, check_contrast=False)
    d = load_folder(root, size=10, fit_mode="crop")
    assert d.x_train.min() > 0.7  # only the bright centre survives, scaled to 10x10


def test_fixed_split_folders(tmp_path):
    make_folder(tmp_path / "d" / "train", per_class=6, classes=("astronaut", "coffee"))
    make_folder(tmp_path / "d" / "test", per_class=2, classes=("astronaut", "coffee"), seed=1)
    d0, d1 = load_folder(tmp_path / "d", seed=0), load_folder(tmp_path / "d", seed=5)
    assert d0.x_train.shape[0] == 12 and d0.x_test.shape[0] == 4
    assert np.array_equal(d0.x_test, d1.x_test)  # a fixed split does not depend on the seed
    assert d0.info["split"].startswith("fixed")


def test_load_dispatches_on_paths(tmp_path):
    root = make_folder(tmp_path / "pics", per_class=4, side=16)
    assert load(str(root)).x_train.shape[1:] == (3, 16, 16)


def test_progress_bar_while_reading(tmp_path, capsys):
    root = make_folder(tmp_path / "pics", per_class=4, side=16)
    load_folder(root, progress=True)
    err = capsys.readouterr().err
    assert "reading pics" in err and "12/12" in err


def test_unchanged_folder_is_read_once_and_a_changed_one_again(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pics", per_class=4, side=16)
    calls = []
    real = folder_module._read
    monkeypatch.setattr(folder_module, "_read", lambda *a: calls.append(1) or real(*a))
    load_folder(root, seed=0)
    load_folder(root, seed=1)
    assert len(calls) == 1
    skio.imsave(root / "coffee" / "new.png", np.zeros((16, 16, 3), np.uint8), check_contrast=False)
    assert load_folder(root, seed=1).x_train.shape[0] + load_folder(root).x_test.shape[0] == 13
    assert len(calls) == 2


# ------------------------------------------------------------ bad folders
def _corrupt(path):
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)


def test_corrupt_and_non_image_files_are_skipped_and_counted(tmp_path, caplog):
    root = make_folder(tmp_path / "pics", per_class=4, side=16)
    _corrupt(root / "coffee" / "broken.png")
    (root / "chelsea" / "notes.txt").write_text("not a picture")
    (root / "chelsea" / ".hidden").write_text("ignored")
    with caplog.at_level(logging.WARNING, logger="cnnpool.datasets"):
        d = load_folder(root)
    assert len(d.x_train) + len(d.x_test) == 12
    skipped = dict(d.info["skipped"])
    assert set(skipped) == {"coffee/broken.png", "chelsea/notes.txt"}
    assert "skipped 2 of 14 files" in caplog.text
    from cnnpool.experiments.data import dataset_info

    info = dataset_info(d)
    assert info["files_skipped"] == 2 and {f for f, _ in info["skipped"]} == set(skipped)
    assert "coffee/broken.png" in caplog.text and "chelsea/notes.txt" in caplog.text
    with pytest.raises(
        DataError, match=r"(broken\.png|notes\.txt)' is not a readable image.*--strict"
    ):
        folder_module._CACHE.clear()
        load_folder(root, strict=True)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda r: None, "does not exist"),
        (lambda r: r.mkdir(), "is empty"),
        (lambda r: (r.mkdir(), (r / "a.png").write_bytes(b"x")), "has no class subfolders"),
        (lambda r: make_folder(r, per_class=3, classes=("coffee",)), "one class only ('coffee')"),
        (
            lambda r: (
                make_folder(r, per_class=3, classes=("coffee", "astronaut")),
                (r / "cat").mkdir(),
            ),
            "class 'cat'",
        ),
        (
            lambda r: (
                make_folder(r, per_class=3, classes=("coffee",)),
                make_folder(r, per_class=1, classes=("chelsea",)),
            ),
            "class 'chelsea' has 1 image(s); a train/test split needs at least 2 per class",
        ),
        (
            lambda r: (
                make_folder(r, per_class=3, classes=("coffee",)),
                (r / "chelsea").mkdir(),
                _corrupt(r / "chelsea" / "x.png"),
            ),
            "class 'chelsea' has no readable image",
        ),
        (
            lambda r: make_folder(r / "train", per_class=2, classes=("coffee", "chelsea")),
            "has train/ but no test/",
        ),
        (
            lambda r: (
                make_folder(r / "train", per_class=2, classes=("coffee", "chelsea")),
                make_folder(r / "test", per_class=2, classes=("coffee", "astronaut")),
            ),
            "test/ has classes that train/ lacks: astronaut",
        ),
    ],
    ids=[
        "missing",
        "empty",
        "no-subfolders",
        "one-class",
        "empty-class",
        "too-few-for-split",
        "only-corrupt",
        "train-no-test",
        "test-class-not-in-train",
    ],
)
def test_bad_folders_say_what_is_wrong(tmp_path, make, words, capsys):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(DataError) as exc:
        load_folder(root)
    assert words in str(exc.value)
    # and the command says the same in one line, exit status 2, no traceback
    from cnnpool.experiments import cli

    folder_module._CACHE.clear()
    with pytest.raises(SystemExit) as ex:
        cli.main(["--data", str(root), "--quiet", "--out", str(tmp_path / "out")])
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written, nothing lost


def test_mixed_sizes_need_a_size(tmp_path):
    root = make_folder(tmp_path / "pics", per_class=3, side=16, classes=("coffee",))
    make_folder(root, per_class=3, side=24, classes=("chelsea",))
    with pytest.raises(DataError, match=r"2 different sizes .*--size"):
        load_folder(root)
    assert load_folder(root, size=20).x_train.shape[1:] == (3, 20, 20)


# ---------------------------------------------------------------------- npz
def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _good(n_train=12, n_test=6, shape=(1, 8, 8)):
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, *shape)).astype(np.uint8),
        "y_train": np.arange(n_train) % 3,
        "x_test": rng.integers(0, 256, (n_test, *shape)).astype(np.uint8),
        "y_test": np.arange(n_test) % 3,
    }


def test_npz_nchw_and_nhw(tmp_path):
    arrays = _good()
    d = load_npz(_npz(tmp_path / "a.npz", **arrays))
    assert d.x_train.shape == (12, 1, 8, 8) and d.classes == ("0", "1", "2")
    assert np.allclose(d.x_train, arrays["x_train"] / 255)
    arrays = _good(shape=(8, 8))
    arrays["classes"] = np.array(["cat", "dog", "owl"])
    d = load(str(_npz(tmp_path / "b.npz", **arrays)), size=4, color="rgb")
    assert d.x_test.shape == (6, 3, 4, 4) and d.classes == ("cat", "dog", "owl")
    assert d.name == "b"


def _header_only_npz(path, shape, dtype="<f8", body=b""):
    """An npz whose x_train header declares ``shape`` but holds only ``body``."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        head, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x_train.npy", b"\x93NUMPY\x01\x00" + head.getvalue()[8:] + body)
        for k in ("y_train", "x_test", "y_test"):
            z.writestr(f"{k}.npy", buf.getvalue())
    return path


@pytest.mark.parametrize(
    "change, words",
    [
        (
            lambda a: a.update(y_train=a["y_train"][:-1]),
            "x_train holds 12 images but y_train holds 11 labels",
        ),
        (
            lambda a: a.update(y_test=np.r_[a["y_test"][:-1], 7]),
            "y_test holds labels out of range 0..2",
        ),
        (
            lambda a: a.update(y_train=np.r_[-1, a["y_train"][1:]]),
            "y_train holds labels out of range",
        ),
        (
            lambda a: a.update(classes=np.array(["a", "b"])),
            "y_train holds labels out of range 0..1",
        ),
        (lambda a: a.pop("y_test"), "lacks y_test"),
        (
            lambda a: a.update(y_train=np.zeros(12, np.int64), y_test=np.zeros(6, np.int64)),
            "one class only",
        ),
        (lambda a: a.update(y_train=a["y_train"] + 0.5), "must hold integer class numbers"),
        (lambda a: a.update(x_train=np.zeros((12, 5, 8, 8))), "NCHW with 1 or 3 channels"),
        (lambda a: a.update(x_train=np.full((12, 1, 8, 8), np.nan)), "NaN or infinite"),
        (lambda a: a.update(x_test=np.zeros((6, 1, 9, 9))), "give a size"),
    ],
    ids=[
        "lengths",
        "label-too-big",
        "label-negative",
        "labels-vs-classes",
        "missing-array",
        "single-class",
        "float-labels",
        "channels",
        "nan-pixels",
        "sizes",
    ],
)
def test_bad_npz_says_what_is_wrong(tmp_path, change, words):
    arrays = _good()
    change(arrays)
    with pytest.raises(DataError) as exc:
        load_npz(_npz(tmp_path / "bad.npz", **arrays))
    assert words in str(exc.value)


def test_npz_from_a_stranger(tmp_path):
    # object arrays would need pickle: refused, nothing unpickled
    arrays = _good()
    arrays["x_train"] = np.array([object()] * 12, dtype=object)
    with pytest.raises(DataError, match="holds Python objects"):
        load_npz(_npz(tmp_path / "obj.npz", **arrays))
    # a header declaring 8 TB is refused before anything is allocated
    with pytest.raises(DataError, match=r"declares shape \(1000000, 3, 1000, 1000\).*more than"):
        load_npz(_header_only_npz(tmp_path / "huge.npz", (10**6, 3, 1000, 1000)))
    # a header declaring more than the member holds is refused too (truncated file)
    with pytest.raises(DataError, match="truncated or inconsistent"):
        load_npz(_header_only_npz(tmp_path / "short.npz", (1000, 1, 8, 8), body=b"\0" * 64))
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DataError, match="is not an .npz file"):
        load_npz(tmp_path / "text.npz")
    with pytest.raises(DataError, match="does not exist"):
        load_npz(tmp_path / "nowhere.npz")


# ------------------------------------------------------------ end to end
def test_compare_on_a_folder_end_to_end(tmp_path, capsys):
    """The target's folder (3 classes x 200 RGB 64x64 pictures), max vs mean, small run."""
    from cnnpool.experiments import cli

    root = make_folder(tmp_path / "pics", per_class=200, side=64)
    out = tmp_path / "out"
    argv = ["--data", str(root), "--size", "32", "--color", "rgb", "--seeds", "2", "--epochs", "1"]
    assert cli.main(argv + ["--jobs", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pics: 450 train / 150 test, 32x32 RGB, classes astronaut, chelsea, coffee" in printed
    assert "stratified by seed" in printed and "resize to 32x32" in printed
    d = json.loads((out / "results.json").read_text())
    assert d["dataset"]["image_shape"] == [3, 32, 32] and d["dataset"]["color"] == "rgb"
    assert d["settings"]["dataset"] == str(root) and d["settings"]["size"] == [32, 32]
    assert all(r["status"] == "ok" for r in d["runs"])
    assert d["paired_design"]["same_initial_weights_per_seed"] is True
    md = (out / "results.md").read_text()
    assert f"Data: {root} (stratified by seed" in md and "rgb pictures resized to 32x32" in md


def test_cli_refuses_mixing_builtin_and_own_options(capsys):
    from cnnpool.experiments import cli

    for argv, words in [
        (["--dataset", "faces", "--data", "x"], "not both"),
        (["--size", "32"], "apply to your own images"),
        (["--lr-grid", "0.1,0.2"], "add --tune-lr"),
    ]:
        with pytest.raises(SystemExit) as ex:
            cli.main(argv + ["--quiet"])
        assert ex.value.code == 2
        assert words in capsys.readouterr().err


def _broken_pool_class():
    import cnnpool as cp

    class Broken(cp.Pool2d):
        strategy_name = "broken"

        def pool(self, windows):
            raise RuntimeError("bug in my strategy")

    return Broken


def test_every_run_failed_on_a_folder_still_writes_every_file(tmp_path, monkeypatch):
    from cnnpool.experiments import Settings, run_experiment, write_outputs

    root = make_folder(tmp_path / "pics", per_class=4, side=16)
    monkeypatch.chdir(tmp_path / "pics" / "coffee")  # the folder's name is not a path from here
    res = run_experiment(
        Settings(dataset=str(root), pools=(_broken_pool_class(),), seeds=(0,), epochs=1)
    )
    assert [r["status"] for r in res["runs"]] == ["failed"]
    paths = write_outputs(res, tmp_path / "out")
    assert (tmp_path / "out" / "routing.png").stat().st_size > 1000
    assert set(paths) == {"json", "md", "curves", "paired", "routing", "html"}


def test_strict_from_the_command_line(tmp_path, capsys):
    from cnnpool.experiments import cli

    root = make_folder(tmp_path / "pics", per_class=4, side=16)
    _corrupt(root / "coffee" / "broken.png")
    with pytest.raises(SystemExit) as ex:
        cli.main(["--data", str(root), "--strict", "--quiet", "--out", str(tmp_path / "o")])
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert "broken.png' is not a readable image" in err and "Traceback" not in err


def test_workers_match_one_process_on_a_folder_with_tuning(tmp_path):
    """Seeds in joblib workers read the folder and rebuild 'lp(norm=3)' themselves: same numbers."""
    from cnnpool.experiments import Settings, run_experiment

    root = make_folder(tmp_path / "pics", per_class=8, side=16)
    kw = dict(
        dataset=str(root),
        pools=("max", "lp(norm=3)"),
        seeds=(0, 1),
        epochs=1,
        tune_lr=True,
        lr_grid=(0.001, 0.01),
        color="gray",
        size=12,
        fit="crop",
    )
    one, two = run_experiment(Settings(jobs=1, **kw)), run_experiment(Settings(jobs=2, **kw))
    assert one["tuning"]["runs"] == two["tuning"]["runs"]
    assert one["tuning"]["chosen"] == two["tuning"]["chosen"]
    key = lambda r: (r["strategy"], r["seed"])  # noqa: E731
    for a, b in zip(sorted(one["runs"], key=key), sorted(two["runs"], key=key), strict=True):
        assert a["final_test_accuracy"] == b["final_test_accuracy"]
        assert a["init_checksum"] == b["init_checksum"]
    assert one["dataset"]["image_shape"] == [1, 12, 12] and one["dataset"]["fit"] == "crop"
