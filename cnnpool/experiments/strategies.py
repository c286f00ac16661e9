"""Pooling strategies for the comparison: ``--pool`` specs resolved to classes.

A spec is a short name of the pooling registry (``"max"``, ``"mean"``,
...), ``"module:Class"`` or ``"path/to/file.py:Class"`` (a user's module,
imported here), or a :class:`~cnnpool.Pool2d` subclass passed as an object.
Every call into the pooling registry made by :mod:`cnnpool.experiments`
lives in this module (:func:`available`, :meth:`Strategy.make`,
:func:`resolve_strategy`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass

from ..pooling import MaxPool2d, MeanPool2d, Pool2d

__all__ = ["Strategy", "resolve_strategy", "available"]

#: Short names for the built-in strategies.
BUILTIN = {"max": MaxPool2d, "mean": MeanPool2d, "avg": MeanPool2d}


def available():
    """The short names ``--pool`` accepts, sorted."""
    return sorted(_registered_names() | set(BUILTIN))


@dataclass(frozen=True)
class Strategy:
    """A pooling strategy: ``spec`` as given, ``name`` for tables, the class.

    ``origin`` is the text a worker process resolves again to find the
    class (the spec, with a file path made absolute); ``None`` when the
    class was passed as an object.
    """

    spec: str
    name: str
    cls: type
    origin: str | None = None
    registered: bool = False

    def make(self, kernel_size, seed=None):
        """A fresh layer; ``seed`` reaches strategies that draw random numbers."""
        if self.registered:
            from ..pooling.registry import make_pool

            return make_pool(self.spec, kernel_size, seed=seed)
        return self.cls(kernel_size)


def resolve_strategy(spec):
    """Turn ``"max"``, ``"mean"``, ``"module:Class"`` or ``"path/file.py:Class"`` into a Strategy.

    A user's class must be a subclass of :class:`~cnnpool.Pool2d` whose
    constructor takes the kernel size as its first argument (as
    ``MaxPool2d(2)``).  A class may also be passed directly.  Modules are
    looked up on ``sys.path`` and in the current directory.

    Raises
    ------
    ValueError
        With a message saying what was wrong and what is accepted.
    """
    origin = None
    if isinstance(spec, Strategy):
        return spec
    if isinstance(spec, type):
        cls, text = spec, f"{spec.__module__}:{spec.__qualname__}"
    elif isinstance(spec, str) and spec in _registered_names():
        cls = type(_registry().make_pool(spec, 2, seed=0))
        return Strategy(spec, spec, cls, spec, registered=True)
    elif isinstance(spec, str) and spec in BUILTIN:
        return Strategy(spec, spec, BUILTIN[spec], spec)
    elif isinstance(spec, str) and ":" in spec:
        text = origin = spec
        module_name, _, attr = spec.rpartition(":")
        if _is_path(module_name):
            origin = f"{os.path.abspath(module_name)}:{attr}"
        if not module_name or not attr:
            raise ValueError(f"pool {spec!r}: expected 'module:Class'")
        module = _import_user_module(module_name, spec)
        cls = module
        for part in attr.split("."):
            cls = getattr(cls, part, None)
            if cls is None:
                raise ValueError(f"pool {spec!r}: module {module_name!r} has no {attr!r}")
    else:
        names = ", ".join(repr(n) for n in sorted(_registered_names() | set(BUILTIN)))
        raise ValueError(
            f"pool {spec!r}: use a short name ({names}) or a Pool2d subclass as "
            "'module:Class' (for example 'my_pooling:LpPool2d' or 'path/to/file.py:LpPool2d')"
        )
    if not (isinstance(cls, type) and issubclass(cls, Pool2d)):
        raise ValueError(
            f"pool {text!r} is {cls!r}, not a subclass of cnnpool.Pool2d: a pooling "
            "strategy subclasses Pool2d and implements pool(windows) and route(windows, pooled)"
        )
    if cls is Pool2d:
        raise ValueError(f"pool {text!r}: Pool2d itself is the abstract base; name a strategy")
    try:
        cls(2)
    except Exception as exc:  # noqa: BLE001 - the user's constructor may raise anything
        raise ValueError(
            f"pool {text!r}: could not build {cls.__name__}(2); a strategy used in the "
            f"comparison must take the kernel size as its first argument ({exc})"
        ) from exc
    name = getattr(cls, "strategy_name", None) or cls.__name__
    for short, builtin in BUILTIN.items():
        if cls is builtin:
            name = short
            break
    return Strategy(text, str(name), cls, origin)


def _registry():
    try:
        from ..pooling import registry
    except ImportError:  # an older cnnpool without the registry: built-ins only
        return None
    return registry


def _registered_names():
    reg = _registry()
    return set(reg.available()) if reg is not None else set()


def _is_path(module_name):
    return module_name.endswith(".py") or os.sep in module_name or "/" in module_name


def _import_user_module(module_name, spec):
    if _is_path(module_name):
        path = os.path.abspath(module_name)
        if not os.path.isfile(path):
            raise ValueError(f"pool {spec!r}: no such file {module_name!r}")
        mod_name = "_cnnpool_user_" + hashlib.sha1(path.encode()).hexdigest()[:12]
        if mod_name in sys.modules:
            return sys.modules[mod_name]
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[mod_name]
            raise ValueError(f"pool {spec!r}: importing {path!r} failed: {exc}") from exc
        return module
    added = False
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
        added = True
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"pool {spec!r}: cannot import module {module_name!r}: {exc}") from exc
    finally:
        if added:
            sys.path.remove(os.getcwd())
