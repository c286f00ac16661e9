"""The fused Numba kernels of :class:`~cnnpool.pooling.tiers.jit.JitPool2d`.

Kernel templates, written once here, are specialised for each strategy's
scalar window functions:

* ``forward``: for every window, gather its taps into a small float64
  buffer and call ``window(values, params)`` (gather + pool in one pass);
* ``backward``: gather the taps again, call ``window_grad`` into a second
  buffer and add ``grad_output * local`` into the input gradient (route +
  scatter in one pass);
* ``param_backward``, run only for a strategy with learnable parameters:
  per plane, the sum of ``grad_output * d pooled / d param``.

None builds the ``(N, C, OH, OW, K)`` windows array.  Each call covers
planes ``[start, stop)`` and keeps nothing between planes, so the caller
splits the ``N*C`` planes between threads (:func:`run_planes`) and the
result does not depend on how: a plane is always reduced whole, windows in
order, taps in order.

**Caching.**  A kernel that calls another jitted function cannot be cached
by Numba as a closure (the closure's hash holds the callee's per-process
id), so each strategy gets its own *copy* of the template function whose
globals name the strategy's functions and whose qualified name carries a
fingerprint of their code (:func:`fingerprint`).  Numba then caches it
on disk (``cache=True``) under that name, beside this file
(``__pycache__``) or in ``NUMBA_CACHE_DIR``: a second process loads the
compiled kernels instead of compiling them, and an edited window function
has a new fingerprint, hence a fresh compile rather than a stale kernel.

Numba is imported only when a JIT strategy first runs.
"""

from __future__ import annotations

import hashlib
import marshal
import threading
import types
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

# Placeholders: each strategy's copy of a template gets its own globals in
# which these name its jitted window functions.
_window: Any = None
_window_grad: Any = None
_window_param_grad: Any = None
# The same functions, not inlined: called on the rare partial windows (at a
# padded or ceil_mode border).  Inlining them there too was measured to slow
# the full-window loop several times over.
_window_part: Any = None
_window_grad_part: Any = None
_window_param_grad_part: Any = None
# The window size a copy is specialised for (0: any).
_K = 0

#: Window sizes (2x2, 3x3) that get kernels of their own, in which the loops
#: over a full window have a constant length the compiler unrolls; any other
#: size runs a general kernel.  (Per size, not for every size: each costs a
#: compile on first use.)
SPECIALISED_SIZES = (4, 9)


def _no_param_grad(values, pooled, params, out):  # pragma: no cover
    """Stands in for a strategy without ``window_param_grad`` (never reached)."""


def _forward_template(x, taps, counts, params, out, start, stop):  # pragma: no cover
    # x (P, H*W) or (P, H*W + 1): the planes, and pad_value in an extra last
    # column that padded taps index, so the gather never branches.  taps (O, K), counts
    # (O,), out (P, O).  Runs only compiled.
    k = _K if _K > 0 else taps.shape[1]
    values = np.empty(k, np.float64)
    for p in range(start, stop):
        xp = x[p]
        op = out[p]
        for o in range(taps.shape[0]):
            n = counts[o]
            if n == k:  # a full window: a loop of constant length when _K is set
                for t in range(k):
                    values[t] = xp[taps[o, t]]
                op[o] = _window(values, params)
            else:
                for t in range(n):
                    values[t] = xp[taps[o, t]]
                op[o] = _window_part(values[:n], params)


def _backward_template(
    x, taps, counts, params, pooled, grad_out, grad_x, start, stop
):  # pragma: no cover
    # x as in forward; grad_x (P, H*W), zero on entry.
    k = _K if _K > 0 else taps.shape[1]
    size = grad_x.shape[1]
    values = np.empty(k, np.float64)
    local = np.empty(k, np.float64)
    # One element in grad_x's dtype: the product is rounded to that dtype
    # before it is added, as the NumPy tier's scatter does.
    term = np.empty_like(grad_x[0, :1])
    for p in range(start, stop):
        xp = x[p]
        gp = grad_x[p]
        for o in range(taps.shape[0]):
            n = counts[o]
            y = np.float64(pooled[p, o])
            g = np.float64(grad_out[p, o])
            if n == k:
                for t in range(k):
                    values[t] = xp[taps[o, t]]
                    local[t] = 0.0
                _window_grad(values, y, params, local)
                for t in range(k):
                    i = taps[o, t]
                    # A zero route is no path: even a NaN grad_output sends
                    # nothing.  Padded taps (i == size) receive nothing.
                    if i < size and local[t] != 0.0:
                        term[0] = g * local[t]
                        gp[i] += term[0]
            else:
                for t in range(n):
                    values[t] = xp[taps[o, t]]
                    local[t] = 0.0
                _window_grad_part(values[:n], y, params, local[:n])
                for t in range(n):
                    i = taps[o, t]
                    if i < size and local[t] != 0.0:
                        term[0] = g * local[t]
                        gp[i] += term[0]


def _param_backward_template(
    x, taps, counts, params, pooled, grad_out, grad_params, start, stop
):  # pragma: no cover
    # grad_params (P, len(params)), zero on entry: per plane, the sum over its
    # windows (in order) of grad_output * d pooled / d params.  Run only for a
    # strategy with learnable parameters.
    k = taps.shape[1]
    values = np.empty(k, np.float64)
    dparams = np.empty(params.shape[0], np.float64)
    for p in range(start, stop):
        xp = x[p]
        for o in range(taps.shape[0]):
            n = counts[o]
            for t in range(n):
                values[t] = xp[taps[o, t]]
            dparams[:] = 0.0
            _window_param_grad_part(values[:n], np.float64(pooled[p, o]), params, dparams)
            g = np.float64(grad_out[p, o])
            for j in range(params.shape[0]):
                grad_params[p, j] += g * dparams[j]


def _code_digest(obj: Any, h: Any, seen: set[int], depth: int) -> None:
    """Feed ``h`` with what a compiled function depends on: code, constants,
    and the functions and numbers it reads from its globals and closure."""
    py = getattr(obj, "py_func", obj)  # a numba dispatcher: its Python function
    if id(py) in seen or depth > 4:
        return
    seen.add(id(py))
    code = getattr(py, "__code__", None)
    if code is None:
        h.update(repr(obj).encode())
        return
    h.update(
        marshal.dumps(code.replace(co_filename="", co_name="", co_qualname="", co_firstlineno=1))
    )
    names = set(code.co_names)
    for const in code.co_consts:  # nested code objects (comprehensions)
        if isinstance(const, types.CodeType):
            names.update(const.co_names)
    cells = [c.cell_contents for c in (py.__closure__ or ())]
    ns = getattr(py, "__globals__", {})
    for value in [ns[n] for n in sorted(names) if n in ns] + cells:
        if callable(value) and hasattr(getattr(value, "py_func", value), "__code__"):
            _code_digest(value, h, seen, depth + 1)
        elif isinstance(value, (int, float, complex, str, bool, np.generic)):
            h.update(repr(value).encode())
        elif isinstance(value, np.ndarray):
            h.update(value.tobytes())


def fingerprint(funcs: tuple[Any, ...]) -> str:
    """A short hex digest of the window functions' code (and what they read)."""
    h = hashlib.sha256()
    for f in funcs:
        if f is not None:
            _code_digest(f, h, set(), 0)
        h.update(b"|")
    return h.hexdigest()[:16]


class Kernels:
    """The compiled forward and backward of one strategy for one window size
    (any size when ``k`` is 0); each compiles per dtype on first call."""

    def __init__(self, numba: Any, funcs: tuple[Any, Any, Any], digest: str, k: int) -> None:
        jit = dict(nogil=True, cache=True, error_model="numpy")
        # The window functions are inlined into the kernels (Numba IR inlining):
        # a call per window, and the array view it receives, would cost more
        # than the arithmetic of a small window.
        inline = dict(nogil=True, error_model="numpy", inline="always")
        plain = dict(nogil=True, error_model="numpy")
        pys = [_no_param_grad if f is None else _adopt(getattr(f, "py_func", f)) for f in funcs]
        self.dispatchers = tuple(numba.njit(**plain)(f) for f in pys)
        window, window_grad, param_grad = (numba.njit(**inline)(f) for f in pys)
        ns = dict(globals())
        ns.update(
            _window=window,
            _window_grad=window_grad,
            _window_param_grad=param_grad,
            _window_part=self.dispatchers[0],
            _window_grad_part=self.dispatchers[1],
            _window_param_grad_part=self.dispatchers[2],
            _K=k,
        )
        tag = f"{digest}_k{k}"
        self.forward = numba.njit(**jit)(_copy(_forward_template, ns, f"forward_{tag}"))
        self.backward = numba.njit(**jit)(_copy(_backward_template, ns, f"backward_{tag}"))
        # Not specialised by size: the same kernel serves every window size.
        self.param_backward = numba.njit(**jit)(
            _copy(_param_backward_template, ns, f"param_backward_{digest}")
        )


def _adopt(f: Any) -> Any:
    """``f`` (same code, globals and closure), filed under this module.

    A cached kernel names the module of each function it calls and imports
    it on load; a user's module may not be importable by name (a file that
    ``cnnpool-compare`` or a notebook loaded), this one always is.
    """
    g = types.FunctionType(f.__code__, f.__globals__, f.__name__, f.__defaults__, f.__closure__)
    g.__kwdefaults__ = f.__kwdefaults__
    g.__qualname__ = f.__qualname__
    g.__module__ = __name__
    return g


def _copy(template: Callable[..., Any], ns: dict[str, Any], name: str) -> Any:
    f = types.FunctionType(template.__code__, ns, name)
    f.__qualname__ = name  # the on-disk cache is named after it
    return f


# ------------------------------------------------------------------ threads
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < workers:  # grow if asked for more
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cnnpool-jit")
        return _pool


def run_planes(kernel: Callable[..., Any], planes: int, threads: int, *args: Any) -> None:
    """Call ``kernel(*args, start, stop)`` over ``[0, planes)`` in ``threads`` slices.

    Each slice is whole planes, so the result is the same for any count.
    The kernels release the GIL; the calling thread runs the first slice.
    """
    threads = max(1, min(threads, planes))
    if threads == 1:
        kernel(*args, 0, planes)
        return
    bounds = [planes * i // threads for i in range(threads + 1)]
    pool = _executor(threads - 1)
    futures = [pool.submit(kernel, *args, bounds[i], bounds[i + 1]) for i in range(1, threads)]
    error: BaseException | None = None
    try:
        kernel(*args, bounds[0], bounds[1])
    except BaseException as exc:  # wait for the others before raising
        error = exc
    for f in futures:
        try:
            f.result()
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error
