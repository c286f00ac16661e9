"""The process-wide thread limit of the compiled kernels."""

import numpy as np
import pytest

import cnnpool as cp
from cnnpool import _parallel


@pytest.fixture(autouse=True)
def restore_default():
    yield
    cp.set_num_threads(0)


def test_limit_caps_threads_for_big_work():
    big = _parallel.PARALLEL_THRESHOLD * 10
    cp.set_num_threads(1)
    assert cp.get_num_threads() == 1
    assert _parallel.threads_for(64, big) == 1
    cp.set_num_threads(0)
    assert cp.get_num_threads() == _parallel.max_threads()
    assert _parallel.threads_for(64, big) == min(64, _parallel.max_threads())


def test_small_work_stays_on_the_calling_thread():
    assert _parallel.threads_for(64, 10) == 1
    assert _parallel.threads_for(1, 10**9) == 1


def test_negative_limit_refused():
    with pytest.raises(ValueError, match="n must be >= 0"):
        cp.set_num_threads(-2)


def test_results_do_not_depend_on_the_limit():
    x = np.random.default_rng(0).standard_normal((16, 16, 40, 40)).astype(np.float32)
    outs = []
    for n in (1, 0):
        cp.set_num_threads(n)
        pool = cp.MeanPool2d(3, 1, 1)
        y = pool(x)
        outs.append((y, pool.backward(np.ones_like(y))))
    for a, b in zip(*outs):
        assert a.tobytes() == b.tobytes()
