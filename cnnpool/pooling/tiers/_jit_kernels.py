"""The fused Numba kernels of :class:`~cnnpool.pooling.tiers.jit.JitPool2d`.

Kernel templates, written once here, are specialised for each strategy's
scalar window functions:

* ``forward``: for a block of windows, gather their taps into a small
  float64 buffer, tap-major, and call ``window(values, params)`` on each
  (gather + pool in one pass, the calls inlined and vectorised across the
  block's windows);
* ``backward``: gather the taps again, call ``window_grad`` on each window
  of the block into a second buffer and add ``grad_output * local`` into
  the input gradient (route + scatter in one pass);
* ``param_backward``, run only for a strategy with learnable parameters:
  per plane, the sum of ``grad_output * d pooled / d param``.

None builds the ``(N, C, OH, OW, K)`` windows array.  Each call covers
planes ``[start, stop)`` and keeps nothing between planes, so the caller
splits the ``N*C`` planes between threads (:func:`run_planes`) and the
result does not depend on how: a plane is always reduced whole, and
overlapping windows add into the input gradient in window order, taps in
order.  ``math.exp`` in the window functions is :mod:`._jit_math`'s
vectorisable copy of the C library's (where it gives the same bits).

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

import functools
import hashlib
import marshal
import math
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
# ``_column(block, w)``: the column ``block[:, w]`` as a 1-D array view that
# owns no reference (see :func:`_intrinsics`).
_column: Any = None
# ``_all_full(counts, s, nb, k)``: no border window in the block.
_all_full: Any = None
# The window size a copy is specialised for (0: any).
_K = 0
# Windows per block of the lockstep loops: a block's taps and local
# gradients (2 * K * _B doubles) stay in the L1 cache.
_B = 128

#: Window sizes (2x2, 3x3) that get kernels of their own, in which the loops
#: over a full window have a constant length the compiler unrolls; any other
#: size runs a general kernel.  (Per size, not for every size: each costs a
#: compile on first use.)
SPECIALISED_SIZES = (4, 9)


def _no_param_grad(values, pooled, params, out):  # pragma: no cover
    """Stands in for a strategy without ``window_param_grad`` (never reached)."""


# The kernels work on blocks of up to _B consecutive windows of a plane, in
# lockstep: gather the block's taps tap-major (``block[t, w]``), then call
# the inlined window function on every column, ``block[:, w]``.  With the
# window size a constant, the compiler unrolls the function's loops over the
# taps, and the loop over the windows of the block becomes straight-line code
# that it vectorises across windows (contiguous loads of ``block[t, :]``).
# Every window of a block is computed this way as if it were full; a window
# at a padded or ceil_mode border (fewer taps) is then computed again, alone,
# on its own taps, and that result is the one kept.  The backward scatter
# stays sequential, window by window and tap by tap, so that overlapping
# windows accumulate in the NumPy tier's order.


def _all_full_impl(counts, s, nb, k):  # pragma: no cover - runs compiled
    # Whether windows [s, s + nb) all have k taps (a loop that vectorises).
    short = 0
    for w in range(nb):
        short += counts[s + w] != k
    return short == 0


def _forward_template(x, taps, taps_t, counts, params, out, start, stop):  # pragma: no cover
    # x (P, H*W) or (P, H*W + 1): the planes, and pad_value in an extra last
    # column that padded taps index, so the gather never branches.  taps (O, K)
    # intp and taps_t, its transpose (K, O) as uintp (an unsigned index needs
    # no test for a negative one, which would stop the vectoriser); counts (O,),
    # out (P, O).  Runs only compiled.
    k = _K if _K > 0 else taps.shape[1]
    n_out = taps.shape[0]
    block = np.empty((k, _B), np.float64)
    values = np.empty(k, np.float64)
    for p in range(start, stop):
        xp = x[p]
        op = out[p]
        for b in range((n_out + _B - 1) // _B):
            s = b * _B  # from a count, not a stepped range: the compiler sees s >= 0
            nb = min(_B, n_out - s)
            for t in range(k):
                tt = taps_t[t]
                for w in range(nb):
                    block[t, w] = xp[tt[s + w]]
            for w in range(nb):
                op[s + w] = _window(_column(block, w), params)
            if _all_full(counts, s, nb, k):
                continue
            for w in range(nb):
                n = counts[s + w]
                if n != k:  # a border window: again, on its own taps
                    for t in range(n):
                        values[t] = xp[taps[s + w, t]]
                    op[s + w] = _window_part(values[:n], params)


def _backward_template(
    x, taps, taps_t, counts, params, pooled, grad_out, grad_x, store, start, stop
):  # pragma: no cover
    # x as in forward; grad_x (P, H*W), zero on entry unless ``store``: every
    # element is a tap of exactly one window, so each is written once, tap by
    # tap across the block (an order that cannot change a sum of one term).
    k = _K if _K > 0 else taps.shape[1]
    n_out = taps.shape[0]
    size = grad_x.shape[1]
    block = np.empty((k, _B), np.float64)
    local = np.empty((k, _B), np.float64)
    values = np.empty(k, np.float64)
    part = np.empty(k, np.float64)
    # One element in grad_x's dtype: the product is rounded to that dtype
    # before it is added, as the NumPy tier's scatter does.
    term = np.empty_like(grad_x[0, :1])
    for p in range(start, stop):
        xp = x[p]
        gp = grad_x[p]
        yp = pooled[p]
        gop = grad_out[p]
        for b in range((n_out + _B - 1) // _B):
            s = b * _B
            nb = min(_B, n_out - s)
            for t in range(k):
                tt = taps_t[t]
                for w in range(nb):
                    block[t, w] = xp[tt[s + w]]
                    local[t, w] = 0.0
            for w in range(nb):
                _window_grad(_column(block, w), np.float64(yp[s + w]), params, _column(local, w))
            full = _all_full(counts, s, nb, k)
            if store:
                # As adding into zeros: a zero route gives +0, and ``+ 0.0``
                # turns a -0 product into +0.  Border windows are done below.
                # The values first (a loop that vectorises), then the stores.
                for t in range(k):
                    for w in range(nb):
                        route = local[t, w]
                        block[t, w] = np.float64(gop[s + w]) * route + 0.0 if route != 0.0 else 0.0
                for t in range(k):
                    tt = taps_t[t]
                    for w in range(nb):
                        i = tt[s + w]
                        if (full or counts[s + w] == k) and i < size:
                            gp[i] = block[t, w]
                if full:
                    continue
            for w in range(nb):
                o = s + w
                n = counts[o]
                g = np.float64(gop[o])
                if n == k and not store:
                    for t in range(k):
                        i = taps[o, t]
                        # A zero route is no path: even a NaN grad_output sends
                        # nothing.  Padded taps (i == size) receive nothing.
                        if i < size and local[t, w] != 0.0:
                            term[0] = g * local[t, w]
                            gp[i] += term[0]
                elif n != k:  # a border window: again, on its own taps
                    for t in range(n):
                        values[t] = xp[taps[o, t]]
                        part[t] = 0.0
                    _window_grad_part(values[:n], np.float64(yp[o]), params, part[:n])
                    for t in range(n):
                        i = taps[o, t]
                        if i < size:
                            if store:
                                gp[i] = g * part[t] + 0.0 if part[t] != 0.0 else 0.0
                            elif part[t] != 0.0:
                                term[0] = g * part[t]
                                gp[i] += term[0]


def _param_backward_template(
    x, taps, taps_t, counts, params, pooled, grad_out, grad_params, start, stop
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
        exp = _vector_exp(numba)
        pys = [
            _no_param_grad if f is None else _adopt(getattr(f, "py_func", f), exp) for f in funcs
        ]
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
            _column=_column_intrinsic(),
            _all_full=numba.njit(inline="always")(_all_full_impl),
            _K=k,
        )
        # The kernels' names (hence their cache files) follow the window
        # functions' code and, when it is inlined in them, the exp's.
        tag = f"{digest}_k{k}" + ("" if exp is None else f"_e{_exp_digest()}")
        self.forward = numba.njit(**jit)(_copy(_forward_template, ns, f"forward_{tag}"))
        self.backward = numba.njit(**jit)(_copy(_backward_template, ns, f"backward_{tag}"))
        # Not specialised by size: the same kernel serves every window size.
        self.param_backward = numba.njit(**jit)(
            _copy(_param_backward_template, ns, f"param_backward_{tag}")
        )


@functools.lru_cache(maxsize=1)
def _column_intrinsic() -> Any:
    """``column(block, w)``: ``block[:, w]`` of a 2-D array, as a 1-D view
    that holds no reference to ``block``'s memory.

    Numba counts references to every view it creates (a call per window,
    which also stops the vectoriser); these columns live only inside one
    kernel call, while ``block`` itself is alive.
    """
    from numba.core import cgutils
    from numba.core import types as nbtypes
    from numba.extending import intrinsic
    from numba.np.arrayobj import make_array, populate_array

    @intrinsic
    def column(typingctx, block, w):
        if not (isinstance(block, nbtypes.Array) and block.ndim == 2):
            return None
        view = nbtypes.Array(block.dtype, 1, "A")

        def codegen(context, builder, sig, args):
            src = make_array(sig.args[0])(context, builder, args[0])
            shape = cgutils.unpack_tuple(builder, src.shape)
            strides = cgutils.unpack_tuple(builder, src.strides)
            out = make_array(view)(context, builder)
            populate_array(
                out,
                data=builder.gep(src.data, [args[1]]),
                shape=cgutils.pack_array(builder, [shape[0]]),
                strides=cgutils.pack_array(builder, [strides[0]]),
                itemsize=src.itemsize,
                meminfo=None,
            )
            return out._getvalue()

        return view(block, nbtypes.intp), codegen

    return column


def _vector_exp(numba: Any) -> Any:
    """The compiled exp of :mod:`._jit_math` where it gives ``math.exp``'s bits,
    else None (the window functions keep the C library's exp)."""
    from . import _jit_math

    return _jit_math.compiled_exp(numba) if _jit_math.matches_libm() else None


@functools.lru_cache(maxsize=1)
def _exp_digest() -> str:
    from . import _jit_math

    h = hashlib.sha256(marshal.dumps(_jit_math._exp_source.__code__))
    h.update(_jit_math.table().tobytes())
    return h.hexdigest()[:8]


def _adopt(f: Any, exp: Any = None) -> Any:
    """``f`` (same code and closure), filed under this module, with ``math.exp``
    bound to ``exp`` when given.

    A cached kernel names the module of each function it calls and imports
    it on load; a user's module may not be importable by name (a file that
    ``cnnpool-compare`` or a notebook loaded), this one always is.  The exp
    is swapped in a copy of the globals the function reads (``math`` as a
    module whose ``exp`` is the vectorisable one, and any name bound to
    ``math.exp`` itself); the user's module is not touched.
    """
    ns = f.__globals__
    if exp is not None:
        # Only the names the code reads: a copy of the whole module namespace
        # would keep everything in it alive as long as the kernels are cached
        # (a doctest's or notebook's classes, which the module itself lets go).
        names = _global_names(f.__code__) | {"__builtins__"}
        ns = _with_exp({n: ns[n] for n in names if n in ns}, exp)
    g = types.FunctionType(f.__code__, ns, f.__name__, f.__defaults__, f.__closure__)
    g.__kwdefaults__ = f.__kwdefaults__
    g.__qualname__ = f.__qualname__
    g.__module__ = __name__
    return g


def _global_names(code: types.CodeType) -> set[str]:
    """The global names ``code`` and the code nested in it may read."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _with_exp(ns: dict[str, Any], exp: Any) -> dict[str, Any]:
    swap: dict[str, Any] = {}
    for name, value in ns.items():
        if value is math:
            module = types.ModuleType("math")
            module.__dict__.update(math.__dict__)
            module.exp = exp  # type: ignore[attr-defined]
            swap[name] = module
        elif value is math.exp:
            swap[name] = exp
    if not swap:
        return ns
    return {**ns, **swap}


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
