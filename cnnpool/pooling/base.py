"""``Pool2d``: the base of every pooling strategy.

The base owns everything that is the same for all pooling: the geometry
(kernel, stride, padding, dilation, ceil mode), validation of arguments
and arrays, cutting the input into windows, and the backward rule.  A
strategy owns only two things, written in NumPy over the windows:

``pool(windows) -> pooled``
    ``windows`` has shape ``(N, C, OH, OW, K)`` with ``K = kh * kw`` taps
    in row-major window order; a tap in the padding holds ``pad_value``.
    Return the pooled output, shape ``(N, C, OH, OW)``.
``route(windows, pooled) -> local gradient``
    ``d pooled / d window element``, shape ``(N, C, OH, OW, K)``.  The
    textbook "mask": one-hot at the winner for max, ``1/count`` for mean.

The backward pass is then the same for every strategy: each input element
receives ``route * grad_output`` summed over every window that contains it
(overlapping windows accumulate; taps in the padding are dropped).  A tap
whose route is exactly 0 receives nothing, even from an inf or NaN
``grad_output`` (where ``0 * nan`` would be NaN): the max route then sends a
NaN gradient to the winner only, as PyTorch and the compiled kernels do.  The
gather and the scatter-add are compiled (``_windows.pyx``), so a strategy
written in pure Python costs only its own NumPy math.

A strategy with learnable weights stores them as
:class:`~cnnpool.layer.Parameter` attributes (``parameters()`` finds them)
and implements one optional third hook, ``param_grads(windows, pooled,
grad_output) -> {parameter: gradient}``; parameter-free strategies never
see it (see :meth:`Pool2d.param_grads`).

A strategy that keeps per-forward state for its backward (random draws,
say) takes an extra ``ctx`` argument in ``pool``, ``route`` and
``param_grads``: a fresh :class:`types.SimpleNamespace` per forward pass,
stored in the pass's :class:`PoolState`, never on the layer.

**The kernel tier.**  A strategy may also run whole batches in compiled
code through two public hooks, :meth:`Pool2d.forward_kernel` and
:meth:`Pool2d.backward_kernel`.  Every built-in strategy does (max and mean
with hand-tuned kernels, Lp through the Cython window driver of
:mod:`cnnpool.pooling.tiers.compiled`), and so can a user's.  The
``pool``/``route`` pair stays the strategy's reference: set
``use_fast_path = False`` on an instance to run it instead (the tests check
that both agree).
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np

from .. import _checks
from .. import registry as _registry
from .._buffers import OutputBuffers
from .._parallel import threads_for
from ..layer import BackwardBeforeForwardError, Layer, Parameter
from ._ext import _kernels, _windows
from .geometry import (
    PoolGeometry,
    make_geometry,
    parse_padding,
    resolve_padding,
    shape_name,
    spatial_tuple,
)

_IntOrPair = int | tuple[int, ...]


def _last_level_cache_bytes() -> int:
    """Size of the CPU's largest cache as Linux reports it (sysfs), or 0."""
    import glob

    largest = 0
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            with open(path) as f:
                text = f.read().strip().upper()
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
            largest = max(largest, int(text.rstrip("KMG")) * scale)
        except (OSError, ValueError):
            continue
    return largest


#: The tiled backward kernels write outputs from this size on with streaming
#: stores, when their rows start on cache lines (large outputs come 64-byte
#: aligned from :class:`~cnnpool._buffers.OutputBuffers`).  A streaming store
#: skips the read of the line it writes but sends the line to memory: it pays
#: only for outputs that would not stay in the last-level cache anyway.
#: Measured on a Zen 5 with 32 MiB of L3: plain stores were faster up to
#: 16 MiB outputs (mean backward 0.59 against 0.78 ms at 16 MiB), streaming
#: ones from 64 MiB for max; on the earlier AVX2 benchmark machine,
#: streaming paid from 16 MiB (W5 max backward 2.0 -> 1.3 ms).
#: At least 4 MiB where the cache size is unknown.
STREAM_MIN_BYTES = max(4 << 20, _last_level_cache_bytes())
_kernels.set_stream_min_bytes(STREAM_MIN_BYTES)


def _check_geometry(geom, x_shape, name):
    """The compiled gather/scatter trust ``geom``: it must be the one of ``x_shape``."""
    if len(x_shape) != geom.ndim + 2 or tuple(x_shape[2:]) != tuple(geom.in_size):
        raise ValueError(
            f"geom was built for an input of {shape_name(geom.ndim)} = "
            f"{tuple(geom.in_size)}, but {name} has shape {tuple(x_shape)}"
        )


def _layout(n: int) -> tuple[str, str]:
    """How a batched and an unbatched input of ``n`` spatial axes are spelled."""
    spatial = {1: "L", 2: "H, W", 3: "D, H, W"}.get(n, "...")
    return f"(N, C, {spatial})", f"(C, {spatial})"


def _rank_name(name: str, old: int, new: int) -> str:
    """``MaxPool2d`` -> ``MaxPool1d``; a name without the suffix gets one."""
    suffix = f"{old}d"
    return (name[: -len(suffix)] if name.endswith(suffix) else name) + f"{new}d"


class WindowsSaved(NamedTuple):
    """What the NumPy tier keeps for its backward (:attr:`PoolState.saved`).

    ``windows`` (N, C, OH, OW, K) and ``pooled`` (N, C, OH, OW) are
    read-only; ``ctx`` is the per-forward namespace of a strategy whose
    ``pool`` takes one (``None`` otherwise).
    """

    windows: np.ndarray
    pooled: np.ndarray
    ctx: SimpleNamespace | None


class PoolState(NamedTuple):
    """What one forward pass leaves for its backward: the saved-state record.

    A :class:`Pool2d` makes one per forward call and hands it to the
    backward of that call; :meth:`Pool2d.backward_kernel` receives it.
    Immutable (a named tuple: it is built on every forward call, where a
    frozen dataclass cost several times more); ``state._replace(saved=...)``
    gives a copy with other fields.

    Attributes
    ----------
    x_shape : tuple of int
        ``(N, C, *spatial)`` of the input (``(N, C, H, W)`` in 2-D); for an
        unbatched input, with the batch axis of 1 that the layer added.
    dtype : numpy.dtype
        Of the input, the output and the gradients.
    out_shape : tuple of int
        ``(N, C, *out_size)`` of the output (batched, as ``x_shape``).
    geometry : PoolGeometry
        The windows of this call.
    tier : {"kernel", "numpy"}
        Which tier ran the forward (and runs the backward).
    training : bool
        The layer's mode during the forward.
    saved : object
        Kernel tier: whatever :meth:`Pool2d.forward_kernel` returned beside
        the output.  NumPy tier: a :class:`WindowsSaved`.
    unbatched : bool
        The caller passed ``(C, *spatial)`` without a batch axis: the output
        it got and the gradients it passes and gets back have none either.
    """

    x_shape: tuple[int, ...]
    dtype: np.dtype
    out_shape: tuple[int, ...]
    geometry: PoolGeometry
    tier: str
    training: bool
    saved: Any
    unbatched: bool = False


def _takes_ctx(method: Any) -> bool:
    try:
        return "ctx" in inspect.signature(method).parameters
    except (TypeError, ValueError):  # a builtin or an odd callable: no ctx
        return False


class Pool2d(Layer):
    """Base class of pooling over ``(N, C, *spatial)`` arrays: 2-D by default,
    1-D or 3-D by :attr:`spatial_dims`.

    Parameters
    ----------
    kernel_size : int or tuple of n ints
        Window size, one per spatial axis (``(kh, kw)`` in 2-D).
    stride : int or tuple of n ints, optional
        Step between windows; ``None`` (default) means ``kernel_size``.
    padding : int, tuple of n or 2n ints, or str
        Implicit padding.  An int or ``n`` ints pad both sides of each axis
        alike, at most half the kernel (PyTorch's form and rule); ``2n``
        ints give ``(before, after)`` per axis in axis order (2-D:
        ``(top, bottom, left, right)``; unlike ``torch.nn.functional.pad``,
        which lists the last axis first), each side less than the dilated
        kernel extent; ``"valid"`` (none), ``"same"`` (ONNX's
        ``SAME_UPPER``: ``ceil(L / stride)`` outputs, the odd extra pad at
        the end) or ``"same_lower"`` (ONNX's ``SAME_LOWER``).  Padded taps
        hold :attr:`pad_value` in the windows a strategy sees.
    dilation : int or tuple of n ints
        Spacing between the taps of a window.
    ceil_mode : bool
        Round the output size up instead of down; the last window must
        still start inside the input or its leading padding (PyTorch's rule).

    Attributes
    ----------
    pad_value : float
        What a padded tap holds in the windows passed to :meth:`pool`.
    geometry : PoolGeometry or None
        The geometry of the last forward call (tap positions, counts).
    use_fast_path : bool
        Use the strategy's compiled kernels when it has them (default True).

    Notes
    -----
    Input ``x`` has shape ``(N, C, H, W)`` (``(N, C, L)`` in 1-D,
    ``(N, C, D, H, W)`` in 3-D), float32 or float64 (any memory layout);
    the output has shape ``(N, C, OH, OW)`` and the dtype of ``x``.  An
    unbatched ``(C, H, W)`` input gives an unbatched output, and its
    backward takes and returns unbatched gradients, as in PyTorch.

    **Rank.**  The class attribute :attr:`spatial_dims` (1, 2 or 3) fixes
    the number of spatial axes.  A strategy's ``pool``/``route`` see
    windows ``(N, C, *out, K)`` whatever the rank, so the same class runs
    in any rank: ``MyPool2d.for_dims(3)`` makes its 3-D version (cached,
    named ``MyPool3d``, saved and loaded by that name like any subclass).
    The built-in 1-D/3-D layers (``MaxPool1d``, ``MeanPool3d``, ...) are
    such subclasses, written out.  A kernel tier runs only in the ranks
    listed in :attr:`kernel_ranks` (default ``(2,)``); other ranks use the
    NumPy tier.

    Strategies with parameters: assign each learnable array as a
    :class:`~cnnpool.layer.Parameter` attribute in ``__init__`` (read
    ``p.data`` inside ``pool``/``route``, never a copy taken earlier:
    optimizers and :func:`~cnnpool.gradcheck` replace or update it).
    :meth:`parameters` returns them, and the generic backward calls
    :meth:`param_grads` once, after the input gradient, and adds what it
    returns into each ``p.grad``.  ``pool`` and ``route`` keep their
    meaning (``route`` is still the derivative with respect to the window
    only), so a parameter-free strategy is exactly the two-method contract
    above.  A strategy with a kernel tier adds its parameter gradients in
    :meth:`backward_kernel` itself.

    A subclass gets a short name for :func:`~cnnpool.registry.make_pool` and
    ``cnnpool-compare --pool`` with class keywords,
    ``class SoftmaxPool2d(Pool2d, name="softmax")`` (and
    ``defaults={...}`` for constructor arguments that ``make_pool`` should
    fill, ``allocates=`` for a constructor that allocates by its
    arguments); every subclass is known to saved models by its class name
    (see :mod:`cnnpool.registry`).

    Threads: the compiled kernels release the GIL and give bit-identical
    results for any ``OMP_NUM_THREADS``, and different layer instances may
    run in different threads at once.  One instance must not be shared
    between threads mid forward/backward: ``forward`` keeps the
    :class:`PoolState` that ``backward`` uses, so another thread's
    ``forward`` in between silently replaces it.
    """

    pad_value = 0.0

    #: Number of spatial axes (1, 2 or 3); see :meth:`for_dims`.
    spatial_dims = 2
    #: The ranks the class's kernel tier (:meth:`forward_kernel`) handles;
    #: in other ranks the NumPy tier runs.  A strategy whose kernel is
    #: written for any rank declares ``(1, 2, 3)``.
    kernel_ranks: tuple[int, ...] = (2,)

    def __init__(
        self,
        kernel_size: _IntOrPair,
        stride: _IntOrPair | None = None,
        padding: _IntOrPair | str = 0,
        dilation: _IntOrPair = 1,
        ceil_mode: bool = False,
    ) -> None:
        n = self.spatial_dims
        self.kernel_size = spatial_tuple(kernel_size, "kernel_size", n)
        self.stride = self.kernel_size if stride is None else spatial_tuple(stride, "stride", n)
        self.dilation = spatial_tuple(dilation, "dilation", n)
        self.padding = parse_padding(padding, n, self.kernel_size, self.dilation)
        if not isinstance(ceil_mode, (bool, np.bool_)):
            raise TypeError(f"ceil_mode must be a bool, got {ceil_mode!r}")
        self.ceil_mode = bool(ceil_mode)
        self.use_fast_path = True
        self.geometry: PoolGeometry | None = None
        self._geometries: dict[tuple[int, ...], PoolGeometry] = {}
        # The record of the last forward, for backward (see PoolState).
        self._state: PoolState | None = None
        # Large outputs and input gradients, reused once the caller drops them.
        self._outputs = OutputBuffers()

    #: True when the class implements the kernel tier (set per subclass; an
    #: instance may switch it off, e.g. for arguments its kernel does not cover).
    has_kernel = False
    _pool_ctx = _route_ctx = _grads_ctx = False

    def __init_subclass__(
        cls,
        name: str | None = None,
        defaults: dict[str, Any] | None = None,
        allocates: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if cls.spatial_dims not in (1, 2, 3):
            raise TypeError(
                f"{cls.__name__}.spatial_dims must be 1, 2 or 3, got {cls.spatial_dims!r}"
            )
        if "spatial_dims" in cls.__dict__:
            # A rank variant (MaxPool1d of MaxPool2d): what for_dims returns.
            base = cls.__mro__[1]
            if issubclass(base, Pool2d) and base.spatial_dims != cls.spatial_dims:
                variants = base.__dict__.get("_rank_variants")
                if variants is None:
                    variants = {}
                    type.__setattr__(base, "_rank_variants", variants)
                variants.setdefault(cls.spatial_dims, cls)
                cls._rank_base = base
        if cls.forward_kernel is not Pool2d.forward_kernel:
            if cls.backward_kernel is Pool2d.backward_kernel:
                raise TypeError(f"{cls.__name__} implements forward_kernel but not backward_kernel")
            if "has_kernel" not in cls.__dict__:
                cls.has_kernel = cls.spatial_dims in cls.kernel_ranks
        cls._pool_ctx = _takes_ctx(cls.pool)
        cls._route_ctx = _takes_ctx(cls.route)
        cls._grads_ctx = _takes_ctx(cls.param_grads)
        if name is not None or defaults is not None or allocates is not None:
            # ``class SoftmaxPool2d(Pool2d, name="softmax")``: a short name for
            # make_pool and cnnpool-compare, through the one registry.
            _registry.register(cls, name, defaults=defaults, allocates=allocates)

    # ---------------------------------------------------------------------- rank
    _rank_variants: dict[int, type] | None = None
    _rank_base: type | None = None

    @classmethod
    def for_dims(cls, dims: int) -> type:
        """The version of this pooling class over ``dims`` spatial axes (1, 2 or 3).

        The same strategy (``pool``/``route``, any compiled
        ``WindowStrategy`` or JIT window functions) on ``(N, C, L)`` or
        ``(N, C, D, H, W)`` inputs.  Returns the class itself for its own
        rank, the built-in variant where there is one
        (``MaxPool2d.for_dims(1) is MaxPool1d``), else a subclass made once
        and cached, named after the class with its rank suffix replaced
        (``SoftmaxPool2d`` -> ``SoftmaxPool1d``; a name without one gets
        one).  Saved models store that name: call ``for_dims`` again before
        :func:`cnnpool.load` in another process, as for any class a model
        uses.  The kernel tier runs in the new rank only if
        :attr:`kernel_ranks` lists it.
        """
        if isinstance(dims, bool) or not isinstance(dims, int) or dims not in (1, 2, 3):
            raise ValueError(f"dims must be 1, 2 or 3 spatial axes, got {dims!r}")
        if dims == cls.spatial_dims:
            return cls
        base = cls.__dict__.get("_rank_base")
        if base is not None:  # MaxPool1d.for_dims(3) is MaxPool2d.for_dims(3)
            return base.for_dims(dims)
        variants = cls.__dict__.get("_rank_variants")
        if variants is None or dims not in variants:
            name = _rank_name(cls.__name__, cls.spatial_dims, dims)
            doc = (
                f"{cls.__name__} over {dims} spatial ax{'is' if dims == 1 else 'es'} "
                f"(made by {cls.__name__}.for_dims({dims})).\n\n{cls.__doc__ or ''}"
            )
            namespace = {
                "spatial_dims": dims,
                "__module__": cls.__module__,
                "__qualname__": name,
                "__doc__": doc,
            }
            variant = type(name, (cls,), namespace)  # registers itself as the variant
            allocates = _registry.allocates_of(cls)
            if allocates is not None:  # the same load-time cap (GatedPool2d: one weight per tap)
                _registry.register(variant, allocates=allocates)
        return cls.__dict__["_rank_variants"][dims]

    # ------------------------------------------------------------------ geometry
    def geometry_for(self, *size: int) -> PoolGeometry:
        """The :class:`PoolGeometry` for an input of spatial size ``size``
        (``height, width`` in 2-D; one size per spatial axis).

        Cached per size.  Raises ``ValueError`` when the window does not fit
        or when some window would hold no input element.
        """
        key = tuple(int(v) for v in size)
        geom = self._geometries.get(key)
        if geom is None:
            if len(key) != self.spatial_dims:
                raise ValueError(
                    f"{type(self).__name__} pools {self.spatial_dims} spatial axes "
                    f"{shape_name(self.spatial_dims)}, got the size {key}"
                )
            pads = resolve_padding(self.padding, key, self.kernel_size, self.stride, self.dilation)
            geom = make_geometry(
                key, self.kernel_size, self.stride, pads, self.dilation, self.ceil_mode
            )
            if len(self._geometries) > 32:  # a model sees few sizes; bound the cache anyway
                self._geometries.clear()
            self._geometries[key] = geom
        return geom

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Output shape ``(N, C, OH, OW)`` for an input of shape ``(N, C, H, W)``
        (any rank; an unbatched ``(C, H, W)`` gives ``(C, OH, OW)``)."""
        n = self.spatial_dims
        if len(input_shape) not in (n + 1, n + 2):
            batched, unbatched = _layout(n)
            raise ValueError(
                f"input_shape must be {batched} or {unbatched}, got {tuple(input_shape)}"
            )
        geom = self.geometry_for(*input_shape[-n:])
        return tuple(input_shape[:-n]) + geom.out_size

    # ------------------------------------------------------------- the strategy
    def pool(self, windows: np.ndarray) -> np.ndarray:
        """Reduce each window: ``(N, C, OH, OW, K) -> (N, C, OH, OW)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement pool(windows)")

    def route(self, windows: np.ndarray, pooled: np.ndarray) -> np.ndarray:
        """Local gradient ``d pooled / d windows``, shape ``(N, C, OH, OW, K)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement route(windows, pooled)")

    def param_grads(
        self, windows: np.ndarray, pooled: np.ndarray, grad_output: np.ndarray
    ) -> dict[Parameter, np.ndarray]:
        """Gradients of the loss for the strategy's own parameters (optional hook).

        Implement it only in a strategy that owns :class:`Parameter` s.
        ``windows`` and ``pooled`` are those of the last forward (as in
        :meth:`route`) and ``grad_output`` is ``d loss / d pooled``, shape
        ``(N, C, OH, OW)``.  Return a dict ``{parameter: gradient}`` with
        one entry for every parameter in :meth:`parameters`, each gradient
        of the parameter's shape: ``sum(grad_output * d pooled / d param)``
        over all windows.  The base adds each into ``parameter.grad``.
        The default returns ``{}``: no parameters.
        """
        return {}

    def parameters(self) -> list[Parameter]:
        """The :class:`Parameter` attributes of this layer, in assignment order."""
        return [v for v in vars(self).values() if isinstance(v, Parameter)]

    def _add_param_grads(self, windows, pooled, grad_output, ctx):
        params = self.parameters()
        if self._grads_ctx:
            grads = self.param_grads(windows, pooled, grad_output, ctx=ctx)
        else:
            grads = self.param_grads(windows, pooled, grad_output)
        if not params and not grads:
            return
        name = type(self).__name__
        if not isinstance(grads, dict):
            raise TypeError(
                f"{name}.param_grads must return a dict {{parameter: gradient}}, "
                f"got {type(grads).__name__}"
            )
        unknown = [k for k in grads if not any(k is p for p in params)]
        missing = [p for p in params if not any(k is p for k in grads)]
        if unknown or missing:
            raise ValueError(
                f"{name}.param_grads must return one gradient for each of its "
                f"parameters {params}; missing {missing}, not parameters of this "
                f"layer: {unknown}"
            )
        for p in params:
            g = np.asarray(grads[p])
            if g.shape != p.data.shape:
                raise ValueError(
                    f"{name}.param_grads returned a gradient of shape {g.shape} for "
                    f"{p!r}, expected {p.data.shape}"
                )
            p.grad += g.astype(p.grad.dtype, copy=False)

    # ------------------------------------------------------------ kernel tier
    def forward_kernel(self, x: np.ndarray, geom: PoolGeometry) -> tuple[np.ndarray, Any]:
        """Compiled forward over a whole batch (the kernel tier; optional).

        Parameters
        ----------
        x : ndarray, shape (N, C, H, W)
            float32 or float64, already validated, C-contiguous; always
            batched (the base adds the batch axis of an unbatched input);
            ``(N, C, L)`` or ``(N, C, D, H, W)`` in the other ranks
            (:attr:`kernel_ranks`).
        geom : PoolGeometry
            The geometry of ``x``'s spatial size.

        Returns
        -------
        y : ndarray, shape (N, C, OH, OW)
            In the dtype of ``x`` (``(N, C, *geom.out_size)``).
        saved : object
            Anything the backward needs; it reaches :meth:`backward_kernel`
            as ``state.saved``.  Keep nothing on ``self``, and nothing the
            caller can still edit (copy ``x`` if the backward reads it).
        """
        raise NotImplementedError(f"{type(self).__name__} has no kernel tier")

    def backward_kernel(self, grad_output: np.ndarray, state: PoolState) -> np.ndarray:
        """Compiled backward of one :meth:`forward_kernel` call (the kernel tier).

        ``grad_output`` has ``state.out_shape`` and ``state.dtype``
        (C-contiguous); return the input gradient, shape ``state.x_shape``.
        A strategy with parameters adds their gradients into each
        ``p.grad`` here.  ``state`` must not be modified: calling the
        backward twice gives the same answer.
        """
        raise NotImplementedError(f"{type(self).__name__} has no kernel tier")

    # ---------------------------------------------------------- forward/backward
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Pool ``x`` of shape ``(N, C, H, W)`` or ``(C, H, W)``; returns
        ``(N, C, OH, OW)`` or ``(C, OH, OW)`` (any rank: see :attr:`spatial_dims`)."""
        x = _checks.as_float_array(x, "x")
        n = self.spatial_dims
        unbatched = x.ndim == n + 1
        if unbatched:
            x = x[None]
        elif x.ndim != n + 2:
            batched, single = _layout(n)
            raise ValueError(
                f"x must be {n + 2}-D {batched} or {n + 1}-D {single} for "
                f"{type(self).__name__}, got {x.ndim}-D array of shape {x.shape}"
            )
        if x.shape[1] == 0:  # PyTorch refuses it too (N = 0 is a batch, and allowed)
            raise ValueError(
                f"x has no channels, shape {x.shape[unbatched:]}: pooling needs C >= 1"
            )
        # The cache of geometry_for, looked up inline (this runs on every call).
        geom = self._geometries.get(x.shape[2:])
        if geom is None:
            geom = self.geometry_for(*x.shape[2:])
        self.geometry = geom
        if self.use_fast_path and self.has_kernel:
            tier = "kernel"
            y, saved = self.forward_kernel(x, geom)
        else:
            tier = "numpy"
            y, saved = self._forward_numpy(x, geom)
        self._state = PoolState(
            x.shape, x.dtype, y.shape, geom, tier, self.training, saved, unbatched
        )
        return y[0] if unbatched else y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Gradient w.r.t. the input of the last forward; shape and dtype of ``x``.

        Saved state is never modified: calling it twice gives the same answer.
        """
        state = self._state
        if state is None:
            raise BackwardBeforeForwardError(
                f"{type(self).__name__}.backward called before forward"
            )
        if state.unbatched:
            grad_output = _checks.grad_like(grad_output, state.out_shape[1:], state.dtype)[None]
            if state.tier == "kernel":
                return self.backward_kernel(grad_output, state)[0]
            return self._backward_numpy(grad_output, state)[0]
        grad_output = _checks.grad_like(grad_output, state.out_shape, state.dtype)
        if state.tier == "kernel":
            return self.backward_kernel(grad_output, state)
        return self._backward_numpy(grad_output, state)

    # ------------------------------------------------------------ generic path
    def gather_windows(self, x: np.ndarray, geom: PoolGeometry | None = None) -> np.ndarray:
        """Cut ``x`` (N, C, H, W) into windows ``(N, C, OH, OW, K)`` (any rank:
        ``(N, C, *spatial)`` into ``(N, C, *out, K)``).

        Padded taps hold :attr:`pad_value`.  Compiled; ``x`` is validated as
        in :meth:`forward` (batched), and ``geom`` must be the geometry of
        its spatial size.
        """
        x = _checks.as_float_array(x, "x", self.spatial_dims + 2)
        geom = geom or self.geometry_for(*x.shape[2:])
        _check_geometry(geom, x.shape, "x")
        n, c = x.shape[:2]
        taps = geom.taps.reshape(-1)
        windows = np.empty((n * c, taps.size), dtype=x.dtype)
        _windows.gather(
            x.reshape(n * c, geom.plane_size),
            taps,
            x.dtype.type(self.pad_value),
            windows,
            threads_for(n * c, windows.size + x.size),
        )
        return windows.reshape((n, c) + geom.out_size + (geom.window_size,))

    def scatter_windows(
        self, grad_windows: np.ndarray, x_shape: tuple[int, ...], geom: PoolGeometry
    ) -> np.ndarray:
        """Sum ``grad_windows`` (N, C, OH, OW, K) back onto the input grid (N, C, H, W)
        (any rank: ``(N, C, *out, K)`` onto ``(N, C, *spatial)``)."""
        x_shape = tuple(x_shape)
        _check_geometry(geom, x_shape, "x_shape")
        grad_windows = _checks.as_float_array(grad_windows, "grad_windows", geom.ndim + 3)
        expected = x_shape[:2] + geom.out_size + (geom.window_size,)
        if grad_windows.shape != expected:
            raise ValueError(
                f"grad_windows must have shape (N, C, *out, K) = {expected} for "
                f"x_shape {x_shape}, got {grad_windows.shape}"
            )
        n, c = x_shape[:2]
        taps = geom.taps.reshape(-1)
        grad_x = np.zeros((n * c, geom.plane_size), dtype=grad_windows.dtype)
        _windows.scatter_add(
            grad_windows.reshape(n * c, taps.size),
            taps,
            grad_x,
            threads_for(n * c, grad_windows.size + grad_x.size),
        )
        return grad_x.reshape(x_shape)

    def _forward_numpy(self, x, geom):
        windows = self.gather_windows(x, geom)
        windows.flags.writeable = False  # a strategy must not edit what backward reuses
        ctx = SimpleNamespace() if self._pool_ctx or self._route_ctx or self._grads_ctx else None
        pooled = self.pool(windows, ctx=ctx) if self._pool_ctx else self.pool(windows)
        expected = windows.shape[:-1]
        if not isinstance(pooled, np.ndarray) or pooled.shape != expected:
            got = getattr(pooled, "shape", type(pooled).__name__)
            raise ValueError(
                f"{type(self).__name__}.pool must return an array of shape {expected} "
                f"(N, C, *out) for windows of shape {windows.shape}, got {got}"
            )
        pooled = np.array(pooled, dtype=x.dtype, copy=True)
        saved = pooled.copy()
        saved.flags.writeable = False
        return pooled, WindowsSaved(windows, saved, ctx)

    def _backward_numpy(self, grad_output, state):
        windows, pooled, ctx = state.saved
        self.geometry = state.geometry  # what pool saw, for route
        if self._route_ctx:
            local = self.route(windows, pooled, ctx=ctx)
        else:
            local = self.route(windows, pooled)
        if not isinstance(local, np.ndarray) or local.shape != windows.shape:
            got = getattr(local, "shape", type(local).__name__)
            raise ValueError(
                f"{type(self).__name__}.route must return an array of the windows' "
                f"shape {windows.shape} (N, C, *out, K), got {got}"
            )
        with np.errstate(invalid="ignore"):  # 0 * inf, set right just below
            grad_windows = local * grad_output[..., None]
        grad_windows = grad_windows.astype(grad_output.dtype, copy=False)
        if not np.isfinite(grad_output).all():
            # A zero route is no path at all: 0 * inf or 0 * nan must not
            # reach taps that do not affect the output (see the module notes).
            grad_windows[local == 0] = 0
        grad_x = self.scatter_windows(grad_windows, state.x_shape, state.geometry)
        self._add_param_grads(windows, pooled, grad_output, ctx)
        return grad_x

    # -------------------------------------------------------------------- repr
    def extra_repr(self) -> str:
        parts = [f"kernel_size={self.kernel_size}", f"stride={self.stride}"]
        parts.append(f"padding={self.padding}")
        parts.append(f"dilation={self.dilation}")
        parts.append(f"ceil_mode={self.ceil_mode}")
        return ", ".join(parts)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for saved models (see ``Layer.get_config``).

        A strategy whose constructor takes more arguments extends this dict.
        """
        padding = self.padding
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": padding if isinstance(padding, str) else list(padding),
            "dilation": list(self.dilation),
            "ceil_mode": self.ceil_mode,
        }
