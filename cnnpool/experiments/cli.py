"""``cnnpool-compare``: train the same CNN with max and with mean pooling, and compare.

Run with no arguments for the default comparison (under a minute on two
cores); ``cnnpool-compare --help`` lists the options.  Your own strategy
enters beside max and mean as ``--pool module:Class`` (or
``--pool path/to/file.py:Class``), any subclass of ``cnnpool.Pool2d``
whose constructor takes the kernel size first.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from .settings import Settings
from .strategies import available, resolve_strategy

DEFAULTS = Settings()

#: Learning rate used when ``--lr`` is not given, per optimizer.
DEFAULT_LR = {"adam": DEFAULTS.lr, "sgd": 0.02}


def _seeds(text):
    """``"8"`` → seeds 0..7; ``"3,5,9"`` → those seeds; ``"10-14"`` → 10..14."""
    try:
        if "," in text:
            seeds = [int(t) for t in text.split(",") if t.strip()]
        elif "-" in text.strip("-"):
            lo, hi = (int(t) for t in text.split("-"))
            seeds = list(range(lo, hi + 1))
        else:
            n = int(text)
            if n < 1:
                raise ValueError
            seeds = list(range(n))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a count (8), a list (0,3,5) or a range (10-14), got {text!r}"
        ) from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct and >= 0, got {text!r}")
    return seeds


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def build_parser():
    p = argparse.ArgumentParser(
        prog="cnnpool-compare",
        description=(
            "Train one small CNN (conv → ReLU → pool → conv → ReLU → pool → linear) once per "
            "pooling strategy and seed, on images that ship with scikit-image, and compare "
            "the strategies seed by seed: same data split, same initial weights and same "
            "batch order for every strategy on a seed (a paired design)."
        ),
        epilog=(
            "Writes results.json, results.md, curves.png, paired.png, routing.png and "
            "report.html into --out (replaced together), and keeps every run in OUT/runs/ as "
            "it finishes. Example: cnnpool-compare --dataset textures --seeds 10 --pool max "
            "--pool mean --pool my_pooling:LpPool2d"
        ),
    )
    p.add_argument(
        "--dataset",
        choices=("faces", "textures"),
        default=DEFAULTS.dataset,
        help=f"faces: LFW faces vs not-faces, 25x25; textures: brick/grass/gravel "
        f"patches, 32x32 (default: {DEFAULTS.dataset})",
    )
    p.add_argument(
        "--pool",
        action="append",
        metavar="STRATEGY",
        help="a pooling strategy: a short name (" + ", ".join(available()) + ") "
        "or a Pool2d subclass as module:Class "
        "or path/file.py:Class; repeat for several (default: --pool max "
        "--pool mean)",
    )
    p.add_argument(
        "--seeds",
        type=_seeds,
        default=list(DEFAULTS.seeds),
        metavar="N|LIST",
        help=f"number of seeds (0..N-1), a list 0,3,5 or a range 10-14 "
        f"(default: {len(DEFAULTS.seeds)})",
    )
    p.add_argument(
        "--epochs",
        type=_positive_int,
        default=DEFAULTS.epochs,
        help=f"training epochs per run (default: {DEFAULTS.epochs})",
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=DEFAULTS.batch_size,
        help=f"mini-batch size (default: {DEFAULTS.batch_size})",
    )
    p.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help=f"learning rate (default: {DEFAULT_LR['adam']:g} for adam, "
        f"{DEFAULT_LR['sgd']:g} for sgd)",
    )
    p.add_argument(
        "--optimizer",
        choices=("sgd", "adam"),
        default=DEFAULTS.optimizer,
        help=f"adam, or sgd with momentum {DEFAULTS.momentum:g} (default: {DEFAULTS.optimizer})",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="output folder, new or of an earlier sweep (default: results/; with --replot: "
        "the folder of the results file)",
    )
    p.add_argument(
        "--jobs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="seeds to train in parallel with joblib, one thread each (default: "
        "one per CPU core, at most one per seed; 1 trains in this process)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no settings header and no progress; only the results",
    )
    _add_sweep_options(p)
    return p


def _add_sweep_options(p):
    """Long sweeps and their outputs: resume, replace, models, replot."""
    g = p.add_argument_group("sweeps and outputs")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the sweep in --out: runs it already holds are kept, only the missing "
        "ones are trained; options not given are taken from the sweep (given ones must "
        "match it; --jobs may differ); a new or empty --out just starts the sweep",
    )
    g.add_argument(
        "--force",
        action="store_true",
        help="replace the results of an earlier sweep in --out (without it such a folder "
        "is refused)",
    )
    g.add_argument(
        "--save-models",
        action="store_true",
        help="keep every trained network in OUT/models/STRATEGY-seedN.npz (cnnpool.load reads it)",
    )
    g.add_argument(
        "--replot",
        metavar="RESULTS_JSON",
        default=None,
        help="train nothing: redraw the figures, results.md and report.html from a results.json",
    )
    g.add_argument(
        "--routing",
        metavar="A,B",
        default=None,
        help="the two strategies routing.png compares (default: the first two)",
    )


def default_jobs(n_seeds):
    """One worker per CPU core, at most one per seed."""
    return max(1, min(os.cpu_count() or 1, n_seeds))


def main(argv=None):
    """Entry point of ``cnnpool-compare``; returns the exit status.

    Every argument, ``--out`` included, is checked before the first epoch;
    a bad one ends the command with a one-line error (exit status 2).
    Ctrl-C stops the sweep cleanly: the runs that finished are kept in
    ``OUT/runs/``, a summary says what finished, and the status is 130.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.replot is not None:
        return _replot(args)
    if args.resume:
        _fill_from_sweep(args, argv)
    pools = args.pool or list(DEFAULTS.pools)
    try:
        strategies = [resolve_strategy(p) for p in pools]
    except ValueError as exc:
        parser.error(str(exc))
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    try:
        settings = Settings(
            dataset=args.dataset,
            pools=tuple(s.spec for s in strategies),
            seeds=tuple(args.seeds),
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=lr,
            optimizer=args.optimizer,
            jobs=args.jobs or default_jobs(len(args.seeds)),
        )
    except ValueError as exc:
        parser.error(str(exc))

    from .outputs import check_out_dir, clear_out_dir, write_outputs
    from .report import text_table
    from .runner import check_routing, run_experiment
    from .store import RunStore

    out = args.out if args.out is not None else "results"
    names = [s.name for s in strategies]
    if args.resume and args.force:
        return _fail("--resume and --force contradict each other: continue a sweep, or replace it")
    try:
        routing = check_routing(args.routing, names) if args.routing else None
        mode = check_out_dir(out, resume=args.resume, force=args.force)
        store = RunStore(out)
        if mode == "resume":
            store.check_same(settings)
    except ValueError as exc:
        return _fail(str(exc).replace("routing", "--routing", 1) if args.routing else str(exc))

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if args.resume and mode == "new" and not args.quiet:
        print(f"Nothing to resume in {out}/: starting the sweep.")
    t0 = time.perf_counter()
    try:
        if mode == "replace":
            clear_out_dir(out)
        if not args.quiet:
            _print_settings(settings, strategies, out)
        results = run_experiment(
            settings,
            progress=not args.quiet,
            store=store,
            resume=mode == "resume",
            save_models=args.save_models,
            routing=routing,
        )
        paths = write_outputs(results, out)
    except KeyboardInterrupt:
        _interrupted(store, settings, names, out)
        return 130
    wall = time.perf_counter() - t0

    print()
    print(text_table(results))
    print()
    print(
        "Mean ± 95% confidence interval over seeds; diverged/failed runs are counted and "
        "left out of the means."
    )
    for c in results["comparisons"]:
        print()
        print(f"{c['a']} − {c['b']}:")
        print("  " + c["test_accuracy"]["summary"])
        print("  " + c["final_train_loss"]["summary"])
    failed = [r for r in results["runs"] if r["status"] == "failed"]
    for r in failed:
        print(f"\nFAILED {r['strategy']}, seed {r['seed']}: {r['error']}")
    print()
    timing = results["timing"]
    if timing.get("runs_resumed"):
        print(
            f"Resumed: {timing['runs_resumed']} run(s) kept from before, "
            f"{timing['runs_trained']} trained now."
        )
    if mode == "replace":
        print(f"Replaced the earlier results in {out}/ (--force).")
    print(f"Wrote {', '.join(paths.values())}  ({wall:.1f} s)")
    return 1 if failed and len(failed) == len(results["runs"]) else 0


#: The options --resume takes from the sweep when they are not given, by Settings field.
_RESUMED = {
    "dataset": "dataset",
    "pool": "pools",
    "seeds": "seeds",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "optimizer": "optimizer",
}


def _fill_from_sweep(args, argv):
    """With --resume, the options not given on the command line come from the sweep."""
    from .store import RunStore

    store = RunStore(args.out if args.out is not None else "results")
    try:
        stored = store.read_sweep()["settings"]
    except (ValueError, KeyError, TypeError):
        return  # no readable sweep: check_out_dir says so, in one line
    given = _given_options(argv)
    for dest, key in _RESUMED.items():
        if dest not in given and key in stored:
            setattr(args, dest, list(stored[key]) if key in ("pools", "seeds") else stored[key])


def _given_options(argv):
    """The destinations of the options written on the command line (defaults left out)."""
    parser = build_parser()
    for action in parser._actions:  # argparse has no public way to drop every default
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _fail(message):
    """A one-line error on stderr; exit status 2, as argparse's own errors."""
    print(f"cnnpool-compare: error: {message}", file=sys.stderr)
    return 2


def _interrupted(store, settings, names, out):
    """What a Ctrl-C leaves: the finished runs, and how to continue."""
    try:
        done = store.load_runs(names, settings.seeds)
    except Exception:  # noqa: BLE001 - the summary must not raise
        done = {}
    total = len(names) * len(settings.seeds)
    per = ", ".join(f"{n} {sum(1 for k in done if k[0] == n)}" for n in names)
    print(file=sys.stderr)
    print(
        f"Interrupted: {len(done)} of {total} runs finished and are kept in "
        f"{os.path.join(out, 'runs')}/ ({per}); the results files were not written "
        f"(an earlier set in {out}/ is unchanged). Continue with: cnnpool-compare --out {out} "
        "--resume",
        file=sys.stderr,
    )


def _replot(args):
    from .outputs import replot

    try:
        paths = replot(args.replot, args.out, routing=args.routing)
    except ValueError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("\nInterrupted: nothing was replaced.", file=sys.stderr)
        return 130
    if not args.quiet:
        print(f"Redrew {', '.join(paths.values())}")
    return 0


def _print_settings(settings, strategies, out):
    from .data import load_dataset

    data = load_dataset(settings, settings.seeds[0])
    c1, c2 = settings.channels
    k = settings.kernel_size
    names = ", ".join(s.name if s.spec == s.name else f"{s.name} ({s.spec})" for s in strategies)
    seeds = settings.seeds
    print("cnnpool-compare: the same CNN trained once per pooling strategy and seed")
    print(
        f"  dataset     {data.name}: {len(data.x_train)} train / {len(data.x_test)} test, "
        f"{data.image_shape[1]}x{data.image_shape[2]} gray, classes {', '.join(data.classes)}"
        f"{' (standardised)' if data.standardized else ''}"
    )
    print(
        f"  model       conv3x3({c1}) → ReLU → POOL {k}x{k} → conv3x3({c2}) → ReLU → "
        f"POOL {k}x{k} → flatten → linear({data.num_classes})"
    )
    print(f"  POOL        {names}")
    print(f"  seeds       {len(seeds)} paired: {', '.join(map(str, seeds))}")
    print(
        f"  training    {settings.epochs} epochs, batch {settings.batch_size}, "
        f"{settings.optimizer} lr {settings.lr:g}"
        f"{f' momentum {settings.momentum:g}' if settings.optimizer == 'sgd' else ''}, "
        f"softmax cross-entropy, {settings.dtype}"
    )
    print(f"  jobs        {settings.jobs}")
    print(f"  output      {out}/")
    sys.stdout.flush()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
