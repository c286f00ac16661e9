"""One registry of layer classes: save/load, ``make_pool`` and ``cnnpool-compare``.

One registration serves every use of a class:

* **Saved models** name each layer by its class name.  Every
  :class:`~cnnpool.Layer` subclass is known by its ``__name__`` as soon as
  it is defined, so ``cp.load`` can rebuild it without importing
  anything named in the file.
* **Pooling strategies by short name** (``make_pool("lp", 2)``,
  ``cnnpool-compare --pool lp``): a :class:`~cnnpool.Pool2d` subclass gets
  a short name with a class keyword, or with :func:`register`::

      class SoftmaxPool2d(cp.Pool2d, name="softmax"):
          ...

      cp.register(SoftmaxPool2d, "softmax")    # the same, after the fact

  The built-in strategies register this way too (``class MaxPool2d(...,
  name="max")``).

When two classes share a class name:

* **Redefinition** (a notebook re-running a cell, ``importlib.reload``):
  a class with the same module and qualified name as a known one replaces
  it, for its class name and its short names alike.  A layer built from the
  old definition still saves; loading builds the current one.
* **Registered beats merely defined.**  A class passed to :func:`register`
  (or defined with ``name=``) owns its class name: another class of the
  same name that is only defined does not disturb loading, and saving one
  of its layers is refused (the file could not be loaded back as that
  class).  The built-in layers are registered, so a user's own
  ``MaxPool2d`` never shadows cnnpool's.  Registering a second, different
  class under a class name or short name someone else registered raises
  ``ValueError``; :func:`unregister` frees the names.
* **Ambiguity is refused.**  When two different classes of one name are
  defined and neither is registered, saving or loading that name raises
  ``ValueError`` naming both and saying how to pick one
  (``cnnpool.register(cls)``).  A class that nothing references any more
  no longer counts.

Loading never imports a module: a file naming an unknown class is refused
with a message saying which class to import or define first.
"""

from __future__ import annotations

import gc
import inspect
import threading
import weakref
from typing import Any

__all__ = [
    "allocates_of",
    "layer_class",
    "layer_names",
    "make_pool",
    "pool_class",
    "pool_name",
    "pool_names",
    "register",
    "unregister",
]

_lock = threading.RLock()

# Class name -> {(module, qualname): weak reference} of every Layer subclass
# defined so far.  Weak, so that a class defined in a function (a test, a
# notebook helper) that nothing uses any more stops counting.
_defined: dict[str, dict[tuple[str, str], weakref.ref]] = {}
# Class name -> the class registered under it (strong: it must stay loadable).
_registered: dict[str, type] = {}
# Short name -> (class, constructor defaults) for make_pool.
_pools: dict[str, tuple[type, dict[str, Any]]] = {}
# Class -> allocates(config): the array elements its constructor allocates.
_allocates: dict[type, Any] = {}


def _where(cls: type) -> tuple[str, str]:
    return (cls.__module__, cls.__qualname__)


def _dotted(cls: type) -> str:
    return ".".join(_where(cls))


def _same_definition(a: type, b: type) -> bool:
    return a is b or _where(a) == _where(b)


# ----------------------------------------------------------------- defining
def _note_defined(cls: type) -> None:
    """Called by ``Layer.__init_subclass__``: every Layer subclass is known by name."""
    with _lock:
        _defined.setdefault(cls.__name__, {})[_where(cls)] = weakref.ref(cls)
        known = _registered.get(cls.__name__)
        if known is not None and known is not cls and _same_definition(known, cls):
            _replace(known, cls)


def _replace(old: type, new: type) -> None:
    """A redefinition takes over the registered names of the class it redefines."""
    _registered[new.__name__] = new
    for short, (cls, defaults) in list(_pools.items()):
        if cls is old:
            _pools[short] = (new, defaults)
    if old in _allocates:
        _allocates.setdefault(new, _allocates.pop(old))


# --------------------------------------------------------------- registering
def register(cls=None, name=None, *, defaults=None, allocates=None):
    """Register a layer class for saved models and, with ``name``, for :func:`make_pool`.

    Parameters
    ----------
    cls : type
        A :class:`~cnnpool.Layer` subclass.  It is registered under
        ``cls.__name__`` for saved models (which store that name).
    name : str, optional
        A short name for :func:`make_pool` and ``cnnpool-compare --pool``;
        ``cls`` must then be a :class:`~cnnpool.Pool2d` subclass whose
        constructor takes ``kernel_size`` and ``stride``.  Register one
        class under several short names by calling this once per name (the
        first is its :func:`pool_name`).
    defaults : dict, optional
        Constructor keywords that :func:`make_pool` passes unless its caller
        overrides them (``LpPool2d`` registers ``{"norm_type": 2}``).
    allocates : callable, optional
        ``allocates(config) -> int``: how many array elements the
        constructor allocates for this configuration.  ``cnnpool.load``
        checks it against the parameter elements the file declares for the
        layer *before* calling the constructor, so a file whose
        configuration asks for gigabytes is refused without allocating
        them.  Give it when your constructor allocates arrays sized by its
        arguments other than through Kaiming initialisation (which is
        checked anyway); the built-in layers have theirs.

    Returns
    -------
    cls
        So that ``@cnnpool.register`` works as a class decorator (and
        ``@cnnpool.register(name=..., allocates=...)`` with arguments).

    Raises
    ------
    TypeError
        If ``cls`` is not a Layer subclass, or has a short name but is not a
        Pool2d subclass taking ``kernel_size`` and ``stride``.
    ValueError
        If a different class is already registered under ``cls.__name__``
        or under ``name``, or ``name`` is not a usable short name.

    Notes
    -----
    A Pool2d subclass can register itself with class keywords:
    ``class SoftmaxPool2d(cp.Pool2d, name="softmax")`` (and
    ``defaults={...}``).  A class with the same module and qualified name as
    a registered one (a re-run notebook cell) replaces it.
    """
    from .layer import Layer

    if cls is None:
        return lambda c: register(c, name, defaults=defaults, allocates=allocates)
    if not (isinstance(cls, type) and issubclass(cls, Layer)) or cls is Layer:
        raise TypeError(f"register needs a cnnpool Layer subclass, got {cls!r}")
    if allocates is not None and not callable(allocates):
        raise TypeError(f"allocates must be a callable config -> int, got {allocates!r}")
    if name is not None:
        _check_pool_name(cls, name, defaults)
    elif defaults is not None:
        raise TypeError(f"{cls.__name__}: defaults= needs a short name (name=...)")
    with _lock:
        known = _registered.get(cls.__name__)
        if known is not None and not _same_definition(known, cls):
            raise ValueError(
                f"cannot register {_dotted(cls)}: a different class, {_dotted(known)}, is "
                f"already registered under the class name {cls.__name__!r} (saved models "
                f"name a layer by its class name); rename your class, or call "
                f"cnnpool.unregister({cls.__name__!r}) first"
            )
        if name is not None:
            entry = _pools.get(name)
            if entry is not None and not _same_definition(entry[0], cls):
                raise ValueError(
                    f"cannot register {_dotted(cls)} as {name!r}: that pooling strategy "
                    f"name is taken by {_dotted(entry[0])}; choose another name, or call "
                    f"cnnpool.unregister({name!r}) first"
                )
        if known is not None and known is not cls:
            _replace(known, cls)
        _registered[cls.__name__] = cls
        _defined.setdefault(cls.__name__, {})[_where(cls)] = weakref.ref(cls)
        if name is not None:
            _pools[name] = (cls, dict(defaults or {}))
        if allocates is not None:
            _allocates[cls] = allocates
    return cls


def allocates_of(cls):
    """The ``allocates(config)`` function registered for ``cls``, or ``None``."""
    with _lock:
        return _allocates.get(cls)


def _check_pool_name(cls, name, defaults):
    from .pooling.base import Pool2d

    if not isinstance(name, str) or not name or ":" in name or name != name.strip():
        raise ValueError(
            f"a pooling strategy name must be a non-empty string without ':' or "
            f"surrounding spaces, got {name!r}"
        )
    if not issubclass(cls, Pool2d):
        raise TypeError(
            f"only Pool2d subclasses take a short name; {_dotted(cls)} is not one "
            f"(register it without a name for saved models)"
        )
    if defaults is not None and not (
        isinstance(defaults, dict) and all(isinstance(k, str) for k in defaults)
    ):
        raise TypeError(f"defaults must be a dict of constructor keywords, got {defaults!r}")
    params = _parameters(cls)
    if params is not None:
        missing = [p for p in ("kernel_size", "stride") if p not in params]
        if missing:
            raise TypeError(
                f"{_dotted(cls)} cannot be registered as {name!r}: make_pool builds it "
                f"as {cls.__name__}(kernel_size=..., stride=..., **kwargs), but its "
                f"constructor has no {' or '.join(missing)} parameter"
            )


def unregister(name_or_cls):
    """Forget a registration: a short name, or a class (its class name, short names, ``allocates``).

    Returns ``True`` if something was removed.  The class stays *defined*,
    so a layer of it still saves and loads while no other class shares its
    name.
    """
    with _lock:
        if isinstance(name_or_cls, str):
            if name_or_cls in _pools:
                del _pools[name_or_cls]
                return True
            cls = _registered.get(name_or_cls)
            if cls is None:
                return False
        else:
            cls = name_or_cls
        removed = False
        if _registered.get(cls.__name__) is cls:
            del _registered[cls.__name__]
            removed = True
        for short in [s for s, (c, _) in _pools.items() if c is cls]:
            del _pools[short]
            removed = True
        if _allocates.pop(cls, None) is not None:
            removed = True
        return removed


# ------------------------------------------------------------------ lookups
def _candidates(type_name: str) -> list[type]:
    alive = []
    for ref in _defined.get(type_name, {}).values():
        cls = ref()
        if cls is not None:
            alive.append(cls)
    return alive


def layer_class(type_name):
    """The layer class that a saved model's ``type_name`` rebuilds.

    Raises
    ------
    ValueError
        If no class of that name is defined (the message says to import or
        define it first; loading never imports), or several are and none
        is registered.
    """
    if not isinstance(type_name, str):
        raise ValueError(f"a layer type name must be a string, got {type_name!r}")
    with _lock:
        cls = _registered.get(type_name)
        if cls is not None:
            return cls
        if len(_candidates(type_name)) > 1:
            gc.collect()  # classes nothing references any more do not count
        found = _candidates(type_name)
    if not found:
        raise ValueError(
            f"unknown type {type_name!r}: no layer class of that name is defined. Loading "
            f"never imports modules named in a file: import or define the class "
            f"{type_name} (a cnnpool Layer subclass) before loading"
        )
    if len(found) > 1:
        names = ", ".join(sorted(_dotted(c) for c in found))
        raise ValueError(
            f"ambiguous layer type {type_name!r}: {len(found)} different classes of that "
            f"name are defined ({names}); pick the one to use with cnnpool.register(cls)"
        )
    return found[0]


def layer_names():
    """The public class names a saved model can use right now, sorted."""
    with _lock:
        names = set(_registered)
        names.update(n for n in _defined if _candidates(n))
    return sorted(n for n in names if not n.startswith("_"))


def pool_names():
    """Every short name :func:`make_pool` accepts, sorted (aliases included)."""
    with _lock:
        return sorted(_pools)


def pool_class(name):
    """The :class:`~cnnpool.Pool2d` subclass registered under the short name ``name``."""
    with _lock:
        entry = _pools.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ValueError(
            f"unknown pooling strategy {name!r}; known: {', '.join(pool_names())} (a "
            f"Pool2d subclass gets a short name with class MyPool(cnnpool.Pool2d, "
            f"name='my-pool') or cnnpool.register(MyPool, 'my-pool'))"
        )
    return entry[0]


def pool_name(cls):
    """The first short name ``cls`` was registered under, or ``None``."""
    with _lock:
        for short, (known, _) in _pools.items():
            if known is cls:
                return short
    return None


def make_pool(name, kernel_size, stride=None, *, seed=None, **kwargs):
    """Build a fresh layer of the strategy registered as ``name``.

    Parameters
    ----------
    name : str
        A short name (:func:`pool_names`): ``"max"``, ``"mean"`` (alias
        ``"avg"``), ``"lp"`` (``norm_type=2`` unless given), ``"stochastic"``,
        ``"mixed"``, ``"gated"``, or one you registered.
    kernel_size, stride
        As for :class:`~cnnpool.Pool2d`.
    seed : int, optional
        For strategies that draw random numbers: passed as the constructor's
        ``rng`` argument (or ``seed``, if that is what it takes); ignored by
        strategies that take neither.  ``None`` leaves the constructor's
        default.
    **kwargs
        Further constructor arguments (``make_pool("lp", 2, norm_type=3)``),
        overriding the registered defaults.

    Returns
    -------
    Pool2d
        ``cls(kernel_size=kernel_size, stride=stride, **defaults, **kwargs)``.

    Raises
    ------
    ValueError
        For an unknown name, or arguments the constructor rejects.
    TypeError
        If both ``seed`` and the ``rng`` (or ``seed``) argument itself are given.
    """
    cls = pool_class(name)
    with _lock:
        defaults = dict(_pools[name][1])
    args = {**defaults, **kwargs, "kernel_size": kernel_size, "stride": stride}
    if seed is not None:
        params = _parameters(cls) or ()
        key = "rng" if "rng" in params else "seed" if "seed" in params else None
        if key is not None:
            if key in kwargs:
                raise TypeError(f"make_pool({name!r}): give seed or {key}, not both")
            args[key] = seed
    try:
        return cls(**args)
    except TypeError as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        raise ValueError(
            f"make_pool({name!r}) could not build {cls.__name__}({shown}): {exc}"
        ) from exc


def _parameters(cls):
    """The constructor's keyword parameter names, or ``None`` if it takes ``**kwargs``."""
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return None
    names = set()
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            return None
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.add(p.name)
    return names
