"""The pooling comparison behind ``cnnpool-compare``: runs, statistics, reports.

The paired design: one small CNN, trained once per pooling strategy and
seed; for a given seed every strategy gets the same data split, the same
initial weights and the same batch order, so that differences on one seed
are due to pooling.  Nothing is dropped: diverged and failed runs are
counted and reported.

Submodules, one idea each, imported on first use so that ``import cnnpool``
stays light (scipy, matplotlib and joblib are optional dependencies,
installed by ``pip install "cnnpool[examples]"``):

``settings``
    :class:`Settings`, everything that defines an experiment.
``strategies``
    ``--pool`` specs (short names, ``module:Class``, ``file.py:Class``)
    resolved to pooling classes.
``data``
    The data set of one seed: built in, your folder or your .npz file.
``arch``
    The network (``--arch`` spec): the same CNN for every strategy, only the
    pooling differs.
``training``
    One run: one strategy on one seed, recorded epoch by epoch.
``runner``
    Every strategy on every seed, seeds in parallel joblib workers.
``tuning``
    ``--tune-lr``: a learning rate per strategy, chosen on validation splits
    of the training images.
``progress``
    Progress of a sweep, shaped by where it runs (terminal, Jupyter, log).
``summary``
    Per-strategy intervals and paired comparisons of a finished run.
``stats``
    Mean ± 95% confidence interval over seeds; paired differences and tests.
``report``
    The results tables (Markdown and terminal).
``report_html``
    ``report.html``: the whole report in one self-contained page.
``store``
    The sweep folder: every finished run kept at once, ``--resume``.
``outputs``
    The output set (``results.json``, ``results.md``, figures, report),
    replaced whole; ``--replot``.
``plots``
    ``curves.png`` (loss and accuracy per epoch), ``paired.png`` (each
    seed under each strategy) and ``routing.png`` (where the gradient flows
    back through two strategies).
``cli``
    The ``cnnpool-compare`` command.

The names most scripts need are importable from here::

    from cnnpool.experiments import Settings, run_experiment, write_outputs
"""

import importlib

_SUBMODULES = (
    "settings",
    "strategies",
    "data",
    "arch",
    "training",
    "runner",
    "tuning",
    "progress",
    "summary",
    "stats",
    "report",
    "report_html",
    "store",
    "outputs",
    "plots",
    "cli",
)

#: Public names, by the submodule that defines them.
_NAMES = {
    "Settings": "settings",
    "Strategy": "strategies",
    "resolve_strategy": "strategies",
    "load_dataset": "data",
    "build_model": "arch",
    "train_one": "training",
    "SCHEMA": "runner",
    "run_seed": "runner",
    "run_experiment": "runner",
    "summarize": "summary",
    "results_table": "report",
    "write_outputs": "outputs",
    "replot": "outputs",
    "RunStore": "store",
}

__all__ = [*_NAMES, *_SUBMODULES]


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
