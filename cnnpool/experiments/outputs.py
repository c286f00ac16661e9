"""The output set of a comparison, written whole: results, figures, report.

``OUT/`` holds one set: ``results.json`` (everything, strict JSON),
``results.md`` (the tables and sentences), ``curves.png``, ``paired.png``,
``routing.png`` and ``report.html`` (all of it in one self-contained page),
beside the sweep's ``runs/`` (and ``models/``).  :func:`write_outputs`
builds the new set in a temporary folder beside ``OUT`` and then swaps the
two folders, so a reader never sees a mix of two runs, and a Ctrl-C or a
crash while writing leaves the previous set as it was.  The figures are
drawn from the JSON text of the results, never from in-memory arrays, so
:func:`replot` (``cnnpool-compare --replot OUT/results.json``) draws the
same pictures, byte for byte, without training.

:func:`check_out_dir` is the CLI's check of ``--out``, made before the
first epoch.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import shutil
import signal
import tempfile
import threading

import numpy as np

from .store import RunStore, jsonable
from .summary import nan_if_none

__all__ = ["write_outputs", "replot", "check_out_dir", "load_results", "OUTPUT_SET"]

#: The files one output set consists of (replaced together).
OUTPUT_SET = (
    "results.json",
    "results.md",
    "curves.png",
    "paired.png",
    "routing.png",
    "report.html",
)

#: What a sweep folder holds besides the set (kept when the set is replaced).
SWEEP_PARTS = ("runs", "models")


# ---------------------------------------------------------------- checking
def check_out_dir(path, *, resume=False, force=False):
    """Check ``--out`` before any training; raise ValueError with a one-line reason.

    The folder may be new or empty (its parent must exist and be
    writable; ``resume`` then simply starts the sweep, so a job that always
    says ``--resume`` can be restarted blindly), or a folder of a previous
    sweep: then ``resume`` continues it, ``force`` replaces it, and
    otherwise it is refused (results are never replaced by accident).  A
    folder holding anything else is refused: the tool replaces a whole
    folder, and never deletes files it did not write.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--out {path} exists and is not a folder; give a folder to write into")
    if not os.path.isdir(parent):
        raise ValueError(f"--out {path}: its parent folder {parent} does not exist")
    _probe_writable(parent, "--out", path)
    if not os.path.isdir(path):
        return "new"  # with --resume too: nothing to resume, so the sweep starts
    _probe_writable(path, "--out", path)
    entries = [e for e in os.listdir(path) if not e.startswith(".")]
    ours = set(OUTPUT_SET) | set(SWEEP_PARTS)
    store = RunStore(path)
    if not entries:
        return "new"
    if not any(e in ours for e in entries):
        raise ValueError(
            f"--out {path} already holds other files ({', '.join(sorted(entries)[:3])}"
            f"{', ...' if len(entries) > 3 else ''}); give a new or empty folder"
        )
    if resume:
        if not store.exists():
            raise ValueError(
                f"--resume: {path} holds no sweep record (runs/sweep.json); start over with --force"
            )
        return "resume"
    if force:
        return "replace"
    n = store.count_runs()
    raise ValueError(
        f"--out {path} already holds results ({n} run{'s' if n != 1 else ''} kept); "
        "add --resume to continue that sweep, --force to replace it, or choose another --out"
    )


def _probe_writable(folder, option, path):
    try:
        probe = tempfile.mkdtemp(prefix=".cnnpool-probe-", dir=folder)
    except OSError as exc:
        raise ValueError(
            f"{option} {path}: cannot write in {folder} ({exc.strerror or exc})"
        ) from None
    os.rmdir(probe)


# ---------------------------------------------------------------- writing
def write_outputs(results, out_dir, *, routing=None):
    """Write the output set into ``out_dir``, replacing the previous set whole.

    Parameters
    ----------
    results : dict
        What :func:`~cnnpool.experiments.run_experiment` returned, or the
        content of a ``results.json``.
    out_dir : str or path-like
        The folder; created (with its parents) if missing.  Its ``runs/``,
        ``models/`` and any file that is not part of the set are kept.
    routing : sequence of two str, optional
        The strategies ``routing.png`` compares (default: the ones the
        results name, else the first two).

    Returns
    -------
    dict
        ``{"json", "md", "curves", "paired", "routing", "html"}``: the paths.
    """
    from .report import results_table
    from .report_html import report_html

    out_dir = os.path.abspath(os.fspath(out_dir))
    parent, name = os.path.split(out_dir)
    os.makedirs(parent, exist_ok=True)
    # The figures and the report are made from the JSON text, exactly as --replot does.
    clean = {k: v for k, v in results.items() if not k.startswith("_")}
    text = json.dumps(jsonable(clean), indent=1, allow_nan=False) + "\n"
    data = json.loads(text)
    if routing is not None:
        _choose_routing(data, routing)
        text = json.dumps(data, indent=1, allow_nan=False) + "\n"

    new = tempfile.mkdtemp(prefix=f".{name}.new-", dir=parent)
    try:
        os.chmod(new, 0o755)
        _write(new, "results.json", text)
        _write(new, "results.md", results_table(data) + "\n")
        figures = draw_figures(data, new)
        with open(os.path.join(new, "report.html"), "w", encoding="utf-8") as fh:
            fh.write(report_html(data, figures))
        if os.path.isdir(out_dir):
            _carry_over(out_dir, new)
        _swap_in(new, out_dir)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    return {
        key: os.path.join(out_dir, file)
        for key, file in zip(("json", "md", "curves", "paired", "routing", "html"), OUTPUT_SET)
    }


def _write(folder, name, text):
    with open(os.path.join(folder, name), "w", encoding="utf-8") as fh:
        fh.write(text)


def clear_out_dir(out_dir):
    """Replace ``out_dir`` by a folder without the previous set and sweep (``--force``).

    Files the tool did not write are carried into the fresh folder; the
    swap is one step, so a reader sees the old set or no set, never a mix.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    if not os.path.isdir(out_dir):
        return
    parent, name = os.path.split(out_dir)
    new = tempfile.mkdtemp(prefix=f".{name}.new-", dir=parent)
    try:
        os.chmod(new, 0o755)
        _carry_over(out_dir, new, skip=set(SWEEP_PARTS))
        _swap_in(new, out_dir)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise


def _carry_over(old, new, skip=()):
    """Hard-link (or copy) every entry of ``old`` that the new set does not replace."""
    for entry in os.listdir(old):
        if entry in OUTPUT_SET or entry in skip:
            continue
        src, dst = os.path.join(old, entry), os.path.join(new, entry)
        if os.path.isdir(src) and not os.path.islink(src):
            shutil.copytree(src, dst, copy_function=_link_or_copy, symlinks=True)
        else:
            _link_or_copy(src, dst)


def _link_or_copy(src, dst):
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)
    return dst


def _swap_in(new, out_dir):
    """Put folder ``new`` at ``out_dir`` in one step, and delete what was there."""
    with _sigint_deferred():
        if not os.path.lexists(out_dir):
            os.rename(new, out_dir)
            return
        if _exchange(new, out_dir):
            old = new
        else:  # no atomic exchange here: two renames, with Ctrl-C held back between them
            old = tempfile.mkdtemp(
                prefix=f".{os.path.basename(out_dir)}.old-", dir=os.path.dirname(out_dir)
            )
            os.rmdir(old)
            os.rename(out_dir, old)
            os.rename(new, out_dir)
        shutil.rmtree(old, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a, b):
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    renameat2.restype = ctypes.c_int
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


@contextlib.contextmanager
def _sigint_deferred():
    """Hold Ctrl-C back (it arrives right after) while the folders are swapped."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "pthread_sigmask"
    ):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# ---------------------------------------------------------------- figures
def draw_figures(results, folder):
    """Draw ``curves.png``, ``paired.png`` and ``routing.png`` from results.json's content.

    Returns ``{file name: path}``.
    """
    from .plots import plot_curves, plot_paired, plot_routing

    names = [s["name"] for s in results["strategies"]]
    seeds = results["settings"]["seeds"]
    epochs = results["settings"]["epochs"]
    ds = results["dataset"]
    by = {(r["strategy"], r["seed"]): r for r in results["runs"]}
    curves, paired = {}, {}
    for name in names:
        loss = np.full((len(seeds), epochs), np.nan)
        acc = np.full((len(seeds), epochs), np.nan)
        diverged = []
        for i, seed in enumerate(seeds):
            run = by.get((name, seed))
            if run is None:
                continue
            diverged.append(run["status"] != "ok")
            for e in run["epochs"]:
                loss[i, e["epoch"] - 1] = nan_if_none(e["train_loss"])
                acc[i, e["epoch"] - 1] = nan_if_none(e["test_accuracy"])
        curves[name] = {"train_loss": loss, "test_accuracy": acc, "diverged": diverged}
        paired[name] = {
            key: [nan_if_none(by.get((name, s), {}).get(key)) for s in seeds]
            for key in ("final_test_accuracy", "final_train_loss")
        }
        paired[name]["test_accuracy"] = paired[name].pop("final_test_accuracy")
    title = (
        f"{ds['name']}: {len(seeds)} seeds, {epochs} epochs "
        f"({results['settings']['optimizer']}, lr {results['settings']['lr']:g})"
    )
    paths = {}
    paths["curves.png"] = plot_curves(
        curves, os.path.join(folder, "curves.png"), title=title, chance=1 / len(ds["classes"])
    )
    paths["paired.png"] = plot_paired(
        paired,
        os.path.join(folder, "paired.png"),
        seeds=seeds,
        title=f"{ds['name']}: each seed under each strategy (paired design)",
    )
    k = results["settings"]["kernel_size"]
    path = os.path.join(folder, "routing.png")
    routing = results.get("routing")
    if routing is not None and len(routing.get("compare", [])) == 2:
        compare = routing["compare"]
        plot_routing(
            routing["feature_map"],
            path,
            image=routing["image"],
            kernel_size=k,
            routes={n: routing["routes"][n] for n in compare},
            feature_label=f"conv1 → ReLU, channel {routing['channel']}",
            title=f"Where the gradient goes, {compare[0]} vs {compare[1]}: one {ds['name']} "
            f"test image ({routing['label']}), first layer of the trained "
            f"{routing['strategy']}-pooling model (seed {routing['seed']})",
        )
    else:  # no run finished (or the routing failed): the routing of the raw image
        from .data import load_dataset
        from .settings import Settings

        # the settings' data set (a built-in name or your folder/file), not ds["name"]
        img = load_dataset(Settings(**results["settings"]), seeds[0]).x_test[0, 0]
        if img.ndim == 3:  # RGB: show the first channel
            img = img[0]
        plot_routing(
            img,
            path,
            kernel_size=k,
            feature_label="input image (no trained model)",
            title="Where the gradient goes, max vs mean (no run finished)",
        )
    paths["routing.png"] = path
    return paths


def _choose_routing(results, routing):
    """Point ``results["routing"]["compare"]`` at two strategies whose routes are stored."""
    from .runner import check_routing

    names = [s["name"] for s in results["strategies"]]
    chosen = check_routing(routing, names)
    stored = results.get("routing")
    if stored is None:
        raise ValueError("these results hold no routing picture input (no run finished)")
    missing = [n for n in chosen if n not in stored.get("routes", {})]
    if missing:
        raise ValueError(f"these results hold no routing for {', '.join(missing)}")
    stored["compare"] = chosen


# ----------------------------------------------------------------- replot
def load_results(path):
    """Read a ``results.json`` written by ``cnnpool-compare``; ValueError if it is not one."""
    from .runner import SCHEMA

    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            results = json.load(fh)
    except FileNotFoundError:
        raise ValueError(f"--replot: {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"--replot: cannot read {path} as JSON ({exc})") from None
    if not isinstance(results, dict) or results.get("schema") != SCHEMA:
        found = results.get("schema") if isinstance(results, dict) else type(results).__name__
        raise ValueError(
            f"--replot: {path} is not a cnnpool-compare results file "
            f"(schema {found!r}, expected {SCHEMA!r})"
        )
    for key in ("settings", "strategies", "runs", "summary", "dataset"):
        if key not in results:
            raise ValueError(f"--replot: {path} has no {key!r}; it is incomplete")
    return results


def replot(path, out_dir=None, *, routing=None):
    """Redraw every figure and the report from a ``results.json``, without training.

    Parameters
    ----------
    path : str or path-like
        The ``results.json``.
    out_dir : str or path-like, optional
        Where to write the set (default: the folder of ``path``, whose set
        is then replaced whole).
    routing : sequence of two str, optional
        The strategies ``routing.png`` compares.

    Returns
    -------
    dict
        The paths written, as :func:`write_outputs`.
    """
    results = load_results(path)
    target = out_dir if out_dir is not None else os.path.dirname(os.path.abspath(path))
    return write_outputs(results, target, routing=routing)
