"""What a comparison run costs: the default run, ``--tune-lr``, and a folder of your own images.

Targets (issue 14):

* the default ``cnnpool-compare`` run keeps its speed (about 4 s on an idle
  2-core machine) and its results table;
* ``--tune-lr`` with a 3-value grid costs at most 4x the plain run;
* a folder of 3 classes x 200 RGB 64x64 pictures, compared max vs mean with
  ``--data DIR --size 32 --color rgb``, finishes in under a minute on 2 cores;
* reading a folder of a few thousand small pictures takes seconds.

The plain and tuned runs are timed alternately in one process, one seed at a
time in this process with one thread (``OMP_NUM_THREADS=1``), so that their
ratio compares the work, not the machine's load at two moments.  The folder
run is timed as the command runs it (one worker per core), and the load
average is printed with it.

Run: ``OMP_NUM_THREADS=1 python benchmarks/compare_runs.py [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np


def make_folder(root, per_class=200, side=64, seed=0):
    """3 classes x ``per_class`` RGB ``side`` x ``side`` crops of scikit-image pictures."""
    from skimage import data, io

    rng = np.random.default_rng(seed)
    for name in ("astronaut", "coffee", "chelsea"):
        img = getattr(data, name)()
        os.makedirs(os.path.join(root, name), exist_ok=True)
        h, w = img.shape[:2]
        for i in range(per_class):
            r, c = rng.integers(0, h - side), rng.integers(0, w - side)
            io.imsave(
                os.path.join(root, name, f"{i:03d}.png"),
                img[r : r + side, c : c + side],
                check_contrast=False,
            )
    return root


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    from cnnpool.experiments import Settings, run_experiment
    from cnnpool.experiments.report import text_table

    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores)")
    plain, tuned = [], []
    for _ in range(args.repeats):
        t, res = timed(lambda: run_experiment(Settings(jobs=1)))
        plain.append(t)
        t, _ = timed(lambda: run_experiment(Settings(jobs=1, tune_lr=True)))
        tuned.append(t)
    print("\ndefault run (10 seeds, max vs mean, textures), one process:")
    print(text_table(res))
    print(f"plain   : median {statistics.median(plain):.1f} s, min {min(plain):.1f} s")
    print(f"tune-lr : median {statistics.median(tuned):.1f} s, min {min(tuned):.1f} s")
    print(
        f"tune-lr / plain: {statistics.median(tuned) / statistics.median(plain):.2f} "
        f"(medians), {min(tuned) / min(plain):.2f} (minimums); target <= 4"
    )

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(os.path.join(tmp, "pictures"))
        from cnnpool.experiments import cli

        load_run = os.getloadavg()[0]
        t, code = timed(
            lambda: cli.main(
                [
                    "--data",
                    folder,
                    "--size",
                    "32",
                    "--color",
                    "rgb",
                    "--quiet",
                    "--out",
                    os.path.join(tmp, "out"),
                ]
            )
        )
    with tempfile.TemporaryDirectory() as tmp:
        from cnnpool.datasets import load_folder

        folder = make_folder(os.path.join(tmp, "many"), per_class=1000, side=32)
        load = os.getloadavg()[0]
        t_read, d = timed(lambda: load_folder(folder))
    print(
        f"\nreading a folder of {len(d.x_train) + len(d.x_test)} RGB 32x32 PNGs: {t_read:.1f} s "
        f"(load average {load:.2f}); target: seconds"
    )
    print(
        f"\nfolder of 3 x 200 RGB 64x64 PNGs, --size 32 --color rgb, 10 seeds, "
        f"{os.cpu_count()} workers: {t:.1f} s (exit {code}; load average {load_run:.2f}); "
        "target < 60 s"
    )


if __name__ == "__main__":
    main()
