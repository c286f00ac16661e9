"""Model files from strangers: ``cp.load`` refuses them cheaply and clearly.

Every hostile file here is small; the loader must refuse it with a
``ValueError`` (never a ``RecursionError`` or ``MemoryError``) before
allocating more than its honest content would need.  Peak memory is
measured in a fresh process (``ru_maxrss``), all files in one run.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnpool as cp
import cnnpool.model


def _model():
    return cp.Sequential(
        cp.Conv2d(1, 2, 3, rng=0), cp.ReLU(), cp.MixedPool2d(2, channels=2), cp.Flatten()
    )


def _npy(array=None, header=None, data=b""):
    """The bytes of an .npy file: of ``array``, or a forged ``header`` then ``data``."""
    buf = io.BytesIO()
    if array is not None:
        np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    else:
        np.lib.format.write_array_header_1_0(buf, header)
        buf.write(data)
    return buf.getvalue()


def _zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members:
            z.writestr(name, data)


def _members(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def _arch_member(arch):
    return ("__architecture__.npy", _npy(np.array(json.dumps(arch))))


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "m.npz"
    _model().save(path)
    return path


def _arch(path):
    with np.load(path) as npz:
        return json.loads(str(npz["__architecture__"]))


# ---------------------------------------------------------- the files


def deeply_nested(path):
    _zip(path, [("__architecture__.npy", _npy(np.array("[" * 100_000)))])


def huge_npy_header(path, saved):
    """A valid architecture, but 0.weight's header declares 10**12 elements."""
    members = dict(_members(saved))
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**12,)}
    members["0.weight.npy"] = _npy(header=header, data=b"\0" * 64)
    _zip(path, members.items())


def deflated_bomb_without_architecture(path, megabytes):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("x.npy", "w", force_zip64=True) as member:
            zeros = bytes(1 << 20)
            for _ in range(megabytes):
                member.write(zeros)


def huge_mixed_channels(path, saved):
    """MixedPool2d(channels=300_000_000) in the config, one alpha in the file."""
    arch = _arch(saved)
    arch["layers"][2]["config"]["channels"] = 300_000_000
    members = dict(_members(saved))
    members.update([_arch_member(arch)])
    _zip(path, members.items())


def member_larger_than_the_file(path, saved):
    """A stored member whose directory entry claims 1 GB."""
    _zip(path, _members(saved))
    data = bytearray(path.read_bytes())
    # Patch the central directory's sizes of the first member.
    at = data.index(b"PK\x01\x02")
    data[at + 20 : at + 28] = (1 << 30).to_bytes(4, "little") * 2
    path.write_bytes(bytes(data))


# ---------------------------------------------------------- one by one


def test_deep_nesting_is_a_value_error(tmp_path):
    path = tmp_path / "deep.npz"
    deeply_nested(path)
    with pytest.raises(ValueError, match="nested 100000 levels deep"):
        cp.load(path)


def test_moderately_deep_nesting_is_refused_too(tmp_path, saved):
    arch = _arch(saved)
    arch["layers"][0]["config"]["evil"] = json.loads("[" * 100 + "]" * 100)
    path = tmp_path / "deep.npz"
    _zip(path, [*dict(_members(saved), **dict([_arch_member(arch)])).items()])
    with pytest.raises(ValueError, match="nested 10[0-9] levels deep"):
        cp.load(path)


def test_array_header_declaring_a_huge_shape(tmp_path, saved):
    path = tmp_path / "huge.npz"
    huge_npy_header(path, saved)
    with pytest.raises(ValueError, match=r"'0.weight.npy' declares shape \(1000000000000,\)"):
        cp.load(path)


def test_bare_npy_with_a_huge_header_is_not_read(tmp_path):
    path = tmp_path / "bare.npz"
    path.write_bytes(_npy(header={"descr": "<f8", "fortran_order": False, "shape": (10**12,)}))
    with pytest.raises(ValueError, match="single array"):
        cp.load(path)


def test_compressed_members_are_refused_before_decompression(tmp_path, saved):
    path = tmp_path / "bomb.npz"
    deflated_bomb_without_architecture(path, 4)
    with pytest.raises(ValueError, match="'x.npy' is compressed"):
        cp.load(path)
    # A real model, compressed: refused too (save never compresses).
    entries = dict(np.load(saved))
    np.savez_compressed(path, **entries)
    with pytest.raises(ValueError, match="is compressed or encrypted"):
        cp.load(path)


def test_config_that_sizes_a_huge_allocation(tmp_path, saved):
    path = tmp_path / "mixed.npz"
    huge_mixed_channels(path, saved)
    with pytest.raises(ValueError, match=r"MixedPool2d.*300,000,000 array elements: more"):
        cp.load(path)


@pytest.mark.parametrize(
    ("layer", "key", "value"),
    [
        (0, "in_channels", 10**5),
        (0, "kernel_size", [3000, 3000]),
        (2, "channels", 3),
    ],
)
def test_every_sizing_config_value_is_checked(tmp_path, saved, layer, key, value):
    arch = _arch(saved)
    arch["layers"][layer]["config"][key] = value
    path = tmp_path / "m2.npz"
    _zip(path, dict(_members(saved), **dict([_arch_member(arch)])).items())
    with pytest.raises(ValueError, match="the saved file declares|built from its config"):
        cp.load(path)


def test_gated_and_linear_configs_are_checked(tmp_path):
    model = cp.Sequential(cp.GatedPool2d(2), cp.Flatten(), cp.Linear(4, 2, rng=0))
    path = tmp_path / "g.npz"
    model.save(path)
    for layer, key, value in ((0, "kernel_size", [40000, 40000]), (2, "out_features", 10**9)):
        arch = _arch(path)
        arch["layers"][layer]["config"][key] = value
        bad = tmp_path / "bad.npz"
        _zip(bad, dict(_members(path), **dict([_arch_member(arch)])).items())
        with pytest.raises(ValueError, match="more elements than the"):
            cp.load(bad)


def test_registered_layers_can_declare_what_they_allocate(tmp_path):
    class Table(cp.Layer):
        def __init__(self, rows):
            self.rows = rows
            self.table = cp.Parameter(np.zeros(rows), "table")

        def parameters(self):
            return [self.table]

        def get_config(self):
            return {"rows": self.rows}

    cp.register(Table, allocates=lambda config: config["rows"])
    try:
        path = tmp_path / "t.npz"
        cp.Sequential(Table(3)).save(path)
        assert cp.load(path)[0].rows == 3
        arch = _arch(path)
        arch["layers"][0]["config"]["rows"] = 10**10
        _zip(path, dict(_members(path), **dict([_arch_member(arch)])).items())
        with pytest.raises(ValueError, match="10,000,000,000 array elements"):
            cp.load(path)
    finally:
        cp.unregister(Table)
    assert cnnpool.registry.allocates_of(Table) is None
    with pytest.raises(TypeError, match="allocates must be a callable"):
        cp.register(Table, allocates=3)


def test_member_declared_larger_than_the_file(tmp_path, saved):
    path = tmp_path / "big.npz"
    member_larger_than_the_file(path, saved)
    with pytest.raises(ValueError, match="declares 1,073,741,824 bytes, more than the"):
        cp.load(path)


def test_duplicate_and_foreign_members(tmp_path, saved):
    members = _members(saved)
    path = tmp_path / "dup.npz"
    with pytest.warns(UserWarning, match="Duplicate name"):
        _zip(path, members + members[:1])
    with pytest.raises(ValueError, match="twice"):
        cp.load(path)
    _zip(path, members + [("notes.txt", b"hi")])
    with pytest.raises(ValueError, match="'notes.txt' is not an .npy array"):
        cp.load(path)


def test_damage_any_parser_trips_on_is_a_value_error(tmp_path, saved):
    # Found by mutation fuzzing: zipfile's NotImplementedError for an unknown
    # ZIP version, and the tokenizer's error inside numpy's header parser.
    data = bytearray(saved.read_bytes())
    at = data.index(b"PK\x01\x02")
    data[at + 6] = 255  # "version needed to extract": 25.5
    path = tmp_path / "v.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="truncated or corrupt .NotImplementedError"):
        cp.load(path)
    members = dict(_members(saved))
    header = b"\x93NUMPY\x01\x00" + (16).to_bytes(2, "little") + b"{'descr': ((    \n"
    members["0.weight.npy"] = header
    _zip(path, members.items())
    with pytest.raises(ValueError, match="'0.weight.npy' has a bad .npy header"):
        cp.load(path)


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.npz"
    _model().save(path)
    return path.read_bytes()


@given(
    cut=st.integers(0, 1 << 16),
    edits=st.lists(
        st.tuples(st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8)), max_size=4
    ),
)
def test_mutated_files_load_or_raise_value_error(tmp_path_factory, good_bytes, cut, edits):
    """Bytes overwritten or the file cut anywhere: a ValueError or a model, nothing else."""
    data = bytearray(good_bytes)
    for at, chunk in edits:
        at %= len(data)
        data[at : at + len(chunk)] = chunk
    path = tmp_path_factory.getbasetemp() / "mutated.npz"
    path.write_bytes(bytes(data[: max(1, cut % (len(data) + 1))]))
    try:
        model = cp.load(path)
    except ValueError:
        return
    assert isinstance(model, cp.Sequential)


def test_architecture_larger_than_the_limit(tmp_path, monkeypatch, saved):
    monkeypatch.setattr(cnnpool.model, "MAX_ARCHITECTURE_BYTES", 1000)
    with pytest.raises(ValueError, match="more than the 1,000 cnnpool reads"):
        cp.load(saved)


def test_paths_that_cannot_be_opened_raise_the_os_error(tmp_path, monkeypatch, saved):
    with pytest.raises(IsADirectoryError):
        cp.load(tmp_path)
    with pytest.raises(FileNotFoundError):
        cp.load(tmp_path / "missing.npz")

    def denied(path, mode="r", *args, **kwargs):
        raise PermissionError(13, "Permission denied", os.fspath(path))

    # Running as root, chmod 000 would not stop the read: deny it at open().
    monkeypatch.setattr(cnnpool.model, "open", denied, raising=False)
    with pytest.raises(PermissionError, match="Permission denied"):
        cp.load(saved)


def test_honest_files_still_load_bit_exact(tmp_path, saved):
    model = cp.load(saved)
    again = tmp_path / "again.npz"
    model.save(again)
    for a, b in zip(model.parameters(), cp.load(again).parameters(), strict=True):
        assert a.data.dtype == b.data.dtype and a.data.flags.writeable
        np.testing.assert_array_equal(a.data, b.data)


def test_fortran_ordered_arrays_are_read(tmp_path, saved):
    members = dict(_members(saved))
    with np.load(saved) as npz:
        weight = npz["0.weight"]
    members["0.weight.npy"] = _npy(np.asfortranarray(weight))
    path = tmp_path / "f.npz"
    _zip(path, members.items())
    np.testing.assert_array_equal(cp.load(path)[0].weight.data, weight)


# ---------------------------------------------------------- peak memory

_PROBE = textwrap.dedent(
    """
    import resource, sys
    import cnnpool as cp
    def peak():  # KiB
        try:  # Linux: the high-water mark, which clear_refs can reset
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
        except (OSError, StopIteration):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:  # start from the current resident set, not the peak of the imports
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    base = peak()
    for path in sys.argv[1:]:
        before = peak()
        try:
            cp.load(path)
        except Exception as exc:  # the test reports which
            outcome = type(exc).__name__
        else:
            outcome = "loaded"
        print(outcome, peak() - base, peak() - before, path)
    """
)


@pytest.fixture(scope="module")
def peak_growth(tmp_path_factory):
    """Load every file in one fresh process: ``{name: (outcome, KiB since start,
    KiB during this load)}``; the hostile files first, then an honest model."""
    where = tmp_path_factory.mktemp("peak")
    saved = where / "m.npz"
    _model().save(saved)
    files = {}
    for name, make in (
        ("deep", deeply_nested),
        ("header", lambda p: huge_npy_header(p, saved)),
        ("bomb", lambda p: deflated_bomb_without_architecture(p, 160)),
        ("mixed", lambda p: huge_mixed_channels(p, saved)),
        ("big", lambda p: member_larger_than_the_file(p, saved)),
        ("honest", lambda p: cp.Sequential(cp.Linear(2048, 3072, rng=0)).save(p)),
    ):
        files[name] = where / f"{name}.npz"
        make(files[name])
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *map(str, files.values())],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=where,  # not the repository root, whose unbuilt cnnpool/ would shadow the installed one
    )
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.strip().split("\n")]
    sizes = {name: path.stat().st_size for name, path in files.items()}
    return {
        name: (outcome, int(total), int(own), sizes[name])
        for name, (outcome, total, own, _) in zip(files, lines, strict=True)
    }


def test_hostile_files_stay_under_100_mb(peak_growth):
    for name in ("deep", "header", "bomb", "mixed", "big"):
        outcome, total, _, size = peak_growth[name]
        assert size < 2 << 20  # small files, all of them
        assert outcome == "ValueError", (name, outcome)
        assert total / 1024 < 100, f"{name}: peak memory grew by {total / 1024:.0f} MiB"


def test_an_honest_model_loads_at_about_its_own_size(peak_growth):
    # No random weights drawn only to be overwritten, no second copy of the
    # file's arrays, gradients left to calloc (untouched pages): about 1x of
    # its 24 MiB (the code before issue 16 took 4x).
    outcome, _, own, _ = peak_growth["honest"]
    assert outcome == "loaded"
    assert own / 1024 < 1.25 * 24 + 8, f"loading 24 MiB of weights grew the peak by {own} KiB"
