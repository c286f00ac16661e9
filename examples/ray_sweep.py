"""Run a small sweep on a local Ray instance and check it against the serial run.

Ray is not a dependency of cnnpool or of its test suite (a 260 MB install),
so this is the manual check the README names: with ``pip install ray``,

    python examples/ray_sweep.py

runs four seeds of the comparison through ``joblib.parallel_config(backend="ray")``
on two local Ray workers, runs the same sweep serially, and exits with an
error unless the per-seed results are the same to the bit (times aside).
Ray's joblib backend hands results back only as whole batches, so the runs
are kept in rounds of ``jobs`` seeds there.
"""

import json
import sys
import tempfile
from pathlib import Path

import cnnpool as cp
from cnnpool.experiments import Settings, run_experiment


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


def main():
    try:
        import ray
        from ray.util.joblib import register_ray
    except ImportError:
        sys.exit("this check needs Ray: pip install ray")
    from joblib import parallel_config

    settings = dict(dataset="faces", seeds=(0, 1, 2, 3), epochs=1, arch="c2-p-c4-p-fc")
    with tempfile.TemporaryDirectory() as tmp:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            register_ray()
            with parallel_config(backend="ray"):
                remote = run_experiment(Settings(jobs=2, **settings), store=Path(tmp) / "ray")
        finally:
            ray.shutdown()
    threads = cp.get_num_threads()
    cp.set_num_threads(1)  # the workers run the kernels single-threaded; so does the reference
    try:
        local = run_experiment(Settings(jobs=1, **settings))
    finally:
        cp.set_num_threads(threads)
    if without_times(remote) != without_times(local):
        sys.exit("the Ray sweep differs from the serial run")
    print(f"Ray sweep of {len(remote['runs'])} runs: the same results as the serial run")


if __name__ == "__main__":
    main()
