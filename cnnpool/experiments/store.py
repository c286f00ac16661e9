"""The sweep folder: every finished run kept at once, and ``--resume``.

A sweep writes into ``OUT/runs/``:

``sweep.json``
    The settings that define the sweep and their hash
    (:func:`settings_hash`), written before the first run starts.
``<strategy>-seed<N>.json``
    One file per finished run (strategy x seed), written atomically (a
    temporary file in the same folder, then renamed) the moment the run
    finishes, so a sweep that dies keeps every run it finished.
``OUT/models/<strategy>-seed<N>.npz``
    With ``--save-models``: the trained network, readable by
    :func:`cnnpool.load`.

:class:`RunStore` reads and writes that folder; ``--resume`` uses it to
train only the runs that are missing, after checking that the sweep was
started with the same settings (a different hash is refused, naming the
settings that differ).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile

import numpy as np

__all__ = [
    "RunStore",
    "SweepMismatch",
    "settings_hash",
    "sweep_settings",
    "atomic_write",
    "run_file_name",
    "jsonable",
]

#: Identifies the layout of ``runs/sweep.json`` and the run files.
SWEEP_SCHEMA = "cnnpool-compare-sweep/1"

#: Settings that say how a sweep runs, not what it computes: left out of the hash,
#: so a sweep can be resumed with another ``--jobs``.
HOW_NOT_WHAT = ("jobs",)


class SweepMismatch(ValueError):
    """``--resume`` into a folder whose sweep has other settings."""

    def __init__(self, message, differing):
        super().__init__(message)
        self.differing = differing


def sweep_settings(settings):
    """The settings that define the results (a plain dict, JSON-ready), without ``jobs``."""
    d = settings.to_dict() if hasattr(settings, "to_dict") else dict(settings)
    return {k: v for k, v in d.items() if k not in HOW_NOT_WHAT}


def settings_hash(settings):
    """SHA-256 (first 16 hex digits) of :func:`sweep_settings`, as canonical JSON."""
    text = json.dumps(sweep_settings(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def run_file_name(strategy, seed, suffix=".json"):
    """``"max-seed3.json"``; characters unsafe in a file name become ``_``."""
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", str(strategy))
    return f"{safe}-seed{int(seed)}{suffix}"


def atomic_write(path, data):
    """Write ``data`` (str or bytes) to ``path`` via a temporary file and a rename.

    A reader (or a crash) sees either the old file or the whole new one.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


class RunStore:
    """``OUT/runs/`` (and ``OUT/models/``): the runs of one sweep, one file each.

    Parameters
    ----------
    out_dir : str or path-like
        The sweep's output folder (``--out``).
    """

    def __init__(self, out_dir):
        self.out_dir = os.fspath(out_dir)
        self.runs_dir = os.path.join(self.out_dir, "runs")
        self.models_dir = os.path.join(self.out_dir, "models")

    # ----------------------------------------------------------- the sweep
    @property
    def sweep_path(self):
        return os.path.join(self.runs_dir, "sweep.json")

    def exists(self):
        """True when the folder holds a sweep (its ``runs/sweep.json``)."""
        return os.path.isfile(self.sweep_path)

    def read_sweep(self):
        """The stored ``sweep.json`` (a dict); ValueError when it is unreadable."""
        try:
            with open(self.sweep_path, encoding="utf-8") as fh:
                sweep = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {self.sweep_path}: {exc}") from None
        if not isinstance(sweep, dict) or sweep.get("schema") != SWEEP_SCHEMA:
            raise ValueError(f"{self.sweep_path} is not a cnnpool-compare sweep file")
        return sweep

    def start(self, settings):
        """Record the sweep's settings (before the first run trains)."""
        os.makedirs(self.runs_dir, exist_ok=True)
        sweep = {
            "schema": SWEEP_SCHEMA,
            "hash": settings_hash(settings),
            "settings": sweep_settings(settings),
        }
        atomic_write(self.sweep_path, json.dumps(sweep, indent=1, sort_keys=True) + "\n")

    def check_same(self, settings):
        """Raise :class:`SweepMismatch` unless the stored sweep has these settings."""
        sweep = self.read_sweep()
        if sweep.get("hash") == settings_hash(settings):
            return
        here, there = sweep_settings(settings), sweep.get("settings", {})
        differing = sorted(k for k in set(here) | set(there) if here.get(k) != there.get(k))
        detail = "; ".join(
            f"{k}: {_short(here.get(k))} now, {_short(there.get(k))} in the sweep"
            for k in differing
        )
        raise SweepMismatch(
            f"{self.out_dir} holds a sweep with other settings ({detail or 'hash differs'}); "
            "resume with the same options, or start over with --force",
            differing,
        )

    # ------------------------------------------------------------ the runs
    def run_path(self, strategy, seed):
        return os.path.join(self.runs_dir, run_file_name(strategy, seed))

    def model_path(self, strategy, seed):
        return os.path.join(self.models_dir, run_file_name(strategy, seed, ".npz"))

    def save_run(self, record, model_bytes=None):
        """Keep one finished run: its JSON record (and its model's ``.npz`` bytes)."""
        if model_bytes is not None:
            os.makedirs(self.models_dir, exist_ok=True)
            atomic_write(self.model_path(record["strategy"], record["seed"]), model_bytes)
        text = json.dumps(record, allow_nan=False)
        return atomic_write(self.run_path(record["strategy"], record["seed"]), text + "\n")

    def load_runs(self, names, seeds):
        """The finished runs among ``names`` x ``seeds``: ``{(name, seed): record}``.

        A run file that cannot be read (e.g. a disk that filled up) is left
        out, so that the run is trained again.
        """
        done = {}
        for name in names:
            for seed in seeds:
                path = self.run_path(name, seed)
                try:
                    with open(path, encoding="utf-8") as fh:
                        record = json.load(fh)
                except FileNotFoundError:
                    continue
                except (OSError, ValueError):
                    continue
                if (
                    isinstance(record, dict)
                    and record.get("strategy") == name
                    and record.get("seed") == seed
                ):
                    done[(name, seed)] = record
        return done

    @property
    def tuning_path(self):
        return os.path.join(self.runs_dir, "tuning.json")

    def save_tuning(self, tuning):
        """Keep ``--tune-lr``'s search, so that a resumed sweep does not search again."""
        atomic_write(self.tuning_path, json.dumps(tuning, allow_nan=False) + "\n")

    def read_tuning(self):
        """The kept ``--tune-lr`` search, or None."""
        try:
            with open(self.tuning_path, encoding="utf-8") as fh:
                tuning = json.load(fh)
        except (OSError, ValueError):
            return None
        return tuning if isinstance(tuning, dict) and "chosen" in tuning else None

    def count_runs(self):
        """How many run files the folder holds (any settings)."""
        try:
            names = os.listdir(self.runs_dir)
        except OSError:
            return 0
        kept = ("sweep.json", "tuning.json")
        return sum(1 for n in names if n.endswith(".json") and n not in kept)


def _short(value):
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def jsonable(obj):
    """``obj`` ready for strict JSON: arrays to lists, NumPy scalars to Python, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
