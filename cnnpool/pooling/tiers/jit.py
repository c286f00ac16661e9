"""Strategies written as scalar Python, compiled by Numba: :class:`JitPool2d`.

A researcher writes what one window does, as plain Python on floats, and
cnnpool compiles it with Numba into two fused kernels over whole batches
(gather + pool, route + scatter), OpenMP-free but threaded over the ``N*C``
planes like the built-in kernels, in float32 and float64, cached on disk.
Without Numba the very same functions run in plain Python, one window at a
time (a warning says how to get the compiled speed).

See :class:`JitPool2d` for the contract and ``docs/writing_a_strategy.md``
for a walk-through.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import numbers
import warnings
from typing import Any, ClassVar

import numpy as np

from ..._parallel import threads_for
from ...layer import Parameter
from ..base import Pool2d, PoolState
from ..geometry import PoolGeometry

__all__ = ["JitPool2d", "JitStrategyError", "numba_available"]

#: What to install for the compiled JIT tier.
INSTALL_HINT = 'pip install "cnnpool[jit]"'

# (required positional arguments, how the guide spells them) per window function.
_SIGNATURES = {
    "window": (2, "window(values, params) -> float"),
    "window_grad": (4, "window_grad(values, pooled, params, grad)"),
    "window_param_grad": (4, "window_param_grad(values, pooled, params, grad)"),
}


class JitStrategyError(ValueError):
    """A JIT strategy's window functions are wrong: they raise, return the
    wrong thing, give NaN on a valid window, or Numba cannot compile them.
    The message names the strategy and the function."""


def numba_available() -> bool:
    """True when Numba can be imported (the compiled JIT tier is on)."""
    try:
        return importlib.util.find_spec("numba") is not None
    except (ImportError, ValueError):
        return False


_warned_no_numba = False


def _warn_no_numba(name: str) -> None:
    global _warned_no_numba
    if not _warned_no_numba:
        _warned_no_numba = True
        warnings.warn(
            f"{name} is a JitPool2d strategy, but Numba is not installed: its window "
            f"functions run in plain Python, one window at a time (hundreds of times "
            f"slower, the same numbers). For the compiled kernels: {INSTALL_HINT}",
            RuntimeWarning,
            stacklevel=4,
        )


def _raw(f: Any) -> Any:
    """The Python function behind ``f`` (a numba dispatcher's ``py_func``)."""
    return getattr(f, "py_func", f)


# Compiled kernels, one set per triple of window functions (shared by every
# layer, and every subclass, that uses the same functions).
_KERNELS: dict[tuple[Any, ...], Any] = {}
# (functions, params, window length) already checked in Python.
_CHECKED: set[tuple[Any, ...]] = set()


class JitPool2d(Pool2d):
    """Base class of a pooling strategy written as scalar Python, compiled by Numba.

    Write what one window does as static functions of plain numbers; cnnpool
    runs them over every window of every plane, compiled (Numba, the
    ``jit`` extra) or, without Numba, in plain Python.

    A subclass defines:

    ``window(values, params) -> float``
        The pooled value of one window.  ``values`` is a float64 array of
        shape ``(n,)``: the window's taps that fall inside the input, in
        row-major window order (``1 <= n <= kh * kw``; windows at a padded
        or ``ceil_mode`` border hold fewer).  ``params`` is a read-only
        float64 array, shape ``(m,)``: the attributes named in
        :attr:`window_params`, in that order.
    ``window_grad(values, pooled, params, grad)``
        The local gradient ``d pooled / d values[i]``, written into
        ``grad[i]`` (float64, shape ``(n,)``, zero on entry); returns
        nothing.  ``pooled`` is what ``window`` returned for ``values``.
    ``window_param_grad(values, pooled, params, grad)`` (only with learnable parameters)
        ``d pooled / d params[j]`` written into ``grad[j]`` (shape
        ``(m,)``, zero on entry).  cnnpool sums ``grad_output * grad`` over
        all windows into each :class:`~cnnpool.layer.Parameter`'s ``.grad``.
    ``window_params`` (class attribute)
        Names of the attributes passed to the functions as ``params``: a
        real number (a hyper-parameter such as ``beta``) or a
        :class:`~cnnpool.layer.Parameter` (learnable; its elements, in C
        order, take consecutive slots of ``params``).
    ``include_pad`` (class attribute, default False)
        True: ``values`` also holds the window's taps in the padding, as
        :attr:`pad_value` (PyTorch's ``count_include_pad`` rule: taps past
        the padding, which only ``ceil_mode`` creates, are never included).

    Everything else (geometry, threads, dtypes, saving) is the base's.

    The functions must be plain numeric Python that Numba compiles: float
    arithmetic, ``math`` and NumPy functions on the arrays, loops and
    branches; no ``self`` (write them as ``@staticmethod``; everything a
    window needs arrives in ``params``, so two layers with different
    hyper-parameters share one compiled kernel).  Division by zero gives
    inf/NaN as in NumPy, never an exception.

    Before the first use of each parameter value, cnnpool calls the
    functions once in Python on a test window (one tap, and a full window)
    and raises :class:`JitStrategyError`, naming the strategy and the
    function, if they raise, return something other than a real number
    (``window``) or ``None`` (the others), or give NaN or inf.

    Notes
    -----
    Kernel tier: :meth:`forward_kernel` and :meth:`backward_kernel` (with
    Numba).  NumPy tier (``use_fast_path = False``, or no Numba): the same
    Python functions called once per window, the reference the compiled
    kernels are tested against.  Both compute in float64 and round once to
    the input's dtype, and sum every window and every plane in the same
    order, so they agree to the last bit wherever ``math`` and Numba call
    the same C library functions.

    The kernels run the ``N*C`` planes on up to
    :func:`cnnpool.get_num_threads` threads (the GIL released), each plane
    whole on one thread, so the result is the same for any thread count.
    Compilation happens at the first forward (and first backward) of each
    dtype and is cached on disk beside cnnpool (``__pycache__``) or in
    ``NUMBA_CACHE_DIR``: later processes load it.

    Examples
    --------
    >>> import math, numpy as np, cnnpool as cp
    >>> class L2Pool2d(cp.JitPool2d):
    ...     @staticmethod
    ...     def window(values, params):
    ...         return math.sqrt(np.sum(values * values))
    ...
    ...     @staticmethod
    ...     def window_grad(values, pooled, params, grad):
    ...         if pooled > 0:
    ...             for i in range(len(values)):
    ...                 grad[i] = values[i] / pooled
    >>> L2Pool2d(2)(np.array([[[[3.0, 4.0], [0.0, 0.0]]]]))
    array([[[[5.]]]])
    """

    #: Attribute names passed to the window functions as ``params``.
    window_params: ClassVar[tuple[str, ...]] = ()
    #: Whether ``values`` holds padded taps (as :attr:`pad_value`).
    include_pad: ClassVar[bool] = False
    pad_value = 0.0
    # The kernels walk a tap table: any rank (``for_dims``).
    kernel_ranks = (1, 2, 3)

    window: Any = None
    window_grad: Any = None
    window_param_grad: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if isinstance(cls.window_params, str) or not all(
            isinstance(n, str) for n in cls.window_params
        ):
            raise TypeError(
                f"{cls.__name__}.window_params must be a tuple of attribute names, "
                f"got {cls.window_params!r}"
            )
        cls.window_params = tuple(cls.window_params)
        for name, (arity, spelled) in _SIGNATURES.items():
            f = getattr(cls, name)
            if f is None:
                continue
            try:
                sig = inspect.signature(_raw(f))
            except (TypeError, ValueError):
                continue
            positional = [
                p
                for p in sig.parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            if len(positional) != arity:
                hint = (
                    " Make it a @staticmethod: the compiled kernel has no self; pass what "
                    "it needs through window_params."
                    if positional and positional[0].name == "self"
                    else ""
                )
                raise TypeError(
                    f"{cls.__name__}.{name} must take {arity} arguments, "
                    f"{spelled}; got {name}{sig}.{hint}"
                )

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        self._tables: dict[int, tuple[PoolGeometry, np.ndarray, np.ndarray]] = {}
        if not numba_available():
            self.has_kernel = False  # the NumPy tier: plain Python per window
            _warn_no_numba(type(self).__name__)

    # ------------------------------------------------------------ the contract
    @classmethod
    def _functions(cls) -> tuple[Any, Any, Any]:
        name = cls.__name__
        if cls.window is None:
            raise JitStrategyError(f"{name} defines no {_SIGNATURES['window'][1]}")
        if cls.window_grad is None:
            raise JitStrategyError(
                f"{name} defines no {_SIGNATURES['window_grad'][1]}: the backward pass needs it"
            )
        return cls.window, cls.window_grad, cls.window_param_grad

    def _params(self) -> tuple[np.ndarray, list[tuple[Parameter, int, int]]]:
        """The ``params`` vector (read-only float64) and where each Parameter sits."""
        values: list[float] = []
        learnable: list[tuple[Parameter, int, int]] = []
        for attr in self.window_params:
            v = getattr(self, attr, None)
            if isinstance(v, Parameter):
                flat = np.asarray(v.data, dtype=np.float64).ravel()
                learnable.append((v, len(values), flat.size))
                values.extend(flat.tolist())
            elif isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)):
                values.append(float(v))
            else:
                raise TypeError(
                    f"{type(self).__name__}.{attr} (listed in window_params) must be a real "
                    f"number or a cnnpool.Parameter, got {v!r}"
                )
        if learnable and type(self).window_param_grad is None:
            names = [p.name or "?" for p, _, _ in learnable]
            raise JitStrategyError(
                f"{type(self).__name__} has learnable parameters {names} in window_params "
                f"but defines no {_SIGNATURES['window_param_grad'][1]}"
            )
        params = np.array(values, dtype=np.float64)
        params.flags.writeable = False
        return params, learnable

    def _table(self, geom: PoolGeometry) -> tuple[np.ndarray, np.ndarray]:
        """Per window, the flat index of each tap it sees and how many.

        ``taps`` (O, K) intp, the first ``counts[o]`` entries of row ``o``
        used, in row-major window order, ``H * W`` for a padded tap (the
        kernels' planes hold :attr:`pad_value` there); ``counts`` (O,) intp.
        """
        entry = self._tables.get(id(geom))
        if entry is None or entry[0] is not geom:
            mask = (geom.in_padded if self.include_pad else geom.inside).reshape(
                -1, geom.window_size
            )
            order = np.argsort(~mask, axis=1, kind="stable")  # seen taps first, in order
            taps = np.take_along_axis(geom.taps.reshape(mask.shape), order, axis=1)
            taps = np.where(taps < 0, geom.plane_size, taps)
            taps = np.ascontiguousarray(taps, dtype=np.intp)
            counts = np.ascontiguousarray(mask.sum(axis=1), dtype=np.intp)
            if len(self._tables) > 32:
                self._tables.clear()
            entry = self._tables[id(geom)] = (geom, taps, counts)
        return entry[1], entry[2]

    def _check(self, params: np.ndarray, counts: np.ndarray) -> None:
        """Call the functions once in Python on valid windows; raise a named error."""
        funcs = self._functions()
        sizes = sorted({1, int(counts.max())})
        key = (funcs, params.tobytes(), tuple(sizes))
        if key in _CHECKED:
            return
        name = type(self).__name__
        window, window_grad, param_grad = (_raw(f) for f in funcs)
        for n in sizes:
            # Distinct, positive, unremarkable values: valid for any sane strategy.
            values = np.linspace(0.25, 2.0, n)[::-1] if n > 1 else np.array([1.0])
            values = np.ascontiguousarray(values)
            values.flags.writeable = False
            where = f"a test window of {n} tap(s) {values.tolist()} with params {params.tolist()}"
            try:
                with np.errstate(all="ignore"):  # judged by the result, not warnings
                    y = window(values, params)
            except Exception as exc:
                raise JitStrategyError(
                    f"{name}.window raised {type(exc).__name__}: {exc} on {where}"
                    + (
                        " (windows at a padded or ceil_mode border hold fewer taps: "
                        "use len(values))"
                        if isinstance(exc, IndexError)
                        else ""
                    )
                ) from exc
            if isinstance(y, (bool, np.bool_)) or not isinstance(y, numbers.Real):
                raise JitStrategyError(
                    f"{name}.window must return a real number (a float), got "
                    f"{type(y).__name__} {y!r} on {where}"
                )
            if not math.isfinite(float(y)):
                raise JitStrategyError(f"{name}.window returned {float(y)} on {where}")
            checks = [("window_grad", window_grad, n)]
            if param_grad is not None:
                checks.append(("window_param_grad", param_grad, params.size))
            for fname, f, size in checks:
                grad = np.zeros(size)
                try:
                    with np.errstate(all="ignore"):
                        r = f(values, float(y), params, grad)
                except Exception as exc:
                    raise JitStrategyError(
                        f"{name}.{fname} raised {type(exc).__name__}: {exc} on {where}"
                    ) from exc
                if r is not None:
                    raise JitStrategyError(
                        f"{name}.{fname} must write into grad and return None, got "
                        f"{type(r).__name__} on {where}"
                    )
                if not np.isfinite(grad).all():
                    raise JitStrategyError(
                        f"{name}.{fname} wrote {grad.tolist()} (not finite) on {where}"
                    )
        if len(_CHECKED) > 4096:
            _CHECKED.clear()
        _CHECKED.add(key)

    # ------------------------------------------------------------ kernel tier
    def _kernels(self, window_size: int) -> Any:
        from . import _jit_kernels

        funcs = self._functions()
        k = window_size if window_size in _jit_kernels.SPECIALISED_SIZES else 0
        kernels = _KERNELS.get(funcs + (k,))
        if kernels is None:
            try:
                numba = importlib.import_module("numba")
            except ImportError as exc:
                raise ImportError(
                    f"{type(self).__name__} needs Numba for its compiled kernels, and "
                    f"importing it failed ({exc}). {INSTALL_HINT}, or set "
                    f"use_fast_path = False to run its window functions in plain Python."
                ) from exc
            digest = _jit_kernels.fingerprint(funcs)
            kernels = _KERNELS[funcs + (k,)] = _jit_kernels.Kernels(numba, funcs, digest, k)
        return kernels

    def _run(self, which: str, window_size: int, planes: int, threads: int, *args: Any) -> None:
        from . import _jit_kernels

        kernels = self._kernels(window_size)
        kernel = getattr(kernels, which)
        try:
            _jit_kernels.run_planes(kernel, planes, threads, *args)
        except Exception as exc:
            raise self._kernel_error(exc, which, kernels) from exc

    def _kernel_error(self, exc: Exception, which: str, kernels: Any) -> Exception:
        """A clear error for what went wrong inside (or compiling) a kernel."""
        name = type(self).__name__
        numba_errors = importlib.import_module("numba.core.errors")
        if not isinstance(exc, numba_errors.NumbaError):
            return JitStrategyError(
                f"{name}: its window functions raised {type(exc).__name__}: {exc} in the "
                f"compiled {which} pass"
            )
        # Which function does Numba refuse?  Compile each alone on a test window.
        params, _ = self._params()
        values = np.linspace(0.25, 2.0, 4)
        names = ("window", "window_grad", "window_param_grad")
        for fname, disp, f in zip(names, kernels.dispatchers, self._functions()):
            if f is None:
                continue
            try:
                if fname == "window":
                    disp(values, params)
                else:
                    disp(
                        values,
                        1.0,
                        params,
                        np.zeros(values.size if fname == "window_grad" else params.size),
                    )
            except numba_errors.NumbaError as inner:
                return JitStrategyError(
                    f"Numba cannot compile {name}.{fname} (window functions must be "
                    f"numeric Python: floats, math/NumPy functions on the arrays, loops, "
                    f"no Python objects or self): {_first_lines(inner)}"
                )
            except Exception:  # not a compile error: not what is looked for here
                pass
        return JitStrategyError(
            f"Numba cannot compile the {which} kernel of {name} (does window return a "
            f"float, and do window_grad/window_param_grad return nothing?): "
            f"{_first_lines(exc)}"
        )

    def forward_kernel(self, x: np.ndarray, geom: PoolGeometry) -> tuple[np.ndarray, Any]:
        """Pool ``x`` (N, C, H, W) with the compiled ``window`` (the kernel tier)."""
        params, _ = self._params()
        taps, counts = self._table(geom)
        self._check(params, counts)
        n, c = x.shape[:2]
        size = geom.plane_size  # H * W in 2-D
        # Ours (backward reads it); when the windows see padded taps, pad_value
        # follows each plane, at the index H*W that the tap table gives them.
        padded = bool(taps.size) and int(taps.max()) == size
        planes = np.empty((n * c, size + padded), dtype=x.dtype)
        planes[:, :size] = x.reshape(n * c, size)
        if padded:
            planes[:, size] = self.pad_value
        out = np.empty((n * c, taps.shape[0]), dtype=x.dtype)
        threads = threads_for(n * c, planes.size + out.size * taps.shape[1])
        k = geom.window_size
        taps_t, _ = _tap_major(taps, counts, size)
        self._run("forward", k, n * c, threads, planes, taps, taps_t, counts, params, out)
        pooled = out.copy()
        planes.flags.writeable = pooled.flags.writeable = False
        return out.reshape((n, c) + geom.out_size), (planes, pooled, params)

    def backward_kernel(self, grad_output: np.ndarray, state: PoolState) -> np.ndarray:
        """Input gradient through the compiled ``window_grad``; adds parameter gradients."""
        planes, pooled, params = state.saved
        taps, counts = self._table(state.geometry)
        _, learnable = self._params()
        p = planes.shape[0]
        size = state.geometry.plane_size  # H * W in 2-D
        taps_t, store = _tap_major(taps, counts, size)
        # Windows that never share an element and cover every one store their
        # gradients (a zero route as 0): nothing to zero first.
        grad_x = (np.empty if store else np.zeros)((p, size), dtype=planes.dtype)
        g = grad_output.reshape(pooled.shape)
        threads = threads_for(p, planes.size + g.size * taps.shape[1])
        k = state.geometry.window_size
        args = (planes, taps, taps_t, counts, params, pooled, g)
        self._run("backward", k, p, threads, *args, grad_x, store)
        if learnable:
            per_plane = np.zeros((p, params.size))
            self._run("param_backward", k, p, threads, *args, per_plane)
            self._add_learnable(per_plane, learnable)
        return grad_x.reshape(state.x_shape)

    @staticmethod
    def _add_learnable(per_plane: np.ndarray, learnable: list[tuple[Parameter, int, int]]) -> None:
        if learnable:
            total = per_plane.sum(axis=0)  # the same order for any thread count
            for p, start, size in learnable:
                p.grad += total[start : start + size].reshape(p.grad.shape).astype(p.grad.dtype)

    # ------------------------------------------------- NumPy tier (reference)
    def _seen(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        geom = self.geometry
        assert geom is not None  # set by forward before pool/route run
        mask = (geom.in_padded if self.include_pad else geom.inside).reshape(-1, geom.window_size)
        n, c = windows.shape[:2]
        return windows.reshape(n * c, mask.shape[0], mask.shape[1]), mask

    def _call(self, fname: str, f: Any, *args: Any) -> Any:
        try:
            with np.errstate(all="ignore"):  # IEEE results, silently, as compiled
                return f(*args)
        except Exception as exc:
            raise JitStrategyError(
                f"{type(self).__name__}.{fname} raised {type(exc).__name__}: {exc} on the "
                f"window {args[0].tolist()}"
            ) from exc

    # The ctx forms of the hooks (Pool2d passes a per-forward namespace).
    def pool(self, windows: np.ndarray, ctx: Any) -> np.ndarray:  # type: ignore[override]
        """The NumPy tier: ``window`` in plain Python on each window, float64."""
        params, _ = self._params()
        ctx.params = params
        flat, mask = self._seen(windows)
        self._check(params, mask.sum(axis=1))
        window = _raw(self._functions()[0])
        out = np.empty(flat.shape[:2])
        for p in range(flat.shape[0]):
            for o in range(flat.shape[1]):
                values = flat[p, o, mask[o]].astype(np.float64)
                values.flags.writeable = False
                out[p, o] = self._call("window", window, values, params)
        return out.reshape(windows.shape[:-1])

    def route(  # type: ignore[override]
        self, windows: np.ndarray, pooled: np.ndarray, ctx: Any
    ) -> np.ndarray:
        """The NumPy tier: ``window_grad`` in plain Python on each window, float64."""
        flat, mask = self._seen(windows)
        window_grad = _raw(self._functions()[1])
        y = pooled.reshape(flat.shape[:2])
        local = np.zeros(flat.shape)
        for p in range(flat.shape[0]):
            for o in range(flat.shape[1]):
                values = flat[p, o, mask[o]].astype(np.float64)
                values.flags.writeable = False
                grad = np.zeros(values.size)
                self._call("window_grad", window_grad, values, float(y[p, o]), ctx.params, grad)
                local[p, o, mask[o]] = grad
        return local.reshape(windows.shape)

    def param_grads(  # type: ignore[override]
        self, windows: np.ndarray, pooled: np.ndarray, grad_output: np.ndarray, ctx: Any
    ) -> dict[Parameter, np.ndarray]:
        """The NumPy tier: ``window_param_grad`` on each window, summed per plane."""
        _, learnable = self._params()
        if not learnable:
            return {}
        flat, mask = self._seen(windows)
        param_grad = _raw(self._functions()[2])
        params = ctx.params
        y = pooled.reshape(flat.shape[:2])
        g = grad_output.reshape(flat.shape[:2])
        per_plane = np.zeros((flat.shape[0], params.size))
        for p in range(flat.shape[0]):
            for o in range(flat.shape[1]):
                values = flat[p, o, mask[o]].astype(np.float64)
                values.flags.writeable = False
                grad = np.zeros(params.size)
                self._call("window_param_grad", param_grad, values, float(y[p, o]), params, grad)
                per_plane[p] += float(g[p, o]) * grad
        total = per_plane.sum(axis=0)
        return {p: total[s : s + k].reshape(p.data.shape) for p, s, k in learnable}

    # ----------------------------------------------------------------- display
    def _hyper(self) -> dict[str, Any]:
        out = {}
        for attr in self.window_params:
            v = getattr(self, attr, None)
            if not isinstance(v, Parameter):
                out[attr] = v.item() if isinstance(v, np.generic) else v
        return out

    def extra_repr(self) -> str:
        hyper = "".join(f", {k}={v:g}" for k, v in self._hyper().items())
        return super().extra_repr() + hyper

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for saved models: the geometry and every
        number in :attr:`window_params` (Parameters are saved as arrays).

        A subclass whose constructor does not take these names overrides it.
        """
        config = super().get_config()
        config.update(self._hyper())
        accepted = inspect.signature(type(self).__init__).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            missing = [k for k in config if k not in accepted]
            if missing:
                raise TypeError(
                    f"{type(self).__name__}.get_config: the constructor takes no "
                    f"{missing}, so a saved model could not rebuild it; override "
                    f"get_config to return the constructor's arguments"
                )
        return config


_TAP_MAJOR: dict[int, tuple[np.ndarray, np.ndarray, bool]] = {}


def _tap_major(taps: np.ndarray, counts: np.ndarray, size: int) -> tuple[np.ndarray, bool]:
    """``taps`` transposed, (K, O) C-contiguous and unsigned (the kernels'
    gathers read it along the windows), and whether every element of a plane
    of ``size`` is seen by exactly one window (then backward stores instead of
    adding, tap by tap across a block).  Kept per table (tables live as long
    as a geometry)."""
    entry = _TAP_MAJOR.get(id(taps))
    if entry is None or entry[0] is not taps:
        if len(_TAP_MAJOR) > 64:
            _TAP_MAJOR.clear()
        seen = taps[np.arange(taps.shape[1]) < counts[:, None]]
        seen = seen[seen < size]
        uses = np.bincount(seen, minlength=size)
        store = bool(size and uses.min() == 1 and uses.max() == 1)
        transposed = np.ascontiguousarray(taps.T).view(np.uintp)
        entry = _TAP_MAJOR[id(taps)] = (taps, transposed, store)
    return entry[1], entry[2]


def _first_lines(exc: Exception, lines: int = 6) -> str:
    text = str(exc).strip().splitlines()
    return "\n".join(text[:lines])
