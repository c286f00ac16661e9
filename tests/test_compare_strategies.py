"""``--pool`` specs with arguments, one strategy under two names, and modules that misbehave."""

import sys
import textwrap

import numpy as np
import pytest

import cnnpool as cp
from cnnpool.experiments import cli
from cnnpool.experiments.strategies import resolve_strategies, resolve_strategy

QUIET = ["--quiet", "--jobs", "1"]

USER_MODULE = '''
import numpy as np
import cnnpool as cp


class PowerPool(cp.Pool2d):
    """A constructor whose first argument is not the kernel size."""

    strategy_name = "power"

    def __init__(self, beta, kernel_size, stride=None, *, soft=False):
        super().__init__(kernel_size, stride)
        self.beta = float(beta)
        self.soft = soft

    def pool(self, windows):
        return np.mean(np.abs(windows) ** self.beta, axis=-1) ** (1 / self.beta)

    def route(self, windows, pooled):
        b = self.beta
        p = np.where(pooled == 0, 1, pooled)[..., None]
        n = windows.shape[-1]
        return np.sign(windows) * np.abs(windows) ** (b - 1) / (n * p ** (b - 1))
'''


@pytest.fixture
def user_file(tmp_path, monkeypatch):
    path = tmp_path / "power_pool_for_test.py"
    path.write_text(textwrap.dedent(USER_MODULE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield path
    sys.modules.pop("power_pool_for_test", None)


def test_builtin_with_keywords():
    s = resolve_strategy("lp(norm=3)")  # 'norm' is accepted for LpPool2d's norm_type
    layer = s.make(2, seed=0)
    assert isinstance(layer, cp.LpPool2d) and layer.norm_type == 3
    assert s.name == "lp(norm_type=3)" and s.kwargs == (("norm_type", 3),)
    assert resolve_strategy("lp(norm_type=3)").kwargs == s.kwargs


def test_stochastic_gets_the_run_seed():
    s = resolve_strategy("stochastic")
    x = np.random.default_rng(0).random((1, 1, 8, 8))
    a, b, c = s.make(2, seed=5), s.make(2, seed=5), s.make(2, seed=6)
    assert np.array_equal(a.forward(x), b.forward(x))
    assert not np.array_equal(a.forward(x), c.forward(x))


def test_user_class_kernel_size_not_first(user_file):
    for spec in ("power_pool_for_test:PowerPool(beta=4)", f"{user_file}:PowerPool(beta=4)"):
        s = resolve_strategy(spec)
        layer = s.make(3)
        assert layer.beta == 4.0 and layer.kernel_size == (3, 3)
        assert s.name == "power(beta=4)"
    assert resolve_strategy(f"{user_file}:PowerPool(beta=4)").origin.startswith(str(user_file))
    with pytest.raises(ValueError, match="could not build PowerPool"):
        resolve_strategy("power_pool_for_test:PowerPool")  # beta is required


def test_user_class_with_arguments_in_a_run(tmp_path, user_file):
    out = tmp_path / "r"
    args = ["--dataset", "faces", "--seeds", "2", "--epochs", "1", "--out", str(out)]
    code = cli.main(
        args + QUIET + ["--pool", "max", "--pool", f"{user_file}:PowerPool(beta=3, soft=True)"]
    )
    assert code == 0
    import json

    d = json.loads((out / "results.json").read_text())
    assert [x["name"] for x in d["strategies"]] == ["max", "power(beta=3, soft=True)"]
    assert all(r["status"] == "ok" for r in d["runs"])
    assert d["paired_design"]["same_initial_weights_per_seed"] is True


@pytest.mark.parametrize(
    "specs, words",
    [
        (["mean", "avg"], "'mean' and pool 'avg' are the same strategy (MeanPool2d)"),
        (["lp", "lp(norm=2)"], "are the same strategy (LpPool2d"),
        (["max", "cnnpool:MaxPool2d"], "are the same strategy (MaxPool2d)"),
    ],
)
def test_one_strategy_under_two_names_is_refused(specs, words):
    with pytest.raises(ValueError) as exc:
        resolve_strategies(specs)
    assert words in str(exc.value)


@pytest.mark.parametrize(
    "spec, words",
    [
        ("lp(p=3)", "LpPool2d takes no argument 'p'; its arguments: norm_type"),
        ("lp(3)", "arguments must be keywords"),
        ("lp(norm=__import__('os').getcwd())", "is not a literal"),
        ("lp(norm=(lambda: 3)())", "is not a literal"),
        ("lp(kernel_size=3)", "leave it out"),
        ("max(**{'a': 1})", "'**' is not accepted"),
        ("lp(norm=3", "unbalanced parentheses"),
        ("lp(norm=3,)x", "unbalanced parentheses"),
        ("lp(norm=3, norm_type=3)", "given twice"),
        ("lp(norm=3 +)", "cannot read the arguments"),
        ("mixed(alpha='x')", "could not build MixedPool2d"),
    ],
)
def test_bad_arguments_are_refused_without_evaluating(spec, words, capsys):
    with pytest.raises(ValueError) as exc:
        resolve_strategy(spec)
    assert words in str(exc.value)
    with pytest.raises(SystemExit) as ex:
        cli.main(["--pool", "max", "--pool", spec] + QUIET)
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


# ------------------------------------------------ issue 16 item 9: clear errors
@pytest.mark.parametrize(
    "body, words",
    [
        ("1 / 0\n", "importing module '{mod}' failed: ZeroDivisionError: division by zero"),
        ("import sys\nsys.exit(3)\n", "importing module '{mod}' called sys.exit(3)"),
        ("raise SystemExit('bye')\n", "called sys.exit('bye')"),
        ("import no_such_pkg_for_cnnpool_test\n", "No module named 'no_such_pkg_for_cnnpool_test'"),
    ],
)
@pytest.mark.parametrize("by_path", [False, True])
def test_module_that_raises_or_exits_on_import(tmp_path, monkeypatch, capsys, body, words, by_path):
    mod = "misbehaving_for_test"
    path = tmp_path / f"{mod}.py"
    path.write_text(body, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = f"{path}:Pool" if by_path else f"{mod}:Pool"
    try:
        with pytest.raises(SystemExit) as exc:
            cli.main(["--pool", spec] + QUIET)
    finally:
        sys.modules.pop(mod, None)
    assert exc.value.code == 2  # argparse's usage error, not the module's 3
    err = capsys.readouterr().err
    expected = words.format(mod=mod)
    if by_path:
        expected = expected.replace(f"module '{mod}'", repr(str(path)))
    assert expected in err
    assert f"pool {spec!r}" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "seeds, words",
    [
        ("100000000000000000000", "at most 10000 seeds per run"),
        ("0-100000000000000000000", "at most 10000 seeds per run"),
        ("3,99999999999999999999", "a seed must be at most 2**32 - 1"),
    ],
)
def test_absurd_seed_counts_are_one_line_errors(seeds, words, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--seeds", seeds] + QUIET)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "OverflowError" not in err
