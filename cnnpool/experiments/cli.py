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
            "Writes results.json, results.md, curves.png and routing.png into --out. "
            "Example: cnnpool-compare --dataset textures --seeds 10 --pool max --pool mean "
            "--pool my_pooling:LpPool2d"
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
        "--out", default="results", metavar="DIR", help="output directory (default: results/)"
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
        help="no settings header and no progress bars; only the results",
    )
    return p


def default_jobs(n_seeds):
    """One worker per CPU core, at most one per seed."""
    return max(1, min(os.cpu_count() or 1, n_seeds))


def main(argv=None):
    """Entry point of ``cnnpool-compare``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
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

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    progress = not args.quiet and sys.stderr.isatty()
    if not args.quiet:
        _print_settings(settings, strategies, args.out)

    from .report import text_table, write_outputs
    from .runner import run_experiment

    t0 = time.perf_counter()
    results = run_experiment(settings, progress=progress)
    paths = write_outputs(results, args.out)
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
    print(f"Wrote {', '.join(paths.values())}  ({wall:.1f} s)")
    return 1 if failed and len(failed) == len(results["runs"]) else 0


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
