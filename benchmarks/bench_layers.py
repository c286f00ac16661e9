#!/usr/bin/env python
"""Benchmark cnnpool's layers against PyTorch and plain NumPy.

Run from the repository root::

    python benchmarks/bench_layers.py                  # 1 and 2 threads; its part of RESULTS.md
    python benchmarks/bench_layers.py --quick          # fewer repeats
    python benchmarks/bench_layers.py --threads 1 --only W1,W2 --out ''
    python benchmarks/bench_layers.py --threads 1 --only R18,V11,I19,TL --list

Workloads (``--list`` prints them all):

W1  max and mean pooling 2x2 stride 2 on (64, 32, 32, 32) float32
W2  max and mean pooling 3x3 stride 2 padding 1 on the same input
W3  Conv2d 16 -> 32, 3x3 padding 1, on (64, 16, 32, 32)
W4  the classic tiny net piece: (1, 1, 6, 6) conv 3x3 -> 2x2 max
W5  W1 in float64
T0  per-call overhead: MaxPool2d(2) on (1, 1, 4, 4)
TS  one training step of the comparison CNN (conv -> ReLU -> pool ->
    conv -> ReLU -> pool -> flatten -> linear -> softmax cross-entropy,
    Adam), batch 16 of (1, 32, 32)
R18 every conv layer shape of ResNet-18 at 64x64 input, batch 8 (issue 19)
V11 every conv layer shape of VGG-11 at 64x64 input, batch 8
I19 the layer shapes of issue 19's table
TL  one training step (Adam) of c32-p-c64-p-c128-p-fc on (32, 3, 64, 64)

Issue 5's workloads are timed forward and forward+backward for cnnpool,
PyTorch (when installed) and the best plain-NumPy version, with a
``np.copyto`` of the same input as the memory floor of the pooling
workloads; issue 19's conv shapes forward+backward against PyTorch.

How it measures
---------------
* One subprocess per thread count, with ``OMP_NUM_THREADS`` (and the BLAS
  thread variables) set before anything is imported, plus
  ``torch.set_num_threads``: the robust way to pin OpenMP's thread count.
* Competitors run interleaved, A B C A B C ... (order reversed every other
  round), so a slow spell of a shared machine hits them all alike.
* Warm-up calls first; then many samples of ``time.perf_counter``; a sample
  of a tiny workload is several calls, so that it lasts about a millisecond.
  Big layers take fewer samples (at least 5) so each costs a few seconds.
  Tables give the median and the minimum per call; ratios use medians.
* A workload whose layer is missing from this cnnpool is skipped with a
  note (the script runs against older and newer trees alike).
* Peak memory of each training step: in a fresh process per library, the
  growth of the resident set (VmHWM) during the first and a warm step; for
  cnnpool also the tracemalloc peak of a warm step (NumPy's allocations).

The code lives in ``benchmarks/layerbench/`` (harness, baselines,
workloads, targets, report); a new workload is one :func:`add` call there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from layerbench import harness, report  # noqa: E402
from layerbench.workloads import TRAIN_SPECS, WORKLOADS, step_builders  # noqa: E402

DEFAULT_OUT = HERE / "RESULTS.md"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument(
        "--threads", default="1,2", help="comma-separated thread counts (default 1,2)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="samples per competitor (default 40, --quick 10)"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated workload prefixes, e.g. W1,W2,T0"
    )
    parser.add_argument(
        "--out", default=str(DEFAULT_OUT), help="Markdown report to write ('' for none)"
    )
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the training-step memory measurement"
    )
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    parser.add_argument(
        "--note", default="", help="a paragraph to put at the top of the report (e.g. the load)"
    )
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    repeats = args.repeats or (10 if args.quick else 40)
    only = [o.strip() for o in args.only.split(",") if o.strip()]

    if args.list:
        for key, work in WORKLOADS.items():
            print(f"{key:16s} {work.description}")
        return 0
    if args.worker is not None:
        json.dump(harness.run_worker(WORKLOADS, args.worker, repeats, only), sys.stdout)
        return 0
    if args.memory is not None:
        step, library = args.memory.split(":")
        json.dump(harness.run_memory(step_builders(step), library), sys.stdout)
        return 0

    script = Path(__file__).resolve()
    thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    results = []
    for t in thread_counts:
        extra = ["--repeats", str(repeats)] + (["--only", args.only] if args.only else [])
        results.append(harness.subprocess_json(script, ["--worker", str(t)] + extra, t))
    memory = {}
    if not args.no_memory:
        for step in TRAIN_SPECS:
            if only and not any(step.startswith(o) or o.startswith(step) for o in only):
                continue
            for lib in ("cnnpool", "torch"):
                try:
                    got = harness.subprocess_json(script, ["--memory", f"{step}:{lib}"], 1)
                except (RuntimeError, json.JSONDecodeError) as exc:
                    print(f"memory measurement for {step} {lib} failed: {exc}", file=sys.stderr)
                    continue
                memory.setdefault(step, {})[lib] = got
    text = report.render(results, memory, args)
    print()
    print(text)
    if args.out:
        _write_report(Path(args.out), text)
        print(f"wrote {args.out}")
    return 0


BEGIN = "<!-- bench_layers.py: generated from here -->"
END = "<!-- bench_layers.py: generated up to here; hand-written sections below are kept -->"


def _write_report(path, text):
    """Write the generated report between the markers, keeping the rest of the file.

    RESULTS.md also holds hand-written sections (other benchmarks' results,
    the issues' measurements): only the marked part is this script's to
    replace.  A file without the markers is replaced whole.
    """
    block = f"{BEGIN}\n{text}{END}\n"
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old and old.index(BEGIN) < old.index(END):
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        block = head + block + tail.removeprefix("\n")
    path.write_text(block)


if __name__ == "__main__":
    sys.exit(main())
