"""Progress of a sweep, shaped by where it runs.

One overall bar counts the runs (strategy x seed) done and estimates the
time left; it is fed with the tuples :func:`~cnnpool.experiments.runner.run_seed`
reports: ``("start", name, seed, epochs)``, ``("epoch", name, seed, epoch,
loss, accuracy, seconds)`` and ``("end", name, seed, status[, record])``.

In a terminal
    One line, redrawn in place: runs done, a bar, elapsed and remaining
    time, the mean training seconds per epoch (the same number as the
    table's ``s / epoch``), and the runs in flight with their epoch.  No
    bar is stacked under another, so no cursor-up escapes are written
    however many runs there are.
In Jupyter
    A widget bar (``tqdm.notebook``) when ipywidgets is installed
    (``pip install "cnnpool[notebook]"``), otherwise the same single text
    line as in a terminal, which Jupyter redraws in place.
Elsewhere (a log file, a pipe)
    One plain line per finished run, with the runs done and the time left.
"""

from __future__ import annotations

import sys
import time

__all__ = ["SweepProgress", "where"]


def where(stream=None):
    """``"notebook"``, ``"terminal"`` or ``"log"``: how progress should look here."""
    stream = sys.stderr if stream is None else stream
    ipython = sys.modules.get("IPython")
    if ipython is not None:
        try:
            shell = ipython.get_ipython()
        except Exception:  # noqa: BLE001 - an odd IPython: treat as a plain stream
            shell = None
        if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
            return "notebook"
    try:
        return "terminal" if stream.isatty() else "log"
    except (AttributeError, ValueError):
        return "log"


def _has_widgets():
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


class SweepProgress:
    """The progress of ``total_runs`` runs of ``epochs`` epochs, ``jobs`` at a time.

    Parameters
    ----------
    total_runs : int
        Runs this invocation trains (a resumed sweep counts only the missing ones).
    epochs : int
    jobs : int
        Runs that may be in flight at once (shown in a terminal).
    mode : {"auto", "terminal", "notebook", "log"}
        ``"auto"`` picks with :func:`where`.
    stream : file, optional
        Where text goes (default ``sys.stderr``).
    """

    def __init__(self, total_runs, epochs, jobs=1, mode="auto", stream=None):
        self.total_runs = int(total_runs)
        self.epochs = int(epochs)
        self.jobs = int(jobs)
        self.stream = sys.stderr if stream is None else stream
        self.mode = where(self.stream) if mode == "auto" else mode
        self.done = 0
        self.failed = 0
        self.in_flight = {}  # (name, seed) -> epochs finished
        self._seconds = 0.0
        self._epochs_timed = 0
        self._t0 = time.perf_counter()
        self._bar = None
        if self.mode in ("terminal", "notebook") and self.total_runs:
            self._bar = self._make_bar()

    def _make_bar(self):
        kwargs = dict(
            total=self.total_runs * self.epochs,  # epochs, so the time left moves smoothly
            desc=self._desc(),
            bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]{postfix}",
            leave=True,
        )
        if self.mode == "notebook" and _has_widgets():
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm(**kwargs)
        from tqdm.std import tqdm

        return tqdm(file=self.stream, dynamic_ncols=True, mininterval=0.2, **kwargs)

    def _desc(self):
        return f"runs {self.done}/{self.total_runs}"

    @property
    def seconds_per_epoch(self):
        """Mean training seconds per epoch over the epochs reported so far (None before)."""
        return self._seconds / self._epochs_timed if self._epochs_timed else None

    def _postfix(self):
        parts = []
        spe = self.seconds_per_epoch
        if spe is not None:
            parts.append(f"{spe:.3f} s/epoch")
        if self.failed:
            parts.append(f"{self.failed} not ok")
        if self.mode == "terminal" and self.in_flight:
            flying = [f"{n} s{s} {e}/{self.epochs}" for (n, s), e in self.in_flight.items()]
            parts.append("in flight: " + ", ".join(flying))
        return (" " + " · ".join(parts)) if parts else ""

    def __call__(self, msg):
        kind, name, seed = msg[:3]
        key = (name, seed)
        if kind == "start":
            self.in_flight[key] = 0
        elif kind == "epoch":
            self.in_flight[key] = msg[3]
            if len(msg) > 6 and msg[6] is not None:
                self._seconds += float(msg[6])
                self._epochs_timed += 1
            self._advance(1)
        elif kind == "end":
            finished = self.in_flight.pop(key, 0)
            if not finished and len(msg) > 4 and isinstance(msg[4], dict):
                # no epoch message came (a log, or a cluster): the record has the times
                for e in msg[4].get("epochs", ()):
                    if e.get("train_loss") is not None and e.get("seconds") is not None:
                        self._seconds += float(e["seconds"])
                        self._epochs_timed += 1
            self.done += 1
            status = msg[3]
            if status != "ok":
                self.failed += 1
            self._advance(self.epochs - finished, refresh=True)
            if self.mode == "log":
                self._log_line(name, seed, status)

    def _advance(self, n, refresh=False):
        if self._bar is None:
            return
        self._bar.set_description_str(self._desc(), refresh=False)
        self._bar.set_postfix_str(self._postfix().strip(), refresh=False)
        if n:
            self._bar.update(n)  # redraws at most every mininterval
        if refresh and self.done == self.total_runs:
            self._bar.refresh()

    def _log_line(self, name, seed, status):
        elapsed = time.perf_counter() - self._t0
        left = elapsed / self.done * (self.total_runs - self.done) if self.done else 0.0
        spe = self.seconds_per_epoch
        self.stream.write(
            f"[{self.done}/{self.total_runs}] {name} seed {seed}: {status}"
            f"{f', {spe:.3f} s/epoch' if spe is not None else ''}"
            f", {_clock(elapsed)} elapsed, ~{_clock(left)} left\n"
        )
        self.stream.flush()

    def close(self):
        if self._bar is not None:
            self.in_flight.clear()
            self._bar.set_description_str(self._desc(), refresh=False)
            self._bar.set_postfix_str(self._postfix().strip(), refresh=False)
            self._bar.close()
            self._bar = None


def _clock(seconds):
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
