"""``cnnpool-compare``: train the same CNN with max and with mean pooling, and compare.

Run with no arguments for the default comparison (under a minute on two
cores); ``cnnpool-compare --help`` lists the options.  Your own strategy
enters beside max and mean as ``--pool module:Class`` (or
``--pool path/to/file.py:Class``, with keyword arguments as
``--pool "file.py:Class(beta=4)"``), any subclass of ``cnnpool.Pool2d``;
your own images as ``--data DIR`` (one subfolder per class) or
``--data FILE.npz``; your own network as ``--arch c16-p-c32-p-fc``.
``--tune-lr`` lets each strategy choose its learning rate on a validation
split of the training images.
"""

from __future__ import annotations

import _thread
import argparse
import contextlib
import logging
import os
import sys
import threading
import time

from .settings import Settings
from .strategies import available, resolve_strategies

DEFAULTS = Settings()

#: Learning rate used when ``--lr`` is not given, per optimizer.
DEFAULT_LR = {"adam": DEFAULTS.lr, "sgd": 0.02}


#: The most seeds one run accepts, and the bound of a seed's value.
MAX_SEEDS = 10_000
MAX_SEED = 2**32 - 1


def _seeds(text):
    """``"8"`` → seeds 0..7; ``"3,5,9"`` → those seeds; ``"10-14"`` → 10..14."""
    try:
        if "," in text:
            seeds = [int(t) for t in text.split(",") if t.strip()]
        elif "-" in text.strip("-"):
            lo, hi = (int(t) for t in text.split("-"))
            if hi - lo + 1 > MAX_SEEDS:
                raise _TooMany(hi - lo + 1)
            seeds = list(range(lo, hi + 1))
        else:
            n = int(text)
            if n < 1:
                raise ValueError
            if n > MAX_SEEDS:
                raise _TooMany(n)
            seeds = list(range(n))
    except _TooMany as exc:
        raise argparse.ArgumentTypeError(
            f"at most {MAX_SEEDS} seeds per run, got {exc.args[0]} (from {text!r})"
        ) from None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a count (8), a list (0,3,5) or a range (10-14), got {text!r}"
        ) from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct and >= 0, got {text!r}")
    if len(seeds) > MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SEEDS} seeds per run, got {len(seeds)}")
    if max(seeds) > MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must be at most 2**32 - 1, got {max(seeds)}")
    return seeds


class _TooMany(Exception):
    """A seed count over MAX_SEEDS (raised before building the list)."""


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


def _fraction(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {text!r}")
    return v


def _rates(text):
    rates = [_positive_float(t.strip()) for t in text.split(",") if t.strip()]
    if not rates:
        raise argparse.ArgumentTypeError(f"expected rates such as 0.001,0.003,0.01, got {text!r}")
    if len(rates) > 12:
        raise argparse.ArgumentTypeError(f"at most 12 rates, got {len(rates)}")
    if len(set(rates)) != len(rates):
        raise argparse.ArgumentTypeError(f"rates must be distinct, got {text!r}")
    return rates


def build_parser():
    p = argparse.ArgumentParser(
        prog="cnnpool-compare",
        description=(
            "Train one small CNN (by default conv → ReLU → pool → conv → ReLU → pool → linear) "
            "once per pooling strategy and seed, on images that ship with scikit-image or on "
            "your own (--data), and compare the strategies seed by seed: same data split, "
            "same initial weights and same batch order for every strategy on a seed (a paired "
            "design)."
        ),
        epilog=(
            "Writes results.json, results.md, curves.png, paired.png, routing.png and "
            "report.html into --out (replaced together), and keeps every run in OUT/runs/ as "
            "it finishes. Examples: cnnpool-compare --dataset textures --seeds 10 --pool max "
            "--pool mean --pool my_pooling:LpPool2d;  cnnpool-compare --data photos/ --size 32 "
            "--color rgb --arch c16-p-c32-p-fc --pool max --pool 'lp(norm=3)' --tune-lr"
        ),
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--dataset",
        choices=("faces", "textures"),
        default=None,
        help=f"a built-in set: faces (LFW faces vs not-faces, 25x25 gray) or textures "
        f"(brick/grass/gravel patches, 32x32 gray) (default: {DEFAULTS.dataset})",
    )
    data.add_argument(
        "--data",
        metavar="DIR|FILE.npz",
        help="your own images instead: a folder with one subfolder per class (PNG, JPEG, "
        "TIFF, ...; split by seed), or with train/ and test/ class folders (a fixed split); "
        "or an .npz file with x_train, y_train, x_test, y_test (NCHW or NHW)",
    )
    data.add_argument(
        "--color",
        choices=("gray", "rgb"),
        default=None,
        help="convert your images to gray (1 channel) or RGB (3) (default: RGB if any "
        "image has colour, else gray)",
    )
    data.add_argument(
        "--size",
        metavar="H[xW]",
        default=None,
        help="bring your images to this size, e.g. 32 or 32x48 (default: they must all "
        "have one size already)",
    )
    data.add_argument(
        "--fit",
        choices=("resize", "crop"),
        default=DEFAULTS.fit,
        help="how --size is reached: resize (scale to exactly HxW) or crop (scale keeping "
        f"the aspect ratio, then cut out the centre) (default: {DEFAULTS.fit})",
    )
    data.add_argument(
        "--test-fraction",
        type=_fraction,
        default=DEFAULTS.test_fraction,
        metavar="F",
        help="share of each class of a folder held out for testing, drawn per seed "
        f"(default: {DEFAULTS.test_fraction:g}; a folder with train/ and test/ keeps its split)",
    )
    data.add_argument(
        "--strict",
        action="store_true",
        help="refuse a file that is not a readable image (default: skip it, with a count and "
        "its name in the log and in results.json)",
    )
    model = p.add_argument_group("network and strategies")
    model.add_argument(
        "--arch",
        default=DEFAULTS.arch,
        metavar="SPEC",
        help="the network, layers joined by '-': cN (3x3 conv, N channels, + ReLU), cNkK "
        "(KxK conv), p (the pooling under comparison), fcN (hidden linear + ReLU), fc (output "
        f"layer, last) (default: {DEFAULTS.arch})",
    )
    model.add_argument(
        "--pool-size",
        type=_positive_int,
        default=DEFAULTS.kernel_size,
        metavar="K",
        help=f"kernel size (and stride) of every pooling layer (default: {DEFAULTS.kernel_size})",
    )
    model.add_argument(
        "--pool",
        action="append",
        metavar="STRATEGY",
        help="a pooling strategy: a short name (" + ", ".join(available()) + ") "
        "or a Pool2d subclass as module:Class "
        "or path/file.py:Class, optionally with keyword arguments: 'lp(norm=3)', "
        "'file.py:Class(beta=4)' (literal values only); repeat for several (default: "
        "--pool max --pool mean)",
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
        "--tune-lr",
        action="store_true",
        help="let each strategy choose its own learning rate from --lr-grid, by the mean "
        "validation accuracy over the seeds (a split carved from the training images; the "
        "test images are not seen until the final runs)",
    )
    p.add_argument(
        "--lr-grid",
        type=_rates,
        default=None,
        metavar="LR,LR,...",
        help="learning rates for --tune-lr (default: the learning rate and its neighbours a "
        "factor 3 away, e.g. 0.001,0.003,0.009 for adam)",
    )
    p.add_argument(
        "--val-fraction",
        type=_fraction,
        default=DEFAULTS.val_fraction,
        metavar="F",
        help="share of each class's training images held out for --tune-lr's validation "
        f"(default: {DEFAULTS.val_fraction:g})",
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
    with _ctrl_c_never_lost():
        return _main(argv)


@contextlib.contextmanager
def _ctrl_c_never_lost():
    """Let Ctrl-C stop the command even when it lands in a callback.

    Python raises ``KeyboardInterrupt`` in whatever code runs when the
    signal arrives.  In a weakref callback or ``__del__`` (an import's
    module-lock callback, for one) it cannot propagate: Python prints
    "Exception ignored ... Traceback" and carries on as if no key was
    pressed.  This hook catches exactly that case and interrupts the main
    thread again a moment later (from a timer thread: raised at once, it
    would land in the hook itself and be ignored the same way), so it is
    raised in the command's own code, which stops cleanly.
    """
    previous = sys.unraisablehook

    def hook(unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            threading.Timer(0.01, _thread.interrupt_main).start()
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def _main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.replot is not None:
        return _replot(args)
    if args.resume:
        _fill_from_sweep(args, argv)
    pools = args.pool or list(DEFAULTS.pools)
    try:
        strategies = resolve_strategies(pools)
    except ValueError as exc:
        parser.error(str(exc))
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    if args.dataset is not None and args.data is not None:
        parser.error("give --dataset (a built-in set) or --data (your own), not both")
    if args.data is None and (args.color or args.size or args.strict):
        parser.error("--color, --size and --strict apply to your own images (--data)")
    if args.lr_grid is not None and not args.tune_lr:
        parser.error("--lr-grid is the grid of --tune-lr; add --tune-lr")
    try:
        settings = Settings(
            dataset=args.data or args.dataset or DEFAULTS.dataset,
            pools=tuple(s.spec for s in strategies),
            seeds=tuple(args.seeds),
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=lr,
            optimizer=args.optimizer,
            arch=args.arch,
            kernel_size=args.pool_size,
            jobs=args.jobs or default_jobs(len(args.seeds)),
            color=args.color,
            size=args.size,
            fit=args.fit,
            test_fraction=args.test_fraction,
            strict=args.strict,
            tune_lr=args.tune_lr,
            lr_grid=args.lr_grid,
            val_fraction=args.val_fraction,
        )
    except ValueError as exc:
        parser.error(str(exc))

    from .outputs import check_out_dir, clear_out_dir, write_outputs
    from .report import NOTES, any_clipped, difference_matrix, text_table, tuning_text
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
    progress = not args.quiet
    from .arch import build_model
    from .data import load_dataset

    try:  # read the data and build the network once here: bad data or arch fail in a line
        data = load_dataset(settings, settings.seeds[0], progress=progress and sys.stderr.isatty())
        build_model(
            lambda: strategies[0].make(settings.kernel_size, seed=0),
            data.image_shape,
            data.num_classes,
            settings.arch,
            pool_size=settings.kernel_size,
        )
    except ValueError as exc:  # DataError is a ValueError
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        print("\nInterrupted before the first run: nothing was written.", file=sys.stderr)
        return 130
    if args.resume and mode == "new" and not args.quiet:
        print(f"Nothing to resume in {out}/: starting the sweep.")
    t0 = time.perf_counter()
    try:
        if mode == "replace":
            clear_out_dir(out)
        if not args.quiet:
            _print_settings(settings, strategies, data, out)
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
    if any_clipped(results):
        print(NOTES["clipped"])
    if any(row.get("did_not_learn") for row in results["summary"].values()):
        print(NOTES["did_not_learn"])
    if "tuning" in results:
        print()
        print("Learning rate per strategy, chosen on a validation split of the training images:")
        print(tuning_text(results["tuning"]))
    if len(results["strategies"]) > 2:
        print()
        print("\n".join(difference_matrix(results)))
        print(f"The sentences for every pair are in {os.path.join(out, 'results.md')}.")
    else:
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
    "pool": "pools",
    "seeds": "seeds",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "optimizer": "optimizer",
    "arch": "arch",
    "pool_size": "kernel_size",
    "color": "color",
    "size": "size",
    "fit": "fit",
    "test_fraction": "test_fraction",
    "strict": "strict",
    "tune_lr": "tune_lr",
    "lr_grid": "lr_grid",
    "val_fraction": "val_fraction",
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
    if not {"dataset", "data"} & given and "dataset" in stored:  # a built-in set or a folder
        builtin = stored["dataset"] in ("faces", "textures")
        setattr(args, "dataset" if builtin else "data", stored["dataset"])
    for dest, key in _RESUMED.items():
        if dest in given or key not in stored or not hasattr(args, dest):
            continue
        value = stored[key]
        setattr(args, dest, tuple(value) if isinstance(value, list) else value)


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


def _print_settings(settings, strategies, data, out):
    from .arch import describe

    k = settings.kernel_size
    names = ", ".join(s.name if s.spec == s.name else f"{s.name} ({s.spec})" for s in strategies)
    seeds = settings.seeds
    print("cnnpool-compare: the same CNN trained once per pooling strategy and seed")
    print(
        f"  dataset     {data.name}: {len(data.x_train)} train / {len(data.x_test)} test, "
        f"{data.image_shape[1]}x{data.image_shape[2]} "
        f"{'RGB' if data.image_shape[0] == 3 else 'gray'}, classes {', '.join(data.classes)}"
        f"{' (standardised)' if data.standardized else ''}"
    )
    if data.info.get("split") and settings.dataset not in ("faces", "textures"):
        fit = data.info.get("fit")
        skipped = len(data.info.get("skipped", ()))
        print(
            f"              {data.info['split']}"
            + (f"; {fit} to {settings.size[0]}x{settings.size[1]}" if fit else "")
            + (f"; {skipped} unreadable file(s) skipped" if skipped else "")
        )
    arch = describe(settings, data.num_classes)["description"]
    print(f"  model       {arch.replace(f'pool{k}x{k}', f'POOL {k}x{k}')}")
    print(f"  POOL        {names}")
    print(f"  seeds       {len(seeds)} paired: {', '.join(map(str, seeds))}")
    print(
        f"  training    {settings.epochs} epochs, batch {settings.batch_size}, "
        f"{settings.optimizer} "
        + (
            f"lr chosen per strategy from {', '.join(f'{v:g}' for v in settings.grid())} on a "
            f"{settings.val_fraction:g} validation split"
            if settings.tune_lr
            else f"lr {settings.lr:g}"
        )
        + f"{f' momentum {settings.momentum:g}' if settings.optimizer == 'sgd' else ''}, "
        f"softmax cross-entropy, {settings.dtype}"
    )
    print(f"  jobs        {settings.jobs}")
    print(f"  output      {out}/")
    sys.stdout.flush()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
