"""``Sequential`` models and their safe save/load.

A saved model is one ``.npz`` file (uncompressed ZIP of ``.npy`` arrays):

* ``__architecture__``: a JSON text (stored as a 0-d unicode array) naming
  each layer's class, its constructor arguments (``layer.get_config()``)
  and, for each parameter, its array key, shape, dtype and SHA-256;
* one array per parameter, keyed ``"<layer index>.<parameter name>"``.

Loading never unpickles (``np.load(..., allow_pickle=False)``) and never
imports or evaluates a name found in the file: a layer's class is looked
up by name in :mod:`cnnpool.registry`, which knows every
:class:`~cnnpool.Layer` subclass defined so far (so a file naming a class
that is not defined is refused with a message saying to import or define
it first).  Everything in the file is checked against the architecture
before a single value is used, so a truncated, tampered or mismatched file
raises ``ValueError``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile

import numpy as np

from . import _checks, registry
from ._init import weight_budget
from ._version import __version__
from .layer import Layer

FORMAT = "cnnpool.Sequential"
FORMAT_VERSION = 1
_ARCH_KEY = "__architecture__"


class Sequential(Layer):
    """A chain of layers, each feeding the next.

    Parameters
    ----------
    *layers : Layer
        In order from input to output.

    Attributes
    ----------
    layers : list of Layer

    Examples
    --------
    >>> import numpy as np, cnnpool as cp
    >>> model = cp.Sequential(
    ...     cp.Conv2d(1, 4, 3, rng=0), cp.ReLU(), cp.MaxPool2d(2),
    ...     cp.Flatten(), cp.Linear(4 * 3 * 3, 10, rng=0))
    >>> model(np.zeros((2, 1, 8, 8), np.float32)).shape
    (2, 10)
    """

    def __init__(self, *layers):
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] must be a cnnpool Layer, got {type(layer).__name__}")
        self.layers = list(layers)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        return self.layers[index]

    def __iter__(self):
        return iter(self.layers)

    # ---------------------------------------------------------- forward/backward
    def forward(self, x):
        """Run ``x`` through every layer in order."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_output):
        """Run the gradient back through every layer; returns d(loss)/d(input)."""
        for layer in reversed(self.layers):
            grad_output = layer.backward(grad_output)
        return grad_output

    def parameters(self):
        """Every layer's parameters, in order, each listed once."""
        params, seen = [], set()
        for layer in self.layers:
            for p in layer.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        return params

    def train(self, mode=True):
        super().train(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    def predict(self, x, batch_size=256):
        """Class predictions: the argmax of the output over axis 1, in eval mode.

        Parameters
        ----------
        x : ndarray, shape (N, ...)
        batch_size : int
            Rows per forward pass, to bound memory.

        Returns
        -------
        ndarray of int64, shape (N,)
            The training/eval mode of the model is restored afterwards.
        """
        batch_size = _checks.positive_int(batch_size, "batch_size")
        x = _checks.as_float_array(x, "x")
        if x.ndim < 1:
            raise ValueError(f"x must have a batch axis, got shape {x.shape}")
        was_training = self.training
        self.eval()
        try:
            labels = [
                np.argmax(self.forward(x[start : start + batch_size]), axis=1)
                for start in range(0, x.shape[0], batch_size)
            ]
        finally:
            self.train(was_training)
        if not labels:
            return np.zeros(0, np.int64)
        return np.concatenate(labels).astype(np.int64, copy=False)

    # -------------------------------------------------------------- summary
    def summary(self, input_shape):
        """A table of every layer's output shape and parameter count.

        Parameters
        ----------
        input_shape : tuple of int
            The full input shape, batch axis included, e.g. ``(1, 1, 28, 28)``.

        Returns
        -------
        str
            The table (print it).  Shapes come from each layer's
            ``output_shape`` when it has one; other layers run a forward pass
            on zeros.
        """
        shape = tuple(int(s) for s in input_shape)
        dtype = next((p.data.dtype for p in self.parameters()), np.dtype(np.float32))
        rows = [("#", "layer", "output shape", "params"), ("", "input", str(shape), "")]
        total = 0
        for i, layer in enumerate(self.layers):
            if hasattr(layer, "output_shape"):
                shape = tuple(layer.output_shape(shape))
            else:
                shape = tuple(np.shape(layer.forward(np.zeros(shape, dtype))))
            count = sum(p.data.size for p in layer.parameters())
            total += count
            rows.append((str(i), type(layer).__name__, str(shape), f"{count:,}"))
        widths = [max(len(r[k]) for r in rows) for k in range(4)]
        lines = []
        for j, row in enumerate(rows):
            lines.append(
                f"{row[0]:>{widths[0]}}  {row[1]:<{widths[1]}}  "
                f"{row[2]:<{widths[2]}}  {row[3]:>{widths[3]}}".rstrip()
            )
            if j == 0:
                lines.append("-" * len(lines[0]))
        lines.append("-" * len(lines[0]))
        lines.append(f"total parameters: {total:,}")
        return "\n".join(lines)

    # ------------------------------------------------------------ save / load
    def architecture(self):
        """The JSON-ready description of this model that :meth:`save` writes.

        Parameter entries hold key, shape and dtype (``save`` adds SHA-256).
        """
        layers = []
        for i, layer in enumerate(self.layers):
            cls = type(layer)
            if isinstance(layer, Sequential):
                raise ValueError(
                    f"cannot save layer {i}: a Sequential inside a Sequential is not "
                    f"supported; list its layers in the outer one instead"
                )
            try:
                known = registry.layer_class(cls.__name__)
            except ValueError as exc:
                raise ValueError(f"cannot save layer {i} ({cls.__name__}): {exc}") from None
            if known is not cls and (known.__module__, known.__qualname__) != (
                cls.__module__,
                cls.__qualname__,
            ):
                raise ValueError(
                    f"cannot save layer {i}: its class {cls.__module__}.{cls.__qualname__} "
                    f"shares the name {cls.__name__!r} with the registered class "
                    f"{known.__module__}.{known.__qualname__}, which a load would build "
                    f"instead; rename your class"
                )
            config = layer.get_config()
            try:
                json.dumps(config, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"layer {i} ({cls.__name__}).get_config() is not JSON-serialisable: {config!r}"
                ) from exc
            params = [
                {
                    "name": p.name,
                    "key": f"{i}.{p.name}",
                    "shape": list(p.data.shape),
                    "dtype": str(p.data.dtype),
                }
                for p in layer.parameters()
            ]
            names = [p["name"] for p in params]
            if len(set(names)) != len(names) or "" in names:
                raise ValueError(
                    f"cannot save layer {i} ({cls.__name__}): its parameters need "
                    f"distinct non-empty names, got {names}"
                )
            layers.append({"type": cls.__name__, "config": config, "params": params})
        return {"format": FORMAT, "version": FORMAT_VERSION, "layers": layers}

    def save(self, path):
        """Write the architecture and weights to ``path`` (an ``.npz`` file).

        The file is written under a temporary name in the same directory
        and then renamed over ``path``, so ``path`` always holds either the
        old file or the complete new one.  ``path`` is used exactly as
        given (no ``.npz`` is appended).
        """
        arch = self.architecture()
        arch["cnnpool_version"] = __version__
        arrays = {}
        for layer_arch, layer in zip(arch["layers"], self.layers, strict=True):
            for entry, p in zip(layer_arch["params"], layer.parameters(), strict=True):
                data = np.ascontiguousarray(p.data)
                entry["sha256"] = hashlib.sha256(data.tobytes()).hexdigest()
                arrays[entry["key"]] = data
        arrays[_ARCH_KEY] = np.array(json.dumps(arch, allow_nan=False, sort_keys=True))
        _atomic_savez(os.fspath(path), arrays)

    def load_state(self, path):
        """Load the weights saved at ``path`` into this model, in place.

        The file's architecture must equal this model's (same layer types,
        configurations, parameter shapes and dtypes); values are copied into
        the existing parameter arrays, bit for bit.
        """
        arch, arrays = _read(path)
        mine = json.loads(json.dumps(self.architecture()))  # tuples -> lists, as in a file
        if _strip(arch) != _strip(mine):
            raise ValueError(
                f"{os.fspath(path)!r} holds a different architecture than this model: "
                f"file {_describe(arch)} vs model {_describe(mine)}"
            )
        for layer_arch, layer in zip(arch["layers"], self.layers, strict=True):
            for entry, p in zip(layer_arch["params"], layer.parameters(), strict=True):
                np.copyto(p.data, arrays[entry["key"]], casting="no")
                p.grad = np.zeros_like(p.data)
        return self

    def __repr__(self):
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)" if inner else "Sequential()"


def load(path):
    """Rebuild the :class:`Sequential` saved at ``path`` by :meth:`Sequential.save`.

    Raises
    ------
    ValueError
        If the file is not a readable cnnpool model: truncated or corrupt,
        holding pickled objects, naming a layer class that is not defined
        (or two that share its name), or with
        weights that do not match the architecture or its checksums.
    """
    arch, arrays = _read(path)
    layers = []
    for i, entry in enumerate(arch["layers"]):
        try:
            cls = registry.layer_class(entry["type"])
        except ValueError as exc:
            raise ValueError(f"{os.fspath(path)!r}: layer {i}: {exc}") from None
        declared = sum(math.prod(spec["shape"]) for spec in entry["params"])
        try:
            with weight_budget(declared):
                layer = cls(**entry["config"])
        except (TypeError, ValueError, OverflowError, MemoryError) as exc:
            raise ValueError(
                f"{os.fspath(path)!r}: layer {i} ({entry['type']}) cannot be built from "
                f"config {entry['config']!r}: {exc}"
            ) from exc
        params = layer.parameters()
        expected = [(p["name"], tuple(p["shape"]), p["dtype"]) for p in entry["params"]]
        actual = [(p.name, p.data.shape, str(p.data.dtype)) for p in params]
        if expected != actual:
            raise ValueError(
                f"{os.fspath(path)!r}: layer {i} ({entry['type']}) built from its config "
                f"has parameters {actual}, but the file lists {expected}"
            )
        for p, spec in zip(params, entry["params"], strict=True):
            p.data = arrays[spec["key"]]
            p.grad = np.zeros_like(p.data)
        layers.append(layer)
    return Sequential(*layers)


# ----------------------------------------------------------------- internals
def _atomic_savez(path, arrays):
    """``np.savez`` to a temporary file next to ``path``, then rename it over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file readable by its owner only; give the saved
        # model the mode of the file it replaces, or the usual 0o644.
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _strip(arch):
    """The part of an architecture two models must share to exchange weights."""
    return [
        (
            entry["type"],
            entry["config"],
            [(p["name"], list(p["shape"]), p["dtype"]) for p in entry["params"]],
        )
        for entry in arch["layers"]
    ]


def _describe(arch):
    return (
        "["
        + ", ".join(
            f"{e['type']}({', '.join(f'{k}={v}' for k, v in e['config'].items())})"
            for e in arch["layers"]
        )
        + "]"
    )


def _fail(path, reason):
    return ValueError(f"{path!r} is not a valid cnnpool model file: {reason}")


def _read(path):
    """Open, parse and fully validate a saved model.

    Returns
    -------
    arch : dict
        The architecture, every field checked for type.
    arrays : dict of str to ndarray
        Every parameter array, checked for shape, dtype and SHA-256.
    """
    path = os.fspath(path)
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise _fail(path, "it holds a single array, not an .npz archive")
        with npz:
            files = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise _fail(path, f"it holds pickled data, which is never loaded ({exc})") from exc
        raise _fail(path, f"it could not be read ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, UnicodeError) as exc:
        raise _fail(path, f"it is truncated or corrupt ({type(exc).__name__}: {exc})") from exc

    if _ARCH_KEY not in files:
        raise _fail(path, f"it has no {_ARCH_KEY!r} entry")
    text = files.pop(_ARCH_KEY)
    if text.dtype.kind != "U" or text.shape != ():
        raise _fail(path, f"{_ARCH_KEY!r} must be a text entry")
    try:
        arch = json.loads(str(text), parse_constant=_refuse_constant)
    except ValueError as exc:
        raise _fail(path, f"its architecture is not valid JSON ({exc})") from exc
    _check_arch(path, arch)

    keys = [p["key"] for entry in arch["layers"] for p in entry["params"]]
    if len(set(keys)) != len(keys):
        raise _fail(path, "its architecture lists a parameter key twice")
    missing = sorted(set(keys) - set(files))
    extra = sorted(set(files) - set(keys))
    if missing or extra:
        raise _fail(
            path, f"its arrays do not match its architecture: missing {missing}, unexpected {extra}"
        )
    for entry in arch["layers"]:
        for spec in entry["params"]:
            array = files[spec["key"]]
            if array.dtype not in _checks.FLOAT_DTYPES or str(array.dtype) != spec["dtype"]:
                raise _fail(
                    path,
                    f"array {spec['key']!r} has dtype {array.dtype}, the "
                    f"architecture says {spec['dtype']}",
                )
            if array.shape != tuple(spec["shape"]):
                raise _fail(
                    path,
                    f"array {spec['key']!r} has shape {array.shape}, the "
                    f"architecture says {tuple(spec['shape'])}",
                )
            array = np.ascontiguousarray(array)
            if hashlib.sha256(array.tobytes()).hexdigest() != spec["sha256"]:
                raise _fail(
                    path,
                    f"array {spec['key']!r} does not match its checksum "
                    f"(the file was modified or damaged)",
                )
            if not array.flags.writeable:
                array = array.copy()
            files[spec["key"]] = array
    return arch, files


def _refuse_constant(name):
    raise ValueError(f"{name} is not allowed")


def _check_arch(path, arch):
    """Check every field of a parsed architecture for presence and type."""
    if not isinstance(arch, dict) or arch.get("format") != FORMAT:
        raise _fail(path, f"its architecture is not a {FORMAT} description")
    if arch.get("version") != FORMAT_VERSION:
        raise _fail(
            path,
            f"format version {arch.get('version')!r} is not supported "
            f"(this cnnpool reads version {FORMAT_VERSION})",
        )
    layers = arch.get("layers")
    if not isinstance(layers, list):
        raise _fail(path, "its architecture has no layer list")
    for i, entry in enumerate(layers):
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("type"), str)
            and isinstance(entry.get("config"), dict)
            and isinstance(entry.get("params"), list)
        )
        if not ok:
            raise _fail(
                path, f"layer {i} needs 'type' (text), 'config' (object) and 'params' (list)"
            )
        for spec in entry["params"]:
            ok = (
                isinstance(spec, dict)
                and all(isinstance(spec.get(k), str) for k in ("name", "key", "dtype", "sha256"))
                and isinstance(spec.get("shape"), list)
                and all(
                    isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in spec["shape"]
                )
            )
            if not ok:
                raise _fail(path, f"layer {i} has a malformed parameter entry {spec!r}")
            if math.prod(spec["shape"]) > 2**40:
                raise _fail(path, f"layer {i} lists an absurd parameter shape {spec['shape']}")
