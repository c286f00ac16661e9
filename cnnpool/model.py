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

A file from a stranger is bad input, and reading it costs no more than
its honest content would: the ZIP directory and each array's ``.npy``
header are checked against the architecture before any data is read;
members must be stored uncompressed (as :meth:`Sequential.save` writes
them), so every byte allocated for an array is a byte of the file; the
architecture text is limited to :data:`MAX_ARCHITECTURE_BYTES`; and
every configuration value that sizes an allocation in a layer's
constructor is checked against the parameters the file declares before
the layer is built.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
import tempfile
import zipfile

import numpy as np

from . import _checks, registry
from ._init import weight_budget
from ._version import __version__
from .conv import Conv2d
from .layer import Layer
from .linear import Linear
from .pooling.strategies.mixed import GatedPool2d, MixedPool2d

FORMAT = "cnnpool.Sequential"
FORMAT_VERSION = 1
_ARCH_KEY = "__architecture__"

#: Largest ``__architecture__`` entry :func:`load` reads, in bytes of its
#: ``.npy`` member (4 bytes a character): about 2,000 layers of the
#: built-in kinds, and a bound on what parsing a hostile text can cost.
MAX_ARCHITECTURE_BYTES = 4 << 20

# A real architecture nests about 7 deep (the description, its layer list, a
# layer, its config, StochasticPool2d's generator state and the lists in it).
# Deeper text is refused before it is parsed: the parser recurses.  The count
# includes brackets inside strings, hence the generous bound.
_MAX_NESTING = 64


# What each built-in constructor allocates, from the config alone (values
# of the wrong type count as 1: the constructor then refuses them itself).
def _size(value):
    return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else 1


def _area(config, key):
    """Elements of a window given as an int or one int per axis (any rank)."""
    value = config.get(key, 1)
    if isinstance(value, (list, tuple)) and 1 <= len(value) <= 3:
        return math.prod(_size(v) for v in value)
    return _size(value) ** 2


def _bias(config, out):
    return 0 if config.get("bias", True) is False else out


def _conv_allocates(config):
    out = _size(config.get("out_channels"))
    fan_in = _size(config.get("in_channels"))
    groups = config.get("groups", 1)
    # A valid groups divides in_channels; any other value the constructor
    # refuses before it allocates: count nothing then, and let it say why.
    if isinstance(groups, numbers.Integral) and not isinstance(groups, bool) and groups >= 1:
        fan_in //= int(groups)
    else:
        fan_in = 0
    weight = out * fan_in * _area(config, "kernel_size")
    return weight + _bias(config, out)


def _linear_allocates(config):
    out = _size(config.get("out_features"))
    return out * _size(config.get("in_features")) + _bias(config, out)


def _mixed_allocates(config):
    channels = config.get("channels")
    return 1 if channels is None else _size(channels)


def _gated_allocates(config):
    return _area(config, "kernel_size")


# The built-in layers whose constructors allocate by their config, through
# the same door a user's layer takes (see cnnpool.registry.register).
registry.register(Conv2d, allocates=_conv_allocates)
registry.register(Linear, allocates=_linear_allocates)
registry.register(MixedPool2d, allocates=_mixed_allocates)
registry.register(GatedPool2d, allocates=_gated_allocates)


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
        given (no ``.npz`` is appended).  A symbolic link is followed: the
        file it points to is replaced and the link stays a link.

        A save killed mid-write (``kill -9``, power loss) leaves its
        temporary file, ``.<name>.<host>.<pid>.<random>.tmp``, next to
        ``path``; the next save to the same ``path`` from the same host
        deletes those of processes that no longer run.
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
                p.grad = np.zeros(p.data.shape, p.data.dtype)
        return self

    def __repr__(self):
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)" if inner else "Sequential()"


def load(path):
    """Rebuild the :class:`Sequential` saved at ``path`` by :meth:`Sequential.save`.

    Files from strangers are safe to load: nothing is unpickled, imported
    or evaluated, and a hostile file is refused before it costs more memory
    than its honest content would (see the module notes).

    Raises
    ------
    ValueError
        If the file is not a readable cnnpool model: truncated or corrupt,
        compressed, holding pickled objects, naming a layer class that is
        not defined (or two that share its name), with a configuration that
        asks for more memory than the parameters it declares, or with
        weights that do not match the architecture or its checksums.
    OSError
        If ``path`` cannot be opened at all (``FileNotFoundError``,
        ``IsADirectoryError``, ``PermissionError``): the file is not at fault.
    """
    arch, arrays = _read(path)
    layers = []
    for i, entry in enumerate(arch["layers"]):
        try:
            cls = registry.layer_class(entry["type"])
        except ValueError as exc:
            raise ValueError(f"{os.fspath(path)!r}: layer {i}: {exc}") from None
        declared = sum(math.prod(spec["shape"]) for spec in entry["params"])
        allocates = registry.allocates_of(cls)
        if allocates is not None:
            try:
                wanted = int(allocates(entry["config"]))
            except Exception as exc:
                raise ValueError(
                    f"{os.fspath(path)!r}: layer {i} ({entry['type']}) has a config "
                    f"whose size cannot be worked out ({entry['config']!r}): {exc}"
                ) from exc
            if wanted > max(declared, 1):
                raise ValueError(
                    f"{os.fspath(path)!r}: layer {i} ({entry['type']}) has config "
                    f"{entry['config']!r}, which needs {wanted:,} array elements: more "
                    f"elements than the {declared:,} the saved file declares for this layer"
                )
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
            p.grad = np.zeros(p.data.shape, p.data.dtype)
        layers.append(layer)
    return Sequential(*layers)


# ----------------------------------------------------------------- internals
def _atomic_savez(path, arrays):
    """``np.savez`` to a temporary file next to ``path``, then rename it over ``path``.

    A symbolic link is followed (its target is replaced); stale temporary
    files of earlier saves to the same target, killed mid-write on this
    host, are deleted first.
    """
    path = os.path.realpath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save the model to {path!r}: it is a directory")
    directory, name = os.path.split(path)
    prefix = f".{name}.{_host()}."
    _remove_stale_temporaries(directory, prefix)
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", suffix=".tmp", dir=directory)
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


def _host():
    """The host part of temporary names: a process id means something on its own
    host only (another host may save to the same network directory)."""
    import socket  # here, not at import: it costs more than the rest of this module

    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"


def _remove_stale_temporaries(directory, prefix):
    """Delete ``<prefix><pid>.<random>.tmp`` files whose process no longer runs.

    Only names this module makes for the same target on this host match,
    and only those of dead processes are touched: a save running at the
    same moment in another process keeps its file.
    """
    pattern = re.compile(re.escape(prefix) + r"([0-9]+)\.[A-Za-z0-9_]+\.tmp")
    try:
        entries = [e.name for e in os.scandir(directory) if e.name.startswith(prefix)]
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry)
        if match is None or _process_alive(int(match.group(1))):
            continue
        try:
            os.unlink(os.path.join(directory, entry))
        except OSError:
            pass


def _process_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists under another user, or cannot tell: keep the file
    return True


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


_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
_READ_CHUNK = 1 << 20


def _read(path):
    """Open, parse and fully validate a saved model.

    Everything about an array (name, dtype, shape, size) is checked from
    the ZIP directory and its ``.npy`` header before its data is read, and
    the data is read straight into its final array (hashed on the way).

    Returns
    -------
    arch : dict
        The architecture, every field checked for type.
    arrays : dict of str to ndarray
        Every parameter array, checked for shape, dtype and SHA-256.
    """
    path = os.fspath(path)
    # FileNotFoundError, IsADirectoryError, PermissionError: raised as they are.
    with open(path, "rb") as f:
        head = f.read(len(_NPY_MAGIC))
        if not head:
            raise _fail(path, "it is empty")
        if head.startswith(_NPY_MAGIC):
            raise _fail(path, "it holds a single array, not an .npz archive")
        if head[:1] == b"\x80":
            raise _fail(path, "it holds pickled data, which is never loaded")
        if not head.startswith(_ZIP_MAGIC):
            raise _fail(path, "it is not a ZIP (.npz) archive")
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as archive:
                return _read_archive(path, archive, os.fstat(f.fileno()).st_size)
        except (ValueError, MemoryError):
            raise  # our own refusals, and a machine too small for an honest model
        except Exception as exc:
            # zipfile's BadZipFile, EOFError, NotImplementedError (an unknown
            # ZIP version), struct.error, ...: a damaged archive, whatever the parser.
            raise _fail(path, f"it is truncated or corrupt ({type(exc).__name__}: {exc})") from exc


def _read_archive(path, archive, file_size):
    members = {}
    stored = 0
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise _fail(path, f"its member {info.filename!r} is not an .npy array")
        key = info.filename[: -len(".npy")]
        if key in members:
            raise _fail(path, f"it holds the member {info.filename!r} twice")
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            raise _fail(
                path,
                f"its member {info.filename!r} is compressed or encrypted; cnnpool "
                f"saves uncompressed archives and reads no others",
            )
        stored += info.file_size
        if info.compress_size != info.file_size or stored > file_size:
            raise _fail(
                path,
                f"its member {info.filename!r} declares {info.file_size:,} bytes, more "
                f"than the {file_size:,}-byte file holds",
            )
        members[key] = info
    if _ARCH_KEY not in members:
        raise _fail(path, f"it has no {_ARCH_KEY!r} entry")

    info = members.pop(_ARCH_KEY)
    if info.file_size > MAX_ARCHITECTURE_BYTES:
        raise _fail(
            path,
            f"its {_ARCH_KEY!r} entry has {info.file_size:,} bytes, more than the "
            f"{MAX_ARCHITECTURE_BYTES:,} cnnpool reads",
        )
    with archive.open(info) as member:
        shape, fortran, dtype = _npy_header(path, member, info)
        if dtype.kind != "U" or shape != ():
            raise _fail(path, f"{_ARCH_KEY!r} must be a text entry")
        raw = _read_exactly(path, member, info, dtype.itemsize)
    text = str(np.frombuffer(raw, dtype)[0]) if dtype.itemsize else ""
    depth = _nesting(text)
    if depth > _MAX_NESTING:
        raise _fail(
            path, f"its architecture is nested {depth} levels deep (at most {_MAX_NESTING})"
        )
    try:
        arch = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise _fail(path, f"its architecture is not valid JSON ({exc})") from exc
    _check_arch(path, arch)

    keys = [p["key"] for entry in arch["layers"] for p in entry["params"]]
    if len(set(keys)) != len(keys):
        raise _fail(path, "its architecture lists a parameter key twice")
    missing = sorted(set(keys) - set(members))
    extra = sorted(set(members) - set(keys))
    for key in extra:  # say so when a stray member is a pickle (headers only)
        with archive.open(members[key]) as member:
            _npy_header(path, member, members[key])
    if missing or extra:
        raise _fail(
            path, f"its arrays do not match its architecture: missing {missing}, unexpected {extra}"
        )
    arrays = {}
    for entry in arch["layers"]:
        for spec in entry["params"]:
            arrays[spec["key"]] = _read_param(path, archive, members[spec["key"]], spec)
    return arch, arrays


def _npy_header(path, member, info):
    """``(shape, fortran_order, dtype)`` from the ``.npy`` header of a member."""
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f".npy format version {version} is not supported")
    except Exception as exc:  # ValueError, SyntaxError, tokenize.TokenError, ...
        if isinstance(exc, MemoryError):
            raise
        raise _fail(
            path,
            f"its member {info.filename!r} has a bad .npy header ({type(exc).__name__}: {exc})",
        ) from exc
    if dtype.hasobject:
        raise _fail(
            path,
            f"its member {info.filename!r} holds pickled data (dtype {dtype}), "
            f"which is never loaded",
        )
    size = math.prod(shape) * dtype.itemsize
    if size != info.file_size - member.tell():
        raise _fail(
            path,
            f"its member {info.filename!r} declares shape {shape} of {dtype} "
            f"({size:,} bytes) but holds {info.file_size - member.tell():,} bytes of data",
        )
    return shape, fortran, dtype


def _read_exactly(path, member, info, size, into=None, digest=None):
    """Read ``size`` bytes of a member, into ``into`` (a byte view) if given."""
    chunks = []
    done = 0
    while done < size:
        chunk = member.read(min(_READ_CHUNK, size - done))
        if not chunk:
            raise _fail(path, f"its member {info.filename!r} ends early")
        if into is not None:
            into[done : done + len(chunk)] = chunk
        else:
            chunks.append(chunk)
        if digest is not None:
            digest.update(chunk)
        done += len(chunk)
    return b"".join(chunks)


def _read_param(path, archive, info, spec):
    """One parameter array, checked against its entry in the architecture."""
    key = spec["key"]
    with archive.open(info) as member:
        shape, fortran, dtype = _npy_header(path, member, info)
        if dtype not in _checks.FLOAT_DTYPES or str(dtype) != spec["dtype"]:
            raise _fail(
                path,
                f"array {key!r} has dtype {dtype}, the architecture says {spec['dtype']}",
            )
        if shape != tuple(spec["shape"]):
            raise _fail(
                path,
                f"array {key!r} has shape {shape}, the architecture says {tuple(spec['shape'])}",
            )
        array = np.empty(shape, dtype, order="F" if fortran else "C")
        digest = None if fortran else hashlib.sha256()
        view = memoryview(array.reshape(-1, order="A").view(np.uint8))
        _read_exactly(path, member, info, array.nbytes, view, digest)
    if fortran:
        array = np.ascontiguousarray(array)
        digest = hashlib.sha256(array.tobytes())
    if digest.hexdigest() != spec["sha256"]:
        raise _fail(
            path,
            f"array {key!r} does not match its checksum (the file was modified or damaged)",
        )
    return array


def _nesting(text):
    """How deeply ``[`` and ``{`` nest in ``text`` (an upper bound: strings are not skipped)."""
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int32)
    steps -= np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


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
