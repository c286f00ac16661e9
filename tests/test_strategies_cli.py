"""Every built-in strategy by its short name: the registry, and cnnpool-compare running them all."""

import json

import numpy as np
import pytest

import cnnpool as cp
from cnnpool import registry

EXPECTED = {"max", "mean", "avg", "lp", "stochastic", "mixed", "gated"}


def test_registry_names_build_fresh_layers():
    assert set(registry.pool_names()) >= EXPECTED
    x = np.abs(np.random.default_rng(0).standard_normal((2, 3, 8, 8))).astype(np.float32)
    for name in registry.pool_names():
        a = cp.make_pool(name, 2, seed=1)
        b = cp.make_pool(name, 2, seed=1)
        assert isinstance(a, cp.Pool2d) and a is not b
        assert a.stride == (2, 2) and cp.make_pool(name, 3, 1).stride == (1, 1)
        y = a(x)
        assert y.shape == (2, 3, 4, 4) and y.dtype == np.float32
        np.testing.assert_array_equal(y, b(x))  # same seed, same draws
        assert a.backward(np.ones_like(y)).shape == x.shape


def test_registry_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown pooling strategy 'nope'.*gated"):
        cp.make_pool("nope", 2)


def test_compare_cli_runs_every_short_name(tmp_path, capsys):
    pytest.importorskip("skimage")
    pytest.importorskip("scipy")
    pytest.importorskip("matplotlib")
    pytest.importorskip("joblib")
    from cnnpool.experiments import cli

    # 'avg' is another name of 'mean': the tool refuses one strategy under two names
    names = [n for n in registry.pool_names() if n != "avg"]
    argv = [
        "--dataset",
        "faces",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--quiet",
        "--jobs",
        "1",
        "--out",
        str(tmp_path),
    ]
    for name in names:
        argv += ["--pool", name]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    with open(tmp_path / "results.json", encoding="utf-8") as fh:
        results = json.load(fh)
    assert [s["name"] for s in results["strategies"]] == names
    for run in results["runs"]:
        assert run["status"] == "ok", (run["strategy"], run.get("error"))
        assert 0.0 <= run["epochs"][-1]["test_accuracy"] <= 1.0
        assert np.isfinite(run["epochs"][-1]["train_loss"])
    for name in names:
        assert name in printed
    # the learnable strategies train their own parameters on top of the shared ones
    params = {r["strategy"]: r["parameters"] for r in results["runs"]}
    assert params["mixed"] == params["max"] + 2  # one alpha per pooling layer
    assert params["gated"] == params["max"] + 2 * 4  # one 2x2 gate per pooling layer


def test_compare_help_lists_every_short_name():
    pytest.importorskip("scipy")
    from cnnpool.experiments import cli

    text = " ".join(cli.build_parser().format_help().split())
    assert "a short name (" + ", ".join(registry.pool_names()) + ")" in text
