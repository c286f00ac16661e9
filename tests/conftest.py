"""Shared test configuration: hypothesis profiles and the compiled-package guard.

Profiles (choose with HYPOTHESIS_PROFILE): ``ci`` (default, quick),
``long`` (at least 10,000 examples per property, for fuzzing runs).
"""

import os
from pathlib import Path

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_report_header(config):
    import cnnpool
    from cnnpool import _dispatch, _parallel

    where = Path(cnnpool.__file__).parent
    return (
        f"cnnpool {cnnpool.__version__} from {where} "
        f"(compiled: {_parallel.__file__.rsplit('/', 1)[-1]}, "
        f"OpenMP: {_parallel.openmp_enabled()}, threads: {_parallel.max_threads()}, "
        f"CPU level: {_dispatch.best_level()[0]})"
    )
