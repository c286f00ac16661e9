"""Runtime CPU dispatch: each kernel module runs the best variant the CPU supports.

* Every CPU level this machine supports loads its own variant of every
  dispatched module (``CNNPOOL_CPU`` forces it, in a fresh interpreter), and
  they agree: pooling bit for bit, convolution and activations to float
  tolerance (the direct convolution sums in another order per vector width;
  the baseline takes im2col + BLAS).
* Every variant defines the same public names as its module.
* ``CNNPOOL_CPU`` naming an unknown level, a level the CPU lacks or a build
  without variants is refused with a message that says why.
* ``cnnpool.show_config()`` names the level of every dispatched module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import cnnpool as cp
from cnnpool import _cpu, _dispatch

HERE = Path(__file__).resolve().parent
MODE = str(_cpu.build_info()["mode"])
DISPATCH = MODE.startswith("dispatch")
SUPPORTED = _dispatch.supported_levels(_cpu.x86_features())

# Computes the same layers at one CPU level and saves the results.
_PROBE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import cnnpool as cp

    rng = np.random.default_rng(7)
    out = {}
    for dt in (np.float32, np.float64):
        x = rng.standard_normal((2, 3, 19, 21)).astype(dt)
        for name, layer in (
            ("max3", cp.MaxPool2d(3, stride=2, padding=1)),
            ("max2", cp.MaxPool2d(2)),
            ("mean3", cp.MeanPool2d(3, stride=2, padding=1, ceil_mode=True)),
            ("mean2", cp.MeanPool2d(2)),
            ("lp", cp.LpPool2d(2, 3, stride=2)),
            ("adaptive", cp.AdaptiveMaxPool2d((5, 4))),
        ):
            y = layer(x)
            out[f"{name}_{dt.__name__}_y"] = y
            out[f"{name}_{dt.__name__}_gx"] = layer.backward(np.cos(y))
        conv = cp.Conv2d(3, 8, 3, padding=1, dtype=dt, rng=np.random.default_rng(1))
        y = conv(x)
        out[f"conv_{dt.__name__}_y"] = y
        out[f"conv_{dt.__name__}_gx"] = conv.backward(np.cos(y))
        out[f"conv_{dt.__name__}_gw"] = conv.weight.grad
        out[f"tanh_{dt.__name__}_y"] = cp.Tanh()(x)
    np.savez(sys.argv[1], **out)
    report = cp.show_config("dicts")
    names = {}
    for module in report["modules"]:
        mod = sys.modules[module]
        names[module] = sorted(n for n in vars(mod) if not n.startswith("_"))
    print(json.dumps({"modules": report["modules"], "names": names}))
    """
)


def _run(code, *args, level=None):
    env = dict(os.environ)
    env.pop(_dispatch.ENV, None)
    if level is not None:
        env[_dispatch.ENV] = level
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=HERE,  # not the repository root, whose unbuilt cnnpool/ would shadow the installed one
    )


@pytest.fixture(scope="module")
def per_level(tmp_path_factory):
    """{level: (arrays, report)} for every level this CPU supports."""
    tmp = tmp_path_factory.mktemp("levels")
    results = {}
    for level in SUPPORTED:
        path = tmp / f"{level}.npz"
        proc = _run(_PROBE, str(path), level=level)
        assert proc.returncode == 0, proc.stderr
        with np.load(path) as data:
            results[level] = (dict(data), json.loads(proc.stdout))
    return results


# The tests that load variants need a build that has them; the rules of
# CNNPOOL_CPU (plan) are checked on any build.
needs_variants = pytest.mark.skipif(
    not (DISPATCH and _cpu.is_x86()), reason=f"a {MODE!r} build has no CPU variants"
)


@needs_variants
def test_this_cpu_supports_the_baseline():
    assert SUPPORTED[0] == "baseline"


@needs_variants
def test_each_level_loads_its_own_variant_of_every_dispatched_module(per_level):
    for level, (_, report) in per_level.items():
        modules = report["modules"]
        assert "cnnpool.pooling._ext._kernels" in modules, sorted(modules)
        for name, entry in modules.items():
            assert entry["level"] == level, (level, name, entry)
            assert entry["why"] == f"forced by {_dispatch.ENV}={level}"
            folder = Path(entry["file"]).parent.name
            if level == "baseline":
                assert folder not in {f"_{lvl}" for lvl in _dispatch.LEVELS}, entry["file"]
            else:
                assert folder == f"_{level}", entry["file"]


@needs_variants
def test_variants_define_the_same_names(per_level):
    baseline = per_level["baseline"][1]["names"]
    for level, (_, report) in per_level.items():
        assert report["names"] == baseline, level


@needs_variants
def test_levels_agree(per_level):
    base, _ = per_level["baseline"]
    for level, (arrays, _) in per_level.items():
        assert arrays.keys() == base.keys()
        for key, value in arrays.items():
            if key.startswith(("max", "mean", "adaptive")):
                # The pooling kernels do the same operations at every width.
                np.testing.assert_array_equal(value, base[key], err_msg=f"{level}: {key}")
            else:
                tol = 2e-5 if value.dtype == np.float32 else 1e-12
                np.testing.assert_allclose(
                    value, base[key], rtol=tol, atol=tol, err_msg=f"{level}: {key}"
                )


@needs_variants
def test_default_is_the_best_supported_level():
    proc = _run(
        "import json, cnnpool as cp; print(json.dumps(cp.show_config('dicts')))", level=None
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["cpu"]["level"] == SUPPORTED[-1]
    assert {e["level"] for e in report["modules"].values()} == {SUPPORTED[-1]}


def test_show_config_prints_each_module_and_its_level(capsys):
    assert cp.show_config() is None
    text = capsys.readouterr().out
    level = _dispatch.best_level()[0]
    assert f"level {level}" in text
    for name in _dispatch.chosen():
        assert name in text
    with pytest.raises(ValueError, match="mode must be 'stdout' or 'dicts'"):
        cp.show_config("json")


@needs_variants
def test_unknown_level_is_refused_at_import():
    proc = _run("import cnnpool", level="avx9000")
    assert proc.returncode != 0
    assert "CNNPOOL_CPU='avx9000' is not a CPU level; use one of baseline, avx2, avx512" in (
        proc.stderr
    )


def test_a_level_the_cpu_lacks_is_refused_naming_what_is_missing():
    haswell = frozenset(_dispatch.LEVELS["avx2"][0]) | {"sse2", "sse4_2"}
    with pytest.raises(_dispatch.CPUVariantError, match=r"lacks avx512f, avx512bw, .*avx2$"):
        _dispatch.plan("avx512", haswell, "dispatch")
    no_avx = frozenset({"sse2", "sse4_2", "popcnt"})
    with pytest.raises(_dispatch.CPUVariantError, match="lacks avx, avx2, fma"):
        _dispatch.plan("avx2", no_avx, "dispatch")
    assert _dispatch.plan("", no_avx, "dispatch") == (
        ["baseline"],
        "no avx2: the CPU or its OS lacks avx, avx2, fma, bmi1, bmi2, f16c, lzcnt, movbe",
    )
    assert _dispatch.plan("AVX2 ", haswell, "dispatch") == (
        ["baseline", "avx2"],
        "forced by CNNPOOL_CPU=avx2",
    )


def test_a_build_without_variants_refuses_any_level():
    every = frozenset(_dispatch.LEVELS["avx512"][0])
    with pytest.raises(_dispatch.CPUVariantError, match="this build has none"):
        _dispatch.plan("baseline", every, "native")
    assert _dispatch.plan("", every, "native")[0] == ["baseline", "avx2", "avx512"]


# /proc/cpuinfo's names for the features the levels need, where they differ.
_PROC_NAMES = {"lzcnt": "abm"}


@pytest.mark.skipif(
    not (_cpu.is_x86() and Path("/proc/cpuinfo").is_file()), reason="needs Linux on x86"
)
def test_features_match_what_linux_reports():
    # Linux lists a feature only when the CPU has it and the kernel enabled
    # its state (XCR0), the same rule x86_features() applies: an independent
    # reading of CPUID.
    line = next(
        row for row in Path("/proc/cpuinfo").read_text().splitlines() if row.startswith("flags")
    )
    linux = set(line.split(":", 1)[1].split())
    needed = {f for needs, _ in _dispatch.LEVELS.values() for f in needs}
    ours = _cpu.x86_features()
    for feature in sorted(needed):
        assert (feature in ours) == (_PROC_NAMES.get(feature, feature) in linux), feature
