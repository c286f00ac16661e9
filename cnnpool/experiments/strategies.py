"""Pooling strategies for the comparison: ``--pool`` specs resolved to classes.

A spec is one of

* a short name of the pooling registry: ``"max"``, ``"mean"``, ``"lp"``, ...;
* ``"module:Class"`` or ``"path/to/file.py:Class"``: a user's
  :class:`~cnnpool.Pool2d` subclass (its module is imported here);
* either of those followed by constructor keywords in parentheses:
  ``"lp(norm_type=3)"``, ``"file.py:Class(beta=4, mode='soft')"``.  Only
  keywords are accepted and every value must be a Python literal (number,
  string, tuple, list, dict, True/False/None): the text is parsed with
  :mod:`ast` and :func:`ast.literal_eval`, never evaluated.  ``norm`` is
  accepted for ``norm_type`` (``"lp(norm=3)"``);
* a :class:`~cnnpool.Pool2d` subclass passed as an object (from Python).

The kernel size reaches the constructor as the keyword ``kernel_size`` when
the constructor has a parameter of that name (so a class whose constructor
takes something else first, like ``LpPool2d(norm_type, kernel_size)``,
still enters), else as the first positional argument.  A constructor with
an ``rng`` parameter that the spec leaves unset gets a seed derived from
the run's seed, so that random strategies are reproducible.

Every call into :mod:`cnnpool.registry` made by :mod:`cnnpool.experiments`
lives in this module (:func:`available`, :meth:`Strategy.make`,
:func:`resolve_strategy`).
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass

from .. import registry
from ..pooling import Pool2d

__all__ = ["Strategy", "resolve_strategy", "resolve_strategies", "available"]

#: Keyword spellings accepted for a constructor parameter of another name.
ALIASES = {"norm": "norm_type"}

# A spec's trailing "(...)": the constructor keywords.
_ARGS = re.compile(r"^(?P<head>[^()]+)\((?P<args>.*)\)\s*$", re.DOTALL)


def available():
    """The short names ``--pool`` accepts, sorted."""
    return sorted(_registered_names())


@dataclass(frozen=True)
class Strategy:
    """A pooling strategy: ``spec`` as given, ``name`` for tables, the class.

    Attributes
    ----------
    spec : str
        The text the user gave (or ``module:Class`` for a class object).
    name : str
        The name in tables: the short name or the class's ``strategy_name``
        (else its ``__name__``), followed by the keywords if any.
    cls : type
        The :class:`~cnnpool.Pool2d` subclass.
    origin : str or None
        The text a worker process resolves again to find the class (the
        spec, with a file path made absolute); ``None`` when the class was
        passed as an object.
    registered : str or None
        The registry's short name when the spec named one.
    kwargs : tuple of (str, object)
        The constructor keywords of the spec, sorted by name.
    """

    spec: str
    name: str
    cls: type
    origin: str | None = None
    registered: str | None = None
    kwargs: tuple = ()

    def make(self, kernel_size, seed=None):
        """A fresh layer; ``seed`` reaches strategies that draw random numbers."""
        if self.registered and not self.kwargs:
            return registry.make_pool(self.registered, kernel_size, seed=seed)
        return _construct(self.cls, kernel_size, dict(self.kwargs), seed)


def resolve_strategy(spec):
    """Turn a ``--pool`` spec (see the module docs) or a class into a :class:`Strategy`.

    A user's class must be a subclass of :class:`~cnnpool.Pool2d`.  Modules
    are looked up on ``sys.path`` and in the current directory.

    Raises
    ------
    ValueError
        With a message saying what was wrong and what is accepted.
    """
    if isinstance(spec, Strategy):
        return spec
    origin = registered = None
    kwargs = {}
    if isinstance(spec, type):
        cls, text, head = spec, f"{spec.__module__}:{spec.__qualname__}", None
    elif isinstance(spec, str):
        text = spec.strip()
        head, kwargs = _split_arguments(text)
        origin = text
        if head in _registered_names():
            registered = head
            cls = registry.pool_class(head)
        elif ":" in head:
            module_name, _, attr = head.rpartition(":")
            if not module_name or not attr:
                raise ValueError(f"pool {spec!r}: expected 'module:Class'")
            if _is_path(module_name):
                origin = f"{os.path.abspath(module_name)}:{text.rpartition(':')[2]}"
            module = _import_user_module(module_name, spec)
            cls = module
            for part in attr.split("."):
                cls = getattr(cls, part, None)
                if cls is None:
                    raise ValueError(f"pool {spec!r}: module {module_name!r} has no {attr!r}")
        else:
            names = ", ".join(repr(n) for n in available())
            raise ValueError(
                f"pool {spec!r}: use a short name ({names}) or a Pool2d subclass as "
                "'module:Class' (for example 'my_pooling:LpPool2d' or "
                "'path/to/file.py:LpPool2d'), optionally with keywords: 'lp(norm_type=3)'"
            )
    else:
        raise ValueError(f"pool {spec!r}: expected a string spec or a Pool2d subclass")
    if not (isinstance(cls, type) and issubclass(cls, Pool2d)):
        raise ValueError(
            f"pool {text!r} is {cls!r}, not a subclass of cnnpool.Pool2d: a pooling "
            "strategy subclasses Pool2d and implements pool(windows) and route(windows, pooled)"
        )
    if cls is Pool2d:
        raise ValueError(f"pool {text!r}: Pool2d itself is the abstract base; name a strategy")
    kwargs = _check_keywords(cls, kwargs, text)
    try:
        if registered and not kwargs:
            registry.make_pool(registered, 2, seed=0)
        else:
            _construct(cls, 2, kwargs, seed=0)
    except Exception as exc:  # noqa: BLE001 - the user's constructor may raise anything
        raise ValueError(
            f"pool {text!r}: could not build {cls.__name__} with kernel size 2"
            f"{' and ' + _kw_text(kwargs) if kwargs else ''}: {type(exc).__name__}: {exc}"
        ) from exc
    name = registered or _short_name(cls, kwargs, head is None)
    name = name or str(getattr(cls, "strategy_name", None) or cls.__name__)
    if kwargs:
        name = f"{name}({_kw_text(kwargs)})"
    return Strategy(text, name, cls, origin, registered, tuple(sorted(kwargs.items())))


def resolve_strategies(specs):
    """Resolve several specs; refuse two that are the same strategy or share a name.

    ``"mean"`` and ``"avg"`` build the same class with the same arguments:
    they are one strategy, and comparing it with itself would only report
    noise, so the second is refused with a message naming both.
    """
    strategies = [resolve_strategy(s) for s in specs]
    seen = {}
    for s in strategies:
        key = _identity(s)
        if key in seen:
            raise ValueError(
                f"pool {seen[key].spec!r} and pool {s.spec!r} are the same strategy "
                f"({s.cls.__name__}{'(' + _kw_text(dict(s.kwargs)) + ')' if s.kwargs else ''}): "
                "name it once"
            )
        seen[key] = s
    names = [s.name for s in strategies]
    if len(set(names)) != len(names):
        raise ValueError(f"two strategies share a name: {names}")
    return strategies


def _identity(strategy):
    """``(class, configuration)`` of a strategy's layer: equal means the same strategy.

    The configuration (``Layer.get_config``) of a layer built with kernel
    size 2 sees through spellings: ``mean`` and ``avg``, or ``lp`` and
    ``lp(norm=2)``, build equal layers.
    """
    try:
        config = strategy.make(2, seed=0).get_config()
    except Exception:  # noqa: BLE001 - a user's layer without a usable get_config
        config = dict(strategy.kwargs)
    return (strategy.cls, _hashable(config))


def _short_name(cls, kwargs, given_as_object):
    """The registry's first short name for a built-in class passed as an object."""
    if not given_as_object or kwargs:
        return None
    return registry.pool_name(cls)


def _hashable(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, set):
        return frozenset(_hashable(v) for v in value)
    return value


def _split_arguments(text):
    """``"lp(norm_type=3)"`` -> ``("lp", {"norm_type": 3})``; literals only, never eval."""
    m = _ARGS.match(text)
    if m is None:
        if "(" in text or ")" in text:
            raise ValueError(
                f"pool {text!r}: unbalanced parentheses; write keywords as 'name(key=value, ...)'"
            )
        return text, {}
    head, args = m.group("head").strip(), m.group("args")
    try:
        call = ast.parse(f"f({args})", mode="eval").body
    except SyntaxError as exc:
        raise ValueError(
            f"pool {text!r}: cannot read the arguments {args!r} ({exc.msg}); write them as "
            "key=value with literal values, e.g. 'lp(norm_type=3)'"
        ) from None
    if not isinstance(call, ast.Call) or call.args:
        raise ValueError(
            f"pool {text!r}: arguments must be keywords (key=value), e.g. 'lp(norm_type=3)'; "
            "the kernel size comes from --pool-size"
        )
    kwargs = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise ValueError(f"pool {text!r}: '**' is not accepted; write key=value")
        try:
            kwargs[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise ValueError(
                f"pool {text!r}: the value of {kw.arg!r} is not a literal "
                f"({ast.unparse(kw.value)!r}); use numbers, strings, tuples, lists, dicts, "
                "True, False or None"
            ) from None
    return head, kwargs


def _parameters(cls):
    try:
        return inspect.signature(cls).parameters
    except (TypeError, ValueError):  # a constructor without a signature (e.g. compiled)
        return None


def _check_keywords(cls, kwargs, text):
    """The keywords with aliases applied, refused when the constructor lacks one."""
    params = _parameters(cls)
    if params is None or not kwargs:
        return dict(kwargs)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    out = {}
    for key, value in kwargs.items():
        if key not in params and ALIASES.get(key) in params:
            key = ALIASES[key]
        if key == "kernel_size":
            raise ValueError(
                f"pool {text!r}: the kernel size is the experiment's (--pool-size), the same "
                "for every strategy; leave it out of the arguments"
            )
        if key not in params and not takes_any:
            accepted = [n for n in params if n not in ("self", "kernel_size")]
            raise ValueError(
                f"pool {text!r}: {cls.__name__} takes no argument {key!r}; "
                f"its arguments: {', '.join(accepted) or 'none'}"
            )
        if key in out:
            raise ValueError(f"pool {text!r}: argument {key!r} given twice")
        out[key] = value
    return out


def _construct(cls, kernel_size, kwargs, seed):
    """``cls`` built with the kernel size (by keyword when it can) and ``kwargs``."""
    params = _parameters(cls)
    kwargs = dict(kwargs)
    if params is not None and "rng" in params and "rng" not in kwargs and seed is not None:
        kwargs["rng"] = seed
    if params is not None and "kernel_size" in params:
        return cls(kernel_size=kernel_size, **kwargs)
    return cls(kernel_size, **kwargs)


def _kw_text(kwargs):
    return ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items()))


def _registered_names():
    return set(registry.pool_names())


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
        except BaseException as exc:
            del sys.modules[mod_name]
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise ValueError(f"pool {spec!r}: importing {path!r} {_failure(exc)}") from None
        return module
    added = False
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
        added = True
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.split(".")[0] == exc.name.split(".")[0]:
            raise ValueError(
                f"pool {spec!r}: cannot import module {module_name!r}: {exc}"
            ) from None
        raise ValueError(
            f"pool {spec!r}: importing module {module_name!r} {_failure(exc)}"
        ) from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a user's module may raise anything, even exit
        raise ValueError(
            f"pool {spec!r}: importing module {module_name!r} {_failure(exc)}"
        ) from None
    finally:
        if added:
            sys.path.remove(os.getcwd())


def _failure(exc):
    """How importing a user's module failed, in one line."""
    if isinstance(exc, SystemExit):
        return (
            f"called sys.exit({exc.code!r}) while being imported; a strategy module must "
            "not exit (put script code under 'if __name__ == \"__main__\":')"
        )
    where = ""
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        where = f" (at {os.path.basename(frame.f_code.co_filename)}:{tb.tb_lineno})"
        tb = tb.tb_next
    return f"failed: {type(exc).__name__}: {exc}{where}"
