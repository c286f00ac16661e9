"""The comparison's protocol: learning rates chosen without the test set, Holm, honest intervals.

Also the ``--arch`` network spec (the default is the network the comparison
has always trained) and runs that stay at chance ("did not learn").
"""

import json

import numpy as np
import pytest

pytest.importorskip("skimage")
pytest.importorskip("scipy")
pytest.importorskip("joblib")

import cnnpool as cp  # noqa: E402
from cnnpool.datasets import load_faces  # noqa: E402
from cnnpool.experiments import Settings, build_model, cli, run_experiment  # noqa: E402
from cnnpool.experiments.arch import parse_arch  # noqa: E402
from cnnpool.experiments.stats import (  # noqa: E402
    format_interval,
    holm,
    mean_ci,
    paired_comparison,
    with_holm,
)
from cnnpool.experiments.strategies import resolve_strategies  # noqa: E402
from cnnpool.experiments.summary import did_not_learn  # noqa: E402
from cnnpool.experiments.tuning import tune_learning_rates  # noqa: E402

SMALL = dict(seeds=(0, 1), epochs=2, jobs=1)
FACES = dict(dataset="faces", **SMALL)


# ---------------------------------------------------------------------- Holm
def test_holm_against_a_hand_computed_example():
    # m = 4.  Sorted: 0.005, 0.01, 0.03, 0.04.
    #   0.005 * 4 = 0.02
    #   0.01  * 3 = 0.03
    #   0.03  * 2 = 0.06
    #   0.04  * 1 = 0.04 -> 0.06 (never below the previous step)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # a missing test does not count in m; adjusted values are capped at 1
    assert holm([0.2, None, 0.9]) == pytest.approx([0.4, None, 0.9])
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    assert holm([0.03]) == [0.03]


def test_holm_changes_the_verdict_and_says_so():
    from dataclasses import replace

    rng = np.random.default_rng(3)
    base = paired_comparison(rng.random(10), rng.random(10), "a", "b")
    # three comparisons with raw p-values 0.02, 0.5, 0.03 (t-test only)
    comps = [
        replace(base, name_a=f"s{k}", t_pvalue=p, wilcoxon_pvalue=None)
        for k, p in enumerate((0.02, 0.5, 0.03))
    ]
    adjusted = with_holm(comps)
    assert [c.p_holm for c in adjusted] == pytest.approx([0.06, 0.5, 0.06])
    assert all(c.n_comparisons == 3 for c in adjusted)
    text = adjusted[0].summary
    assert "paired t-test p = 0.02" in text  # the raw value is still shown
    assert "Holm-adjusted over 3 comparisons p = 0.06" in text
    assert "within the seed-to-seed noise (Holm-adjusted p ≥ 0.05)" in text  # not significant
    d = adjusted[0].to_dict()
    assert d["p_holm"] == pytest.approx(0.06) and d["n_comparisons"] == 3
    # one comparison: nothing to adjust, the sentence says p as before
    alone = with_holm(comps[:1])[0]
    assert alone.p_holm == 0.02 and "Holm" not in alone.summary
    assert "larger than the seed-to-seed noise (p < 0.05)" in alone.summary


def test_effect_size_is_cohens_dz():
    c = paired_comparison([3.0, 4.0, 5.0], [2.0, 2.0, 2.0], scale=1.0)
    # differences 1, 2, 3: mean 2, sd 1
    assert c.effect_size == pytest.approx(2.0)
    assert "effect size d_z = 2.00" in c.summary
    assert paired_comparison([1.0, 2.0], [0.0, 1.0]).effect_size is None  # zero spread


# --------------------------------------------------------- honest intervals
def test_interval_clipped_to_the_valid_range():
    iv = mean_ci([1.0, 1.0, 0.9], bounds=(0.0, 1.0))
    assert iv.clipped and iv.high == 1.0 and iv.low == pytest.approx(iv.mean - iv.half_width)
    assert format_interval(iv, 100, 1).endswith("to 100.0)")
    loss = mean_ci([0.01, 0.5, 0.02], bounds=(0.0, None))
    assert loss.clipped and loss.low == 0.0 and loss.high > 0.5
    inside = mean_ci([0.5, 0.6, 0.55], bounds=(0.0, 1.0))
    assert not inside.clipped and "±" in format_interval(inside, 100, 1)


# ------------------------------------------------------------ did not learn
class FlatPool(cp.MeanPool2d):
    """Mean pooling times zero: nothing reaches the classifier but its bias."""

    strategy_name = "flat"

    def forward(self, x):
        return super().forward(x) * 0.0

    def backward(self, grad):
        return super().backward(grad) * 0.0


def test_run_at_chance_is_flagged_did_not_learn(tmp_path):
    res = run_experiment(Settings(pools=("max", FlatPool), **FACES))
    runs = {(r["strategy"], r["seed"]): r for r in res["runs"]}
    assert all(runs[("flat", s)]["did_not_learn"] for s in (0, 1))
    assert not any(runs[("max", s)]["did_not_learn"] for s in (0, 1))
    assert res["summary"]["flat"]["did_not_learn"] == 2
    assert res["summary"]["flat"]["did_not_learn_seeds"] == [0, 1]
    assert res["summary"]["flat"]["test_accuracy"]["n"] == 2  # kept in the means
    verdict = res["comparisons"][0]["test_accuracy"]["summary"]
    assert verdict.endswith("2 run(s) of flat did not learn (accuracy at chance).")
    from cnnpool.experiments.report import results_table, text_table

    assert "did not learn" in text_table(res)
    assert "| 2 (seed 0, 1) |" in results_table(res)


def test_did_not_learn_needs_both_accuracies_at_chance():
    run = {"status": "ok", "final_test_accuracy": 0.34, "epochs": [{"train_accuracy": 0.33}]}
    assert did_not_learn(run, 1 / 3, 1 / 3)
    assert not did_not_learn(dict(run, epochs=[{"train_accuracy": 0.9}]), 1 / 3, 1 / 3)
    assert not did_not_learn(dict(run, final_test_accuracy=0.6), 1 / 3, 1 / 3)
    assert not did_not_learn(dict(run, status="diverged"), 1 / 3, 1 / 3)


# ------------------------------------------------------------------ tune-lr
def _npz(path, data, y_test=None, x_test=None):
    np.savez(
        path,
        x_train=data.x_train,
        y_train=data.y_train,
        x_test=data.x_test if x_test is None else x_test,
        y_test=data.y_test if y_test is None else y_test,
    )
    return str(path)


def test_tune_lr_never_reads_the_test_split(tmp_path):
    faces = load_faces(seed=0)
    rng = np.random.default_rng(0)
    real = _npz(tmp_path / "real.npz", faces)
    shuffled = _npz(tmp_path / "shuffled.npz", faces, y_test=rng.permutation(faces.y_test))
    noise = _npz(
        tmp_path / "noise.npz", faces, x_test=rng.random(faces.x_test.shape).astype(np.float32)
    )
    choices = []
    for path in (real, shuffled, noise):
        settings = Settings(dataset=path, tune_lr=True, lr_grid=(0.001, 0.01, 0.1), **SMALL)
        t = tune_learning_rates(settings, resolve_strategies(["max", "mean"]))
        choices.append(t)
    assert choices[0]["chosen"] == choices[1]["chosen"] == choices[2]["chosen"]
    assert choices[0]["runs"] == choices[1]["runs"] == choices[2]["runs"]
    # the search did look at something: its scores differ between rates
    accs = [g["val_accuracy"] for g in choices[0]["chosen"]["max"]["grid"]]
    assert len(set(accs)) > 1


def test_tune_lr_end_to_end_saves_and_uses_the_chosen_rates(tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["--dataset", "faces", "--seeds", "2", "--epochs", "2", "--jobs", "1", "--quiet"]
    argv += ["--tune-lr", "--lr-grid", "0.001,0.01", "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "chosen on a validation split" in printed
    d = json.loads((out / "results.json").read_text())
    chosen = {n: c["lr"] for n, c in d["tuning"]["chosen"].items()}
    assert set(chosen) == {"max", "mean"} and set(chosen.values()) <= {0.001, 0.01}
    for s in d["strategies"]:
        assert s["lr"] == chosen[s["name"]]
    for r in d["runs"]:
        assert r["lr"] == chosen[r["strategy"]]  # the final runs train at the chosen rate
    assert d["settings"]["lr_grid"] == [0.001, 0.01]
    assert len(d["tuning"]["runs"]) == 2 * 2 * 2  # seeds x strategies x rates
    md = (out / "results.md").read_text()
    assert "## Learning rates" in md and "test images were not used" in md


def test_default_grid_brackets_the_rate():
    assert Settings(lr=0.003).grid() == (0.001, 0.003, 0.009)
    assert Settings(lr_grid=(0.1, 0.01)).grid() == (0.01, 0.1)
    with pytest.raises(ValueError, match="lr_grid"):
        Settings(lr_grid=(0.1, -1))


# --------------------------------------------------------------------- arch
def test_default_arch_is_the_historic_network():
    x = np.random.default_rng(1).random((2, 1, 32, 32)).astype(np.float32)
    model = build_model(lambda: cp.MaxPool2d(2), (1, 32, 32), 3, seed=5)
    rng = np.random.default_rng(5)  # the network as it was written before --arch
    conv1 = cp.Conv2d(1, 8, 3, padding=1, rng=rng)
    conv2 = cp.Conv2d(8, 16, 3, padding=1, rng=rng)
    linear = cp.Linear(16 * 8 * 8, 3, rng=rng)
    ref = cp.Sequential(
        conv1, cp.ReLU(), cp.MaxPool2d(2), conv2, cp.ReLU(), cp.MaxPool2d(2), cp.Flatten(), linear
    )
    assert [type(a) for a in model.layers] == [type(b) for b in ref.layers]
    assert np.array_equal(model.forward(x), ref.forward(x))


def test_arch_spec_builds_what_it_says():
    model = build_model(
        lambda: cp.MeanPool2d(2), (3, 16, 16), 4, arch="c4k5-p-c6-p-fc10-fc", seed=0
    )
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "Conv2d", "ReLU", "MeanPool2d", "Conv2d", "ReLU", "MeanPool2d",
        "Flatten", "Linear", "ReLU", "Linear",
    ]  # fmt: skip
    assert model.layers[0].weight.data.shape == (4, 3, 5, 5)
    assert model.forward(np.zeros((2, 3, 16, 16), np.float32)).shape == (2, 4)
    assert parse_arch((8, 16)) == parse_arch("c8-p-c16-p-fc")


@pytest.mark.parametrize(
    "spec, words",
    [
        ("c8-c16-fc", "no pooling layer"),
        ("c8-p-c16-p", "end with exactly one 'fc'"),
        ("c8-p-fc-fc", "end with exactly one 'fc'"),
        ("c8-x-fc", "element 2 'x'"),
        ("c8k4-p-fc", "odd kernel size"),
        ("c0-p-fc", "1 to 4096 channels"),
        ("c8-p-fc10-p-fc", "come before the fully connected"),
        ("-".join(["c2"] * 40) + "-p-fc", "at most 32 layers"),
    ],
)
def test_bad_arch_specs(spec, words):
    with pytest.raises(ValueError) as exc:
        parse_arch(spec)
    assert words in str(exc.value)


def test_arch_in_a_run_same_weights_per_seed_and_cli_errors(tmp_path, capsys):
    res = run_experiment(Settings(pools=("max", "mean", "lp"), arch="c4-p-c4k5-p-fc8-fc", **FACES))
    assert res["paired_design"]["same_initial_weights_per_seed"] is True
    checks = {}
    for r in res["runs"]:
        checks.setdefault(r["seed"], set()).add(r["init_checksum"])
    assert all(len(c) == 1 for c in checks.values()) and len(checks) == 2
    assert res["architecture"]["spec"] == "c4-p-c4k5-p-fc8-fc"
    assert "conv5x5(4)" in res["architecture"]["description"]
    # a network whose pooling shrinks 25x25 faces to nothing: one line, exit 2
    with pytest.raises(SystemExit) as ex:
        cli.main(["--dataset", "faces", "--arch", "c4-p-p-p-p-p-fc", "--quiet"])
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert "pooling layer 6 gets 1x1 feature maps" in err and "Traceback" not in err


def test_three_strategies_print_a_matrix_not_paragraphs(tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["--dataset", "faces", "--seeds", "2", "--epochs", "1", "--jobs", "1", "--quiet"]
    argv += ["--pool", "max", "--pool", "mean", "--pool", "lp", "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "row − column" in printed and "Holm-adjusted p < 0.05" in printed
    assert "pooling beat" not in printed and "tied on" not in printed
    md = (out / "results.md").read_text()
    assert "| row − column | max | mean | lp |" in md
    assert md.count("Holm-adjusted over 3 comparisons") >= 1 or "no p-value" in md
