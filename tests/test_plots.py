"""cnnpool.experiments.plots: routing maps by the library's layers, PNGs that open."""

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib.image  # noqa: E402

from cnnpool.experiments.plots import plot_curves, plot_routing, routing_maps  # noqa: E402


def _nontrivial_png(path):
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    flat = img.reshape(-1, img.shape[-1])
    assert len(np.unique(flat[::7], axis=0)) > 20, "image is (nearly) a single colour"
    return img


def test_routing_maps_textbook_4x4():
    """1..16 in a 4x4, 2x2 windows: max routes to 6, 8, 14, 16; mean spreads 1/4."""
    fm = np.arange(1.0, 17.0).reshape(4, 4)
    maps = routing_maps(fm, 2)
    np.testing.assert_array_equal(maps["max_pooled"], [[6, 8], [14, 16]])
    np.testing.assert_array_equal(maps["mean_pooled"], [[3.5, 5.5], [11.5, 13.5]])
    expected = np.zeros((4, 4))
    expected[[1, 1, 3, 3], [1, 3, 1, 3]] = 1
    np.testing.assert_array_equal(maps["max_route"], expected)
    np.testing.assert_array_equal(maps["mean_route"], np.full((4, 4), 0.25))


def test_routing_maps_odd_size_and_ties():
    fm = np.zeros((5, 5))
    fm[2, 3] = 1.0
    maps = routing_maps(fm, 2)
    # every window gives one unit of gradient to one element; the 5th row/col gets none
    assert maps["max_route"].sum() == 4 and maps["max_route"][4].sum() == 0
    assert maps["max_route"][2, 3] == 1  # the winner
    assert maps["max_route"][0, 0] == 1  # a window of equal zeros: the first wins
    assert maps["mean_route"][:4, :4].min() == 0.25 and maps["mean_route"][4].sum() == 0


def test_routing_maps_rejects_non_2d():
    with pytest.raises(ValueError, match="2-D"):
        routing_maps(np.zeros((1, 4, 4)))


def test_plot_routing_writes_a_real_picture(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.random((25, 25))
    fm = np.maximum(0, rng.standard_normal((23, 23)))
    path = plot_routing(fm, tmp_path / "sub" / "routing.png", image=img, title="t")
    _nontrivial_png(path)
    _nontrivial_png(plot_routing(fm[:8, :8], tmp_path / "small.png"))


def test_plot_curves_writes_a_real_picture(tmp_path):
    rng = np.random.default_rng(1)
    loss = 1 / np.arange(1, 6) + 0.05 * rng.random((3, 5))
    acc = 0.5 + 0.4 * (1 - 1 / np.arange(1, 6)) + 0.02 * rng.random((3, 5))
    loss_nan = loss.copy()
    loss_nan[1, 2:] = np.nan
    curves = {
        "max": {"train_loss": loss, "test_accuracy": acc},
        "mean": {"train_loss": loss_nan, "test_accuracy": acc - 0.05},
        "all-diverged": {
            "train_loss": np.full((3, 5), np.nan),
            "test_accuracy": np.full((3, 5), 1 / 3),
            "diverged": [1, 1, 1],
        },
    }
    _nontrivial_png(plot_curves(curves, tmp_path / "curves.png", chance=0.5, title="x"))
    one = {"max": {"train_loss": [[0.7]], "test_accuracy": [[0.6]]}}
    _nontrivial_png(plot_curves(one, tmp_path / "one.png"))


def test_plots_never_import_pyplot(tmp_path):
    import subprocess

    code = (
        "import sys, numpy as np\n"
        "from cnnpool.experiments.plots import plot_routing\n"
        f"plot_routing(np.eye(6), {str(tmp_path / 'r.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    # cwd: from the repository root, "python -c" would import the unbuilt source folder
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
