"""The comparison end to end: CLI, results files, custom strategies, failures, examples."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("skimage")
pytest.importorskip("scipy")
pytest.importorskip("matplotlib")
pytest.importorskip("joblib")

import matplotlib.image  # noqa: E402

import cnnpool as cp  # noqa: E402
from cnnpool.experiments import (  # noqa: E402
    SCHEMA,
    Settings,
    cli,
    resolve_strategy,
    results_table,
    run_experiment,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TINY = ["--dataset", "faces", "--seeds", "1", "--epochs", "1", "--quiet", "--jobs", "1"]


# --------------------------------------------------------------- the checks
def check_schema(d):
    """results.json: every setting, per-seed per-epoch metrics, versions, timings."""
    assert d["schema"] == SCHEMA
    s = d["settings"]
    for key, kind in [
        ("dataset", str),
        ("pools", list),
        ("seeds", list),
        ("epochs", int),
        ("batch_size", int),
        ("lr", float),
        ("optimizer", str),
        ("jobs", int),
        ("arch", str),
        ("kernel_size", int),
        ("dtype", str),
    ]:
        assert isinstance(s[key], kind), key
    for key in ("cnnpool", "numpy", "python", "scipy", "skimage", "matplotlib", "joblib"):
        assert isinstance(d["versions"][key], str), key
    assert d["versions"]["cnnpool"] == cp.__version__
    assert d["timing"]["wall_seconds"] > 0
    assert d["paired_design"]["same_initial_weights_per_seed"] is True
    names = [x["name"] for x in d["strategies"]]
    assert len(d["runs"]) == len(names) * len(s["seeds"])
    for run in d["runs"]:
        assert run["strategy"] in names and run["seed"] in s["seeds"]
        assert run["status"] in ("ok", "diverged", "failed")
        assert isinstance(run["init_checksum"], (str, type(None)))
        if run["status"] == "ok":
            assert len(run["epochs"]) == s["epochs"]
            for i, e in enumerate(run["epochs"], 1):
                assert e["epoch"] == i
                assert 0 <= e["test_accuracy"] <= 1 and 0 <= e["train_accuracy"] <= 1
                assert e["train_loss"] >= 0 and e["seconds"] > 0
            assert run["final_test_accuracy"] == run["epochs"][-1]["test_accuracy"]
            assert run["seconds_per_epoch"] > 0
    for name in names:
        row = d["summary"][name]
        for key in ("test_accuracy", "final_train_loss", "final_test_loss", "seconds_per_epoch"):
            assert set(row[key]) >= {"mean", "low", "high", "half_width", "n"}
        assert row["runs"] == len(s["seeds"])
    assert len(d["comparisons"]) == len(names) * (len(names) - 1) // 2
    for c in d["comparisons"]:
        assert isinstance(c["test_accuracy"]["summary"], str)
        assert len(c["test_accuracy"]["differences"]) <= len(s["seeds"])


def check_png(path):
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
    colours = np.unique(img.reshape(-1, img.shape[-1])[::5], axis=0)
    assert len(colours) > 20, f"{path} is (nearly) one colour"


def read_json(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)  # strict: NaN would fail the schema's number checks below


# ------------------------------------------------------------ end to end
def test_tiny_cli_run_writes_every_file(tmp_path, capsys):
    out = tmp_path / "res"
    assert cli.main(TINY + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "max" in printed and "mean" in printed
    assert "One seed is an anecdote" in printed  # n = 1: no p-value, and it says so

    d = read_json(out / "results.json")
    check_schema(d)
    assert d["settings"]["seeds"] == [0] and d["settings"]["epochs"] == 1
    assert [x["name"] for x in d["strategies"]] == ["max", "mean"]
    assert d["comparisons"][0]["test_accuracy"]["pvalue"] is None
    text = (out / "results.md").read_text(encoding="utf-8")
    assert text.startswith("# Pooling comparison") and "| max |" in text and "| mean |" in text
    assert "(1 seed, no CI)" in text
    check_png(out / "curves.png")
    check_png(out / "routing.png")
    raw = (out / "results.json").read_text(encoding="utf-8")
    assert "NaN" not in raw and "Infinity" not in raw


def test_paired_design_same_weights_and_data_for_every_strategy():
    res = run_experiment(
        Settings(
            dataset="faces", seeds=(3, 4), epochs=1, pools=("max", "mean"), arch="c2-p-c4-p-fc"
        )
    )
    check_schema(res)
    for seed in (3, 4):
        runs = [r for r in res["runs"] if r["seed"] == seed]
        assert len({r["init_checksum"] for r in runs}) == 1
    assert res["runs"][0]["init_checksum"] != res["runs"][2]["init_checksum"]
    # a different pooling changes the results (the runs are not copies of each other)
    by = {(r["strategy"], r["seed"]): r for r in res["runs"]}
    assert by[("max", 3)]["epochs"][0]["train_loss"] != by[("mean", 3)]["epochs"][0]["train_loss"]


def test_runs_are_reproducible():
    kw = dict(dataset="faces", seeds=(1,), epochs=1, arch="c2-p-c4-p-fc")
    a, b = run_experiment(**kw), run_experiment(**kw)
    for ra, rb in zip(a["runs"], b["runs"], strict=True):
        assert ra["epochs"][0]["train_loss"] == rb["epochs"][0]["train_loss"]
        assert ra["final_test_accuracy"] == rb["final_test_accuracy"]


def test_parallel_seeds_match_sequential(tmp_path):
    kw = dict(dataset="faces", seeds=(0, 1), epochs=1, arch="c2-p-c4-p-fc")
    seq = run_experiment(Settings(jobs=1, **kw))
    par = run_experiment(Settings(jobs=2, **kw))
    assert par["timing"]["jobs"] == 2
    for rs, rp in zip(seq["runs"], par["runs"], strict=True):
        assert (rs["strategy"], rs["seed"]) == (rp["strategy"], rp["seed"])
        assert rs["init_checksum"] == rp["init_checksum"]
        assert rs["final_test_accuracy"] == rp["final_test_accuracy"]
        assert rs["final_train_loss"] == pytest.approx(rp["final_train_loss"], rel=1e-4)


# ------------------------------------------------------- custom strategies
STRATEGY_MODULE = '''
import numpy as np
import cnnpool as cp


class SquarePool(cp.Pool2d):
    """sqrt(mean(x^2)) over the window, written as a user would."""

    strategy_name = "rms"

    def pool(self, windows):
        return np.sqrt(np.mean(windows ** 2, axis=-1) + 1e-12)

    def route(self, windows, pooled):
        return windows / (windows.shape[-1] * pooled[..., None])


NOT_A_POOL = 3
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    path = tmp_path / "my_pools_for_test.py"
    path.write_text(textwrap.dedent(STRATEGY_MODULE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return path


def test_named_custom_strategy_enters_the_run(tmp_path, user_module, capsys):
    out = tmp_path / "res"
    code = cli.main(
        TINY
        + [
            "--out",
            str(out),
            "--pool",
            "max",
            "--pool",
            "mean",
            "--pool",
            "my_pools_for_test:SquarePool",
        ]
    )
    assert code == 0
    d = read_json(out / "results.json")
    check_schema(d)
    assert [x["name"] for x in d["strategies"]] == ["max", "mean", "rms"]
    assert d["strategies"][2]["spec"] == "my_pools_for_test:SquarePool"
    assert d["summary"]["rms"]["failed"] == 0
    assert [(c["a"], c["b"]) for c in d["comparisons"]] == [
        ("max", "mean"),
        ("max", "rms"),
        ("mean", "rms"),
    ]
    assert "| rms |" in (out / "results.md").read_text(encoding="utf-8")
    assert "rms" in capsys.readouterr().out


def test_custom_strategy_by_file_path(user_module):
    s = resolve_strategy(f"{user_module}:SquarePool")
    assert s.name == "rms" and issubclass(s.cls, cp.Pool2d)
    assert s.origin == f"{os.path.abspath(user_module)}:SquarePool"


@pytest.mark.parametrize(
    "spec, words",
    [
        ("my_pools_for_test:NOT_A_POOL", "not a subclass of cnnpool.Pool2d"),
        ("numpy:ndarray", "not a subclass of cnnpool.Pool2d"),
        ("my_pools_for_test:Missing", "has no 'Missing'"),
        ("no_such_module_xyz:Pool", "cannot import module"),
        ("cnnpool:Pool2d", "abstract base"),
        ("median", "use a short name"),
        ("nowhere/file.py:Pool", "no such file"),
    ],
)
def test_bad_strategy_is_refused_clearly(spec, words, user_module, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(TINY + ["--pool", spec])
    assert exc.value.code == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, words",
    [
        (["--seeds", "0"], "--seeds"),
        (["--seeds", "1,1"], "distinct"),
        (["--epochs", "0"], "--epochs"),
        (["--lr", "-1"], "--lr"),
        (["--dataset", "mnist"], "--dataset"),
        (["--pool", "max", "--pool", "max"], "same strategy"),
    ],
)
def test_bad_cli_arguments(args, words, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(args + ["--quiet"])
    assert exc.value.code == 2
    assert words in capsys.readouterr().err


# ------------------------------------------------- diverged and failed runs
class ExplodingPool(cp.MaxPool2d):
    """Max pooling whose output turns NaN from its 8th forward call on (per layer)."""

    strategy_name = "exploding"

    def __init__(self, kernel_size, stride=None):
        super().__init__(kernel_size, stride)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        y = super().forward(x)
        return y * np.nan if self.calls >= 8 else y


class BrokenPool(cp.Pool2d):
    strategy_name = "broken"

    def pool(self, windows):
        raise RuntimeError("bug in my strategy")


def test_diverged_and_failed_runs_are_recorded_not_dropped(tmp_path):
    from cnnpool.experiments import write_outputs

    # batch 16: 10 batches per epoch, so each pool's 8th forward falls in epoch 1
    res = run_experiment(
        Settings(
            dataset="faces",
            seeds=(0, 1),
            epochs=2,
            arch="c2-p-c4-p-fc",
            batch_size=16,
            pools=("max", ExplodingPool, BrokenPool),
        )
    )
    check_schema(res)
    runs = {(r["strategy"], r["seed"]): r for r in res["runs"]}
    boom = runs[("exploding", 0)]
    assert boom["status"] == "diverged" and boom["diverged_epoch"] == 1
    assert boom["final_test_accuracy"] is None and boom["epochs"][0]["train_loss"] is None
    broken = runs[("broken", 1)]
    assert broken["status"] == "failed" and "bug in my strategy" in broken["error"]
    assert runs[("max", 0)]["status"] == "ok"

    summary = res["summary"]
    assert summary["exploding"]["diverged"] == 2 and summary["exploding"]["diverged_seeds"] == [
        0,
        1,
    ]
    assert summary["broken"]["failed"] == 2
    assert summary["exploding"]["test_accuracy"]["n"] == 0
    comp = next(c for c in res["comparisons"] if c["b"] == "exploding")
    assert comp["test_accuracy"]["n_excluded"] == 2
    assert "diverged" in comp["test_accuracy"]["summary"]

    table = results_table(res)
    assert "| exploding |" in table and "2 (seed 0, 1)" in table
    assert "## Failed runs" in table and "bug in my strategy" in table
    paths = write_outputs(res, tmp_path / "out")
    check_png(paths["curves"])
    check_schema(read_json(paths["json"]))


def test_all_runs_failed_exit_code(tmp_path):
    code = cli.main(TINY + ["--out", str(tmp_path), "--pool", f"{__name__}:BrokenPool"])
    assert code == 1
    check_png(tmp_path / "routing.png")


def test_settings_validation():
    with pytest.raises(ValueError, match="dataset"):
        Settings(dataset="cifar")
    with pytest.raises(ValueError, match="optimizer"):
        Settings(optimizer="rmsprop")
    with pytest.raises(ValueError, match="seeds"):
        Settings(seeds=())
    with pytest.raises(ValueError, match="epochs"):
        Settings(epochs=0)


# ------------------------------------------------------------- examples
def _run_example(name, *args, cwd):
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_example_ray_sweep_says_what_it_needs_without_ray(tmp_path):
    """The README's manual Ray check: without Ray it stops with a one-line instruction."""
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['ray'] = None; "
            f"sys.argv = ['ray_sweep.py']; exec(open({str(EXAMPLES / 'ray_sweep.py')!r}).read())",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "this check needs Ray: pip install ray"


def test_example_compare_pooling(tmp_path):
    out = _run_example(
        "compare_pooling.py",
        "--dataset",
        "faces",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--out",
        "res",
        "--jobs",
        "1",
        cwd=tmp_path,
    )
    assert "cnnpool-compare: the same CNN" in out and "max − mean" in out
    check_schema(read_json(tmp_path / "res" / "results.json"))


def test_example_custom_pooling(tmp_path):
    out = _run_example(
        "custom_pooling.py",
        "--dataset",
        "faces",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--out",
        "res",
        "--jobs",
        "1",
        cwd=tmp_path,
    )
    assert "gradient check passed" in out
    d = read_json(tmp_path / "res" / "results.json")
    assert [x["name"] for x in d["strategies"]] == ["max", "mean", "softmax"]
    assert d["summary"]["softmax"]["failed"] == 0


def test_example_seed_network(tmp_path):
    out = _run_example("seed_network.py", "--steps", "25", cwd=tmp_path)
    assert out.count("cnnpool's layers give the same numbers") == 4
    assert "argmax coordinates" in out and "MaxPool2d.indices" in out
    assert "no gradient gets through it" in out
    # the cost falls: the last SGD line's final cost is far below its first
    for line in (x for x in out.splitlines() if x.startswith("SGD")):
        first = float(line.split("0: ")[1].split(",")[0])
        last = float(line.rsplit("after training ", 1)[1])
        assert last < 1e-3 * first, line


def test_console_script_is_registered():
    tomllib = pytest.importorskip("tomllib")

    with open(ROOT / "pyproject.toml", "rb") as fh:
        meta = tomllib.load(fh)
    assert meta["project"]["scripts"]["cnnpool-compare"] == "cnnpool.experiments.cli:main"
    assert callable(cli.main) and math.isfinite(cli.DEFAULT_LR["adam"])


# ------------------------------------------------------------ module layout
def test_public_names_import_from_the_package():
    """README and docs import the experiment's public names from ``cnnpool.experiments``."""
    import cnnpool.experiments as ex

    for name in ex.__all__:
        assert getattr(ex, name) is not None, name
    from cnnpool.experiments import Settings as S
    from cnnpool.experiments.settings import Settings as S2

    assert S is S2
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ex.nope  # noqa: B018


def test_cli_uses_no_private_helper_of_another_module():
    """The command uses the modules' public names only (one idea per module)."""
    import ast

    tree = ast.parse((ROOT / "cnnpool" / "experiments" / "cli.py").read_text())
    private = [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert private == []
