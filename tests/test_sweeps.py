"""Long sweeps: arguments checked first, runs kept at once, --resume, Ctrl-C, output sets
replaced whole, --replot, report.html, progress, saved models, and a real Dask cluster."""

import base64
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("skimage")
pytest.importorskip("scipy")
pytest.importorskip("matplotlib")
pytest.importorskip("joblib")

import cnnpool as cp  # noqa: E402
from cnnpool.experiments import Settings, cli, resolve_strategy, run_experiment  # noqa: E402
from cnnpool.experiments import runner as runner_mod  # noqa: E402
from cnnpool.experiments.outputs import OUTPUT_SET  # noqa: E402
from cnnpool.experiments.progress import SweepProgress  # noqa: E402
from cnnpool.experiments.store import RunStore, settings_hash  # noqa: E402

#: Where this process imported cnnpool from (the tree, or site-packages in CI):
#: subprocesses must import the same one.
CNNPOOL_HOME = str(Path(cp.__file__).resolve().parents[1])
TINY = ["--dataset", "faces", "--epochs", "1", "--quiet", "--jobs", "1"]
FIGURES = ("curves.png", "paired.png", "routing.png")


def read_json(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def without_times(results):
    """results.json minus what a clock decides (times, dates, versions)."""
    d = json.loads(json.dumps(results))
    for key in ("timing", "versions"):
        d.pop(key)
    d["settings"].pop("jobs")  # how the runs were spread, not what they computed
    for run in d["runs"]:
        for key in ("seconds_per_epoch", "total_seconds"):
            run.pop(key)
        for e in run["epochs"]:
            e.pop("seconds")
    for row in d["summary"].values():
        row.pop("seconds_per_epoch")
    return d


@pytest.fixture
def no_training(monkeypatch):
    """Any run that starts fails the test: for checks that must come before training."""

    def boom(*a, **k):
        raise AssertionError("training started although an argument was bad")

    monkeypatch.setattr(runner_mod, "train_one", boom)


# ------------------------------------------------- 1. checks before training
def _one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("cnnpool-compare: error: "), err
    for w in words:
        assert w in err, (w, err)
    return err


def test_out_that_is_a_file_is_refused_before_training(tmp_path, capsys, no_training):
    f = tmp_path / "results"
    f.write_text("not a folder")
    assert cli.main(TINY + ["--seeds", "2", "--out", str(f)]) == 2
    _one_line_error(capsys, str(f), "not a folder")
    assert f.read_text() == "not a folder"


def test_out_whose_parent_is_missing_is_refused(tmp_path, capsys, no_training):
    out = tmp_path / "no" / "such" / "res"
    assert cli.main(TINY + ["--seeds", "2", "--out", str(out)]) == 2
    _one_line_error(capsys, "parent folder", str(tmp_path / "no" / "such"), "does not exist")
    assert not (tmp_path / "no").exists()


def test_out_that_cannot_be_written_is_refused(capsys, no_training):
    # /proc refuses new entries even to root, so this holds for every user.
    assert cli.main(TINY + ["--seeds", "2", "--out", "/proc/cnnpool-results"]) == 2
    _one_line_error(capsys, "cannot write in /proc")


def test_out_holding_other_files_is_refused_even_with_force(tmp_path, capsys, no_training):
    (tmp_path / "thesis.tex").write_text("precious")
    for extra in ([], ["--force"]):
        assert cli.main(TINY + ["--seeds", "2", "--out", str(tmp_path), *extra]) == 2
        _one_line_error(capsys, "other files", "thesis.tex")
    assert (tmp_path / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--routing", "max,lp"], ["--routing", "lp", "did not run"]),
        (["--routing", "max"], ["--routing", "two different"]),
        (["--resume", "--force"], ["--resume and --force"]),
    ],
)
def test_other_bad_options_are_refused_before_training(tmp_path, capsys, no_training, extra, words):
    assert cli.main(TINY + ["--seeds", "2", "--out", str(tmp_path / "r"), *extra]) == 2
    _one_line_error(capsys, *words)
    assert not (tmp_path / "r").exists()


def test_second_run_into_the_same_out_is_refused_without_force(tmp_path, capsys):
    out = tmp_path / "r"
    assert cli.main(TINY + ["--seeds", "1", "--out", str(out)]) == 0
    first = read_json(out / "results.json")
    capsys.readouterr()
    assert cli.main(TINY + ["--seeds", "2", "--out", str(out)]) == 2
    _one_line_error(capsys, "already holds results", "--resume", "--force")
    assert read_json(out / "results.json") == first  # untouched
    # --force replaces the whole set and the sweep, and says so
    assert cli.main(TINY + ["--seeds", "2", "--out", str(out), "--force"]) == 0
    assert "Replaced the earlier results" in capsys.readouterr().out
    d = read_json(out / "results.json")
    assert d["settings"]["seeds"] == [0, 1]
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(
        [f"{s}-seed{n}.json" for s in ("max", "mean") for n in (0, 1)] + ["sweep.json"]
    )


# ------------------------------------------- 2. runs kept at once, --resume
def test_each_run_is_on_disk_as_soon_as_it_finishes(tmp_path, monkeypatch):
    """When a run starts, every run before it is already in OUT/runs/."""
    store = RunStore(tmp_path / "r")
    seen = []
    real = runner_mod.train_one

    def spy(*a, **k):
        seen.append(sorted(p.name for p in Path(store.runs_dir).glob("*-seed*.json")))
        return real(*a, **k)

    monkeypatch.setattr(runner_mod, "train_one", spy)
    run_experiment(
        Settings(dataset="faces", seeds=(0, 1), epochs=1, arch="c2-p-c4-p-fc"), store=store
    )
    assert seen == [
        [],
        ["max-seed0.json"],
        ["max-seed0.json", "mean-seed0.json"],
        ["max-seed0.json", "max-seed1.json", "mean-seed0.json"],
    ]


def test_interrupted_30_run_sweep_resumed_is_bit_identical(tmp_path, monkeypatch, capsys):
    args = TINY + ["--seeds", "15"]
    whole = tmp_path / "whole"
    assert cli.main(args + ["--out", str(whole)]) == 0

    # The same sweep, stopped by Ctrl-C as its 12th run starts
    real = runner_mod.train_one
    started = []

    def interrupt_at_12(*a, **k):
        started.append(1)
        if len(started) == 12:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(runner_mod, "train_one", interrupt_at_12)
    part = tmp_path / "part"
    capsys.readouterr()
    assert cli.main(args + ["--out", str(part)]) == 130
    err = capsys.readouterr().err
    assert "Interrupted: 11 of 30 runs finished" in err and "--resume" in err
    assert "Traceback" not in err
    assert not (part / "results.json").exists()  # no half set
    assert len(list((part / "runs").glob("*-seed*.json"))) == 11

    # --resume trains the 19 missing runs only
    trained = []

    def count(*a, **k):
        trained.append((a[1].name, a[3]))
        return real(*a, **k)

    monkeypatch.setattr(runner_mod, "train_one", count)
    assert cli.main(args + ["--out", str(part), "--resume"]) == 0
    assert len(trained) == 19 and len(set(trained)) == 19
    assert "Resumed: 11 run(s) kept from before, 19 trained now." in capsys.readouterr().out
    a, b = read_json(whole / "results.json"), read_json(part / "results.json")
    assert a["timing"]["runs_trained"] == 30 and b["timing"]["runs_resumed"] == 11
    assert without_times(a) == without_times(b)
    paired = [
        (p / "results.md").read_text().split("## Paired differences")[1] for p in (whole, part)
    ]
    assert paired[0] == paired[1]


def test_resume_with_other_settings_names_the_differing_keys(tmp_path, capsys, no_training):
    out = tmp_path / "r"
    s = Settings(dataset="faces", seeds=(0, 1), epochs=1)
    RunStore(out).start(s)
    assert cli.main(TINY + ["--seeds", "3", "--epochs", "2", "--out", str(out), "--resume"]) == 2
    err = _one_line_error(capsys, "other settings", "epochs: 2 now, 1 in the sweep", "seeds")
    assert "batch_size" not in err
    # --jobs says how, not what: it is not part of the hash
    assert settings_hash(s) == settings_hash(
        Settings(dataset="faces", seeds=(0, 1), epochs=1, jobs=2)
    )


def test_resume_into_a_new_folder_starts_the_sweep(tmp_path, capsys):
    out = tmp_path / "r"
    assert cli.main(TINY[:-3] + ["--jobs", "1", "--seeds", "1", "--out", str(out), "--resume"]) == 0
    assert "Nothing to resume" in capsys.readouterr().out
    assert read_json(out / "results.json")["timing"]["runs_trained"] == 2


def test_resume_of_a_finished_sweep_trains_nothing(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r"
    assert cli.main(TINY + ["--seeds", "2", "--out", str(out)]) == 0
    before = read_json(out / "results.json")
    monkeypatch.setattr(runner_mod, "train_one", None)  # would raise if called
    assert cli.main(TINY + ["--seeds", "2", "--out", str(out), "--resume"]) == 0
    assert without_times(read_json(out / "results.json")) == without_times(before)


def test_unreadable_run_file_is_trained_again(tmp_path):
    store = RunStore(tmp_path / "r")
    s = Settings(dataset="faces", seeds=(0,), epochs=1, arch="c2-p-c4-p-fc")
    first = run_experiment(s, store=store)
    Path(store.run_path("mean", 0)).write_text('{"strategy": "mean", "se')  # torn by a crash
    again = run_experiment(s, store=store, resume=True)
    assert again["timing"]["runs_trained"] == 1
    assert without_times(again) == without_times(first)


# -------------------------------- 3. Ctrl-C at any moment: never a mixed set
def _set_state(out):
    """'none', or the one consistent set the folder holds (checked), by its seed count."""
    present = [f for f in OUTPUT_SET if (out / f).exists()]
    if not present:
        return "none"
    assert present == list(OUTPUT_SET), f"a partial set: {present}"
    d = read_json(out / "results.json")
    n = len(d["settings"]["seeds"])
    assert f"{n} paired seeds" in (out / "results.md").read_text()
    page = (out / "report.html").read_text()
    assert f"{n} paired seeds" in page
    images = _Page.parse(page).images
    for name in FIGURES:  # the report shows exactly the figures beside it
        assert images[name] == (out / name).read_bytes(), name
    return n


def _cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([CNNPOOL_HOME, env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "cnnpool.experiments.cli", *args],
        env=env,
        cwd=tempfile.gettempdir(),  # not the repository root: its cnnpool/ is not built
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(cond, proc, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond() or proc.poll() is not None:
            return
        time.sleep(0.002)


@pytest.mark.parametrize("moment", ["sweep started", "after 3 runs", "while writing the set"])
def test_ctrl_c_never_leaves_a_mixed_set(tmp_path, moment, capsys):
    out = tmp_path / "r"
    assert cli.main(TINY + ["--seeds", "2", "--out", str(out)]) == 0  # the earlier set
    assert _set_state(out) == 2
    proc = _cli(*TINY, "--seeds", "6", "--out", str(out), "--force")
    runs = out / "runs"

    def new_sweep():  # the earlier set has a sweep.json too: wait for the new one
        try:
            return len(read_json(runs / "sweep.json")["settings"]["seeds"]) == 6
        except (OSError, ValueError):
            return False

    conds = {
        "sweep started": new_sweep,
        "after 3 runs": lambda: new_sweep() and len(list(runs.glob("*-seed*.json"))) >= 3,
        "while writing the set": lambda: any(tmp_path.glob(".r.new-*/results.json")),
    }
    _wait_for(conds[moment], proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr
    state = _set_state(out)
    if proc.returncode == 130:
        assert "Interrupted:" in stderr and "--resume" in stderr
        assert state in ("none", 6)  # --force cleared the old set before training
    else:  # the signal came after the swap: the new set is whole
        assert proc.returncode == 0, stderr
        assert state == 6
    assert not list(tmp_path.glob(".r.*")), "a temporary folder was left beside OUT"
    # whatever finished is kept, and --resume completes the sweep
    capsys.readouterr()
    assert cli.main(TINY + ["--seeds", "6", "--out", str(out), "--resume"]) == 0, (
        proc.returncode,
        stderr,
        capsys.readouterr().err,
        sorted(os.listdir(out)) if out.exists() else None,
    )
    assert _set_state(out) == 6


def test_sigint_to_a_parallel_sweep_stops_the_workers_cleanly(tmp_path):
    out = tmp_path / "r"
    proc = _cli(
        "--dataset", "faces", "--epochs", "2", "--seeds", "8", "--jobs", "2", "--out", str(out)
    )
    _wait_for(lambda: len(list((out / "runs").glob("*-seed*.json"))) >= 2, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:  # pragma: no cover - the whole sweep beat the signal
        pytest.fail("the sweep finished before Ctrl-C; make it longer")
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    kept = len(list((out / "runs").glob("*-seed*.json")))
    assert f"Interrupted: {kept} of 16 runs finished" in stderr
    assert _set_state(out) == "none"


# --------------------------------------------------------------- 5. replot
def test_replot_redraws_the_same_figures_and_report(tmp_path, capsys):
    out = tmp_path / "r"
    assert cli.main(TINY + ["--seeds", "3", "--out", str(out)]) == 0
    before = {f: (out / f).read_bytes() for f in OUTPUT_SET}
    for f in FIGURES:
        (out / f).unlink()
    (out / "report.html").write_text("stale")
    assert cli.main(["--replot", str(out / "results.json")]) == 0
    assert "Redrew" in capsys.readouterr().out
    for f in OUTPUT_SET:
        assert (out / f).read_bytes() == before[f], f
    assert (out / "runs" / "max-seed0.json").exists()  # the sweep stays beside the set
    (out / ".notes").write_text("mine")
    (out / "extra").mkdir()
    assert cli.main(["--replot", str(out / "results.json")]) == 0
    assert (out / ".notes").read_text() == "mine" and (out / "extra").is_dir()

    # elsewhere, and with another routing pair: only routing.png (and what shows it) changes
    other = tmp_path / "other"
    assert cli.main(["--replot", str(out / "results.json"), "--out", str(other)]) == 0
    assert (other / "curves.png").read_bytes() == before["curves.png"]
    assert cli.main(["--replot", str(out / "results.json"), "--routing", "mean,max"]) == 0
    assert (out / "routing.png").read_bytes() != before["routing.png"]
    assert (out / "curves.png").read_bytes() == before["curves.png"]
    assert read_json(out / "results.json")["routing"]["compare"] == ["mean", "max"]


@pytest.mark.parametrize(
    "content, words",
    [(None, "does not exist"), ("{", "cannot read"), ('{"schema": "x"}', "not a cnnpool-compare")],
)
def test_replot_of_a_bad_file_is_one_line(tmp_path, capsys, content, words):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    assert cli.main(["--replot", str(path)]) == 2
    _one_line_error(capsys, "--replot", words)


def test_routing_shows_the_strategies_that_ran(tmp_path):
    res = run_experiment(
        Settings(dataset="faces", seeds=(0,), epochs=1, arch="c2-p-c4-p-fc", pools=("lp", "mean"))
    )
    routing = res["routing"]
    assert routing["compare"] == ["lp", "mean"] and routing["strategy"] == "lp"
    fm = np.array(routing["feature_map"])
    lp = np.array(routing["routes"]["lp"])
    mean = np.array(routing["routes"]["mean"])
    assert lp.shape == fm.shape == mean.shape
    # mean pooling spreads 1/4 over each covered 2x2 window; lp does not
    h, w = (fm.shape[0] // 2) * 2, (fm.shape[1] // 2) * 2
    np.testing.assert_array_equal(mean[:h, :w], 0.25)
    assert not np.allclose(lp[:h, :w], 0.25)
    ref = resolve_strategy("lp").make(2, seed=0)
    y = ref.forward(fm[None, None])
    np.testing.assert_array_equal(lp, ref.backward(np.ones_like(y))[0, 0])


# ------------------------------------------------------------- 6. report.html
class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.tags, self.text = {}, [], [], []
        self.rows = 0

    @classmethod
    def parse(cls, page):
        p = cls()
        p.feed(page)
        p.close()
        return p

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            m = re.fullmatch(r"data:image/png;base64,([A-Za-z0-9+/=]+)", a["src"])
            assert m, a["src"][:60]
            self.images[a["alt"]] = base64.b64decode(m.group(1))
        if tag in ("a", "link", "script") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src"))
        if tag == "tr":
            self.rows += 1

    def handle_data(self, data):
        self.text.append(data)


def test_report_html_is_one_self_contained_page(tmp_path):
    out = tmp_path / "r"
    assert (
        cli.main(
            TINY
            + ["--seeds", "3", "--out", str(out), "--pool", "max", "--pool", "mean", "--pool", "lp"]
        )
        == 0
    )
    d = read_json(out / "results.json")
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    p = _Page.parse(page)
    text = " ".join(p.text)
    assert set(p.images) == set(FIGURES)
    for name in FIGURES:
        assert p.images[name] == (out / name).read_bytes()
    # nothing from a server or the network: only the raw files beside the page
    assert set(p.links) == {"results.json", "results.md", "runs/"}
    assert "script" not in p.tags
    # the verdicts, every strategy, every run, the settings and the versions
    for c in d["comparisons"]:
        assert c["test_accuracy"]["summary"] in text
    # header + 3 strategies, header + 3 pairs x 2 metrics, header + 9 runs
    assert p.rows == 4 + 7 + 10
    for key in ("cnnpool", "numpy", "matplotlib"):
        assert key in text and d["versions"][key] in text
    assert d["settings_hash"] in text and "batch_size" in text


# ----------------------------------------------------------------- 7. progress
def _feed(bar, runs, epochs, jobs, seconds=0.034):
    flying = []
    for i, (name, seed) in enumerate(runs):
        bar(("start", name, seed, epochs))
        flying.append((name, seed))
        if len(flying) == jobs or i == len(runs) - 1:
            for e in range(1, epochs + 1):
                for n, s in flying:
                    bar(("epoch", n, s, e, 0.5, 0.9, seconds))
            for n, s in flying:
                bar(("end", n, s, "ok"))
            flying = []


def test_terminal_progress_is_one_line_without_cursor_moves():
    stream = io.StringIO()
    runs = [(n, s) for s in range(30) for n in ("max", "mean")]
    bar = SweepProgress(len(runs), 6, jobs=2, mode="terminal", stream=stream)
    bar._bar.mininterval = 0  # draw every update: the worst case
    _feed(bar, runs, 6, 2)
    assert bar.seconds_per_epoch == pytest.approx(0.034)
    bar.close()
    text = stream.getvalue()
    assert "\x1b[A" not in text and "\n" not in text.rstrip("\n")
    assert "runs 60/60" in text and "0.034 s/epoch" in text
    assert "in flight: max s0 1/6, mean s0 1/6" in text


def test_log_progress_is_a_line_per_finished_run():
    stream = io.StringIO()
    bar = SweepProgress(4, 2, mode="log", stream=stream)
    _feed(bar, [("max", 0), ("mean", 0), ("max", 1), ("mean", 1)], 2, 1, seconds=0.02)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and lines[0].startswith("[1/4] max seed 0: ok, 0.020 s/epoch")
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


def test_notebook_without_ipywidgets_gets_clean_text(monkeypatch):
    import cnnpool.experiments.progress as progress

    monkeypatch.setattr(progress, "_has_widgets", lambda: False)
    stream = io.StringIO()
    bar = SweepProgress(2, 1, mode="notebook", stream=stream)
    _feed(bar, [("max", 0), ("mean", 0)], 1, 1)
    bar.close()
    text = stream.getvalue()
    assert "runs 2/2" in text and "\x1b" not in text
    assert "in flight" not in text  # the terminal's extra; a notebook line stays short


def test_cli_in_a_terminal_with_60_runs_writes_no_cursor_up(tmp_path):
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios

    out = tmp_path / "r"
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg", COLUMNS="120")
    env["PYTHONPATH"] = os.pathsep.join([CNNPOOL_HOME, env.get("PYTHONPATH", "")])
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a real size
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cnnpool.experiments.cli",
            "--dataset",
            "faces",
            "--epochs",
            "1",
            "--seeds",
            "30",
            "--jobs",
            "1",
            "--out",
            str(out),
        ],
        env=env,
        cwd=tmp_path,  # not the repository root: its cnnpool/ is not built
        stdin=slave,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, text[-2000:]
    assert "runs 60/60" in text
    assert text.count("\x1b[A") == 0


def test_quiet_is_silent_on_stderr(tmp_path, capfd):
    assert cli.main(TINY + ["--seeds", "2", "--out", str(tmp_path / "r")]) == 0
    assert capfd.readouterr().err == ""


# ------------------------------------------------------------- 4. save models
def test_saved_models_load_and_predict_as_recorded(tmp_path):
    out = tmp_path / "r"
    assert cli.main(TINY + ["--seeds", "2", "--out", str(out), "--save-models"]) == 0
    d = read_json(out / "results.json")
    from cnnpool.datasets import load_faces

    for run in d["runs"]:
        model = cp.load(out / "models" / f"{run['strategy']}-seed{run['seed']}.npz")
        data = load_faces(seed=run["seed"], standardize=True)
        model.eval()
        logits = model.forward(data.x_test.astype(np.float32))
        acc = float(np.mean(np.argmax(logits, axis=1) == data.y_test))
        assert acc == run["final_test_accuracy"]


def test_save_models_needs_a_store():
    with pytest.raises(ValueError, match="save_models=True needs a store"):
        run_experiment(Settings(dataset="faces", seeds=(0,), epochs=1), save_models=True)


# ------------------------------------------------- 9. a real Dask cluster
def test_dask_local_cluster_matches_the_serial_run_bit_for_bit(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    from joblib import parallel_config

    settings = dict(dataset="faces", seeds=(0, 1, 2, 3), epochs=1, arch="c2-p-c4-p-fc")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            protocol="tcp://",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        pids = set(client.run(os.getpid).values())
        assert len(pids) == 2 and os.getpid() not in pids
        with parallel_config(backend="dask"):
            remote = run_experiment(Settings(jobs=2, **settings), store=tmp_path / "dask")
        assert remote["timing"]["jobs"] == 2
    # the workers run the kernels single-threaded; so does the reference
    threads = cp.get_num_threads()
    cp.set_num_threads(1)
    try:
        local = run_experiment(Settings(jobs=1, **settings))
    finally:
        cp.set_num_threads(threads)
    assert without_times(remote) == without_times(local)
    assert len(list((tmp_path / "dask" / "runs").glob("*-seed*.json"))) == 8


def test_log_progress_takes_the_times_from_the_record_when_no_epoch_came():
    stream = io.StringIO()
    bar = SweepProgress(1, 2, mode="log", stream=stream)
    record = {
        "epochs": [{"train_loss": 0.5, "seconds": 0.01}, {"train_loss": 0.4, "seconds": 0.03}]
    }
    bar(("start", "max", 0, 2))
    bar(("end", "max", 0, "ok", record))
    assert bar.seconds_per_epoch == pytest.approx(0.02)
    assert "0.020 s/epoch" in stream.getvalue()


def test_resume_takes_the_options_not_given_from_the_sweep(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r"
    args = ["--dataset", "faces", "--epochs", "1", "--seeds", "3", "--pool", "max", "--pool", "lp"]
    real = runner_mod.train_one
    started = []

    def stop_at_3(*a, **k):
        started.append(1)
        if len(started) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(runner_mod, "train_one", stop_at_3)
    assert cli.main(args + ["--quiet", "--jobs", "1", "--out", str(out)]) == 130
    monkeypatch.setattr(runner_mod, "train_one", real)
    assert cli.main(["--out", str(out), "--resume", "--quiet", "--jobs", "1"]) == 0
    d = read_json(out / "results.json")
    assert d["settings"]["pools"] == ["max", "lp"] and d["settings"]["seeds"] == [0, 1, 2]
    assert d["timing"]["runs_resumed"] == 2 and d["timing"]["runs_trained"] == 4


def test_a_store_with_runs_is_not_restarted_by_accident(tmp_path):
    s = Settings(dataset="faces", seeds=(0,), epochs=1, arch="c2-p-c4-p-fc")
    run_experiment(s, store=tmp_path / "r")
    with pytest.raises(ValueError, match="already holds 2 runs; pass resume=True"):
        run_experiment(s, store=tmp_path / "r")


def test_one_strategy_is_shown_beside_max(tmp_path):
    res = run_experiment(Settings(dataset="faces", seeds=(0,), epochs=1, pools=("lp",)))
    assert res["routing"]["compare"] == ["lp", "max"]
    from cnnpool.experiments import write_outputs

    paths = write_outputs(res, tmp_path / "r")
    assert os.path.getsize(paths["routing"]) > 10_000


def test_resume_keeps_the_learning_rate_search(tmp_path, monkeypatch):
    import cnnpool.experiments.tuning as tuning

    s = Settings(dataset="faces", seeds=(0, 1), epochs=1, arch="c2-p-c4-p-fc", tune_lr=True)
    store = RunStore(tmp_path / "r")
    first = run_experiment(s, store=store)
    assert Path(store.tuning_path).is_file() and "tuning" in first
    Path(store.run_path("mean", 1)).unlink()

    def no_search(*a, **k):
        raise AssertionError("the learning rates were searched again")

    monkeypatch.setattr(tuning, "tune_learning_rates", no_search)
    again = run_experiment(s, store=store, resume=True)
    assert again["timing"]["runs_trained"] == 1
    assert without_times(again) == without_times(first)


def test_ctrl_c_landing_in_a_callback_still_stops_the_command(capsys):
    # The CI flake this guards against: Ctrl-C while an import's module-lock callback ran was
    # printed as "Exception ignored ... Traceback" and then lost; the command carried on.
    class Thing:
        pass

    def callback(ref):
        raise KeyboardInterrupt

    before = sys.unraisablehook
    with pytest.raises(KeyboardInterrupt), cli._ctrl_c_never_lost():
        thing = Thing()
        ref = weakref.ref(thing, callback)
        del thing
        for _ in range(1000):  # the signal is sent again and raised here, in plain code
            time.sleep(0.001)
    assert ref() is None
    assert "Exception ignored" not in capsys.readouterr().err
    assert sys.unraisablehook is before
