"""Sequential: composition, summary, predict, and safe, bit-exact save/load."""

import io
import json
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import cnnpool as cp
from cnnpool import model as model_module


def _model(dtype=np.float32):
    """Every built-in layer type, pooling configured away from its defaults."""
    return cp.Sequential(
        cp.Conv2d(2, 4, 3, padding=1, dtype=dtype, rng=0),
        cp.ReLU(),
        cp.MaxPool2d(3, stride=2, padding=1, dilation=1, ceil_mode=True),
        cp.Conv2d(4, 3, (1, 2), stride=(1, 2), bias=False, dtype=dtype, rng=1),
        cp.Tanh(),
        cp.MeanPool2d(
            2,
            stride=1,
            padding=1,
            ceil_mode=False,
            count_include_pad=False,
            divisor_override=3,
            dilation=(1, 2),
        ),
        cp.Flatten(),
        cp.Linear(3 * 7 * 2, 5, dtype=dtype, rng=2),
        cp.Sigmoid(),
    )


def _input(dtype=np.float32, n=3):
    return np.random.default_rng(0).standard_normal((n, 2, 10, 9)).astype(dtype)


def _randomize(model, seed=5):
    """Give every parameter (biases too) values no constructor would."""
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] = rng.standard_normal(p.shape)


# ----------------------------------------------------------- composition
def test_forward_backward_compose_the_layers():
    model = _model(np.float64)
    _randomize(model)
    x = _input(np.float64)
    y = model(x)
    h = x
    for layer in model.layers:
        h = layer(h)
    np.testing.assert_array_equal(y, h)
    assert len(model) == 9 and model[0] is model.layers[0]
    assert list(model) == model.layers


def test_gradcheck_through_the_whole_model():
    model = cp.Sequential(
        cp.Conv2d(1, 2, 3, stride=2, padding=1, dtype=np.float64, rng=0),
        cp.Tanh(),
        cp.MeanPool2d(2),
        cp.Flatten(),
        cp.Linear(8, 3, dtype=np.float64, rng=1),
        cp.Sigmoid(),
    )
    _randomize(model)
    x = np.random.default_rng(1).standard_normal((2, 1, 7, 8))
    assert cp.gradcheck(model, x) < 1e-6


def test_parameters_listed_once_in_order():
    shared = cp.Linear(3, 3, rng=0)
    model = cp.Sequential(shared, cp.ReLU(), shared, cp.Linear(3, 2, bias=False, rng=1))
    params = model.parameters()
    assert params == [shared.weight, shared.bias, model[3].weight]


def test_train_eval_reach_every_layer():
    model = _model()
    assert model.eval() is model
    assert not model.training and not any(layer.training for layer in model)
    model.train()
    assert model.training and all(layer.training for layer in model)


def test_predict_is_batched_argmax_in_eval_mode():
    model = _model()
    _randomize(model)
    x = _input(n=7)
    want = np.argmax(model(x), axis=1)
    model.train()
    got = model.predict(x, batch_size=3)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int64 and model.training
    assert model.eval().predict(x).shape == (7,) and not model.training
    assert model.predict(x[:0]).shape == (0,)


def test_summary_lists_shapes_and_parameter_counts():
    model = _model()
    text = model.summary((3, 2, 10, 9))
    assert isinstance(text, str)
    lines = text.splitlines()
    assert "input" in lines[2] and "(3, 2, 10, 9)" in lines[2]
    assert "Conv2d" in lines[3] and "(3, 4, 10, 9)" in lines[3] and lines[3].endswith(" 76")
    assert "MaxPool2d" in lines[5] and "(3, 4, 6, 5)" in lines[5]
    assert "MeanPool2d" in lines[8] and "(3, 3, 7, 2)" in lines[8]
    assert "Linear" in lines[10] and "(3, 5)" in lines[10] and lines[10].endswith(" 215")
    assert lines[-1] == "total parameters: 315"  # 76 + 3*4*1*2 + (42*5 + 5)
    # The shapes it reports are the shapes the model produces.
    assert model(_input()).shape == (3, 5)


def test_repr_and_bad_layers():
    assert repr(cp.Sequential(cp.ReLU())) == "Sequential(\n  (0): ReLU()\n)"
    with pytest.raises(TypeError, match=r"layers\[1\] must be a cnnpool Layer"):
        cp.Sequential(cp.ReLU(), lambda x: x)


# ----------------------------------------------------------------- save/load
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bit_exact(tmp_path, dtype):
    model = _model(dtype)
    _randomize(model)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = cp.load(path)
    assert repr(loaded) == repr(model)
    assert [type(a) for a in loaded] == [type(b) for b in model]
    for a, b in zip(loaded.parameters(), model.parameters(), strict=True):
        assert a.data.dtype == b.data.dtype and a.data.tobytes() == b.data.tobytes()
        assert a.data is not b.data and not a.grad.any()
    for a, b in zip(loaded, model, strict=True):
        assert a.get_config() == b.get_config()
    x = _input(dtype)
    assert loaded(x).tobytes() == model(x).tobytes()
    # and the loaded model trains like any other
    loaded.backward(np.ones((3, 5), dtype))
    assert loaded[0].weight.grad.any()


def test_pooling_configuration_round_trips(tmp_path):
    pools = [
        cp.MaxPool2d(2),
        cp.MaxPool2d((3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1), ceil_mode=True),
        cp.MeanPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        cp.MeanPool2d((2, 3), divisor_override=7, dilation=(1, 2)),
        cp.AvgPool2d(2),
    ]
    cp.Sequential(*pools).save(tmp_path / "pools.npz")
    loaded = cp.load(tmp_path / "pools.npz")
    x = np.random.default_rng(0).standard_normal((1, 2, 9, 11))
    for a, b in zip(loaded, pools, strict=True):
        assert type(a) is type(b) and a.get_config() == b.get_config()
        assert repr(a) == repr(b)
        np.testing.assert_array_equal(a(x), b(x))


@pytest.mark.parametrize(
    "pool",
    [
        lambda: cp.pooling.LpPool2d(3.0, (2, 3), stride=1, ceil_mode=True),
        lambda: cp.pooling.MixedPool2d(3, stride=2, padding=1, channels=2, dtype=np.float64),
        lambda: cp.pooling.GatedPool2d(2, dtype=np.float64),
        lambda: cp.pooling.AdaptiveMaxPool2d((2, 3)),
        lambda: cp.pooling.AdaptiveMeanPool2d(3),
        lambda: cp.pooling.GlobalMaxPool2d(),
        lambda: cp.pooling.GlobalMeanPool2d(),
        lambda: cp.pooling.StochasticPool2d(2, stride=1, rng=0),
    ],
    ids=lambda f: type(f()).__name__,
)
def test_other_pooling_strategies_round_trip(tmp_path, pool):
    layer = pool()
    _randomize(cp.Sequential(layer))
    cp.Sequential(layer).save(tmp_path / "p.npz")
    loaded = cp.load(tmp_path / "p.npz")[0]
    assert type(loaded) is type(layer) and loaded.get_config() == layer.get_config()
    for a, b in zip(loaded.parameters(), layer.parameters(), strict=True):
        assert a.data.tobytes() == b.data.tobytes()
    x = np.random.default_rng(0).standard_normal((2, 2, 7, 8))
    np.testing.assert_array_equal(loaded.eval()(x), layer.eval()(x))


def test_stochastic_pooling_continues_its_draws_after_save_and_load(tmp_path):
    layer = cp.pooling.StochasticPool2d(2, rng=5)
    x = np.abs(np.random.default_rng(1).standard_normal((2, 3, 6, 6)))
    layer(x)  # advance the stream: the saved state is the current one
    cp.Sequential(layer).save(tmp_path / "s.npz")
    loaded = cp.load(tmp_path / "s.npz")[0]
    for _ in range(3):
        np.testing.assert_array_equal(loaded(x), layer(x))
        np.testing.assert_array_equal(loaded.indices, layer.indices)
    # ... which a layer restarted from the seed does not: it repeats the first draw.
    assert not np.array_equal(cp.pooling.StochasticPool2d(2, rng=5)(x), layer(x))


@pytest.mark.parametrize(
    "state, match",
    [
        ({"bit_generator": "os.system"}, "must name one of NumPy's bit generators"),
        ({"bit_generator": "PCG64", "state": "nonsense"}, "not a valid PCG64 state"),
    ],
)
def test_stochastic_pooling_refuses_a_bad_rng_state(state, match):
    with pytest.raises(ValueError, match=match):
        cp.pooling.StochasticPool2d(2, rng=state)


def test_load_state_copies_into_the_existing_arrays(tmp_path):
    source, target = _model(), _model()
    _randomize(source, 1)
    source.save(tmp_path / "m.npz")
    arrays = [p.data for p in target.parameters()]
    opt = cp.SGD(target.parameters(), lr=0.1)
    assert target.load_state(tmp_path / "m.npz") is target
    for p, a, s in zip(target.parameters(), arrays, source.parameters(), strict=True):
        assert p.data is a
        np.testing.assert_array_equal(p.data, s.data)
    assert opt.params[0] is target[0].weight


def test_load_state_refuses_a_different_architecture(tmp_path):
    _model().save(tmp_path / "m.npz")
    other = _model()
    other.layers[2] = cp.MaxPool2d(2)
    with pytest.raises(ValueError, match="different architecture"):
        other.load_state(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="different architecture"):
        _model(np.float64).load_state(tmp_path / "m.npz")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    model = _model()
    model.save(path)
    before = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"PK half a file")
        raise OSError("disk full")

    monkeypatch.setattr(model_module.np, "savez", broken_savez)
    _randomize(model)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before  # the old model is intact
    assert os.listdir(tmp_path) == ["m.npz"]  # and no temporary file is left


def test_save_uses_the_path_as_given(tmp_path):
    cp.Sequential(cp.ReLU()).save(tmp_path / "weights.bin")
    assert os.listdir(tmp_path) == ["weights.bin"]
    assert len(cp.load(str(tmp_path / "weights.bin"))) == 1


def test_save_follows_a_symlink_to_its_target(tmp_path):
    target_dir = tmp_path / "store"
    target_dir.mkdir()
    target = target_dir / "real.npz"
    link = tmp_path / "link.npz"
    model = _model()
    model.save(target)
    link.symlink_to(target)
    _randomize(model)
    model.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert sorted(os.listdir(target_dir)) == ["real.npz"]  # the new file went there
    for a, b in zip(model.parameters(), cp.load(target).parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data)
    # A dangling link creates its target, as open() would.
    dangling = tmp_path / "dangling.npz"
    dangling.symlink_to(target_dir / "new.npz")
    model.save(dangling)
    assert dangling.is_symlink() and (target_dir / "new.npz").is_file()
    with pytest.raises(IsADirectoryError, match="it is a directory"):
        model.save(target_dir)


def test_save_removes_temporaries_of_killed_saves_only(tmp_path):
    path = tmp_path / "m.npz"
    model = _model()
    model.save(path)
    # A dead process (a child that has exited), this process and a foreign name.
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(child.stdout)
    host = model_module._host()
    stale = tmp_path / f".m.npz.{host}.{dead}.abc_12.tmp"
    live = tmp_path / f".m.npz.{host}.{os.getpid()}.xyz.tmp"
    other_host = tmp_path / f".m.npz.elsewhere.{dead}.abc.tmp"
    other_target = tmp_path / f".n.npz.{host}.{dead}.abc.tmp"
    for f in (stale, live, other_host, other_target):
        f.write_bytes(b"partial")
    model.save(path)
    assert not stale.exists()
    assert live.exists() and other_host.exists() and other_target.exists()
    assert len(cp.load(path)) == len(model)


def test_killed_save_leaves_the_model_intact_and_the_next_save_cleans_up(tmp_path):
    path = tmp_path / "m.npz"
    script = f"""
import os, numpy as np, cnnpool as cp
from cnnpool import model as m
model = cp.Sequential(cp.Linear(400, 300, rng=0))
model.save({str(path)!r})
def killed(file, **arrays):
    file.write(b"PK half a file")
    os._exit(9)  # as kill -9 would: no cleanup runs
m.np.savez = killed
model.save({str(path)!r})
"""
    # cwd: from the repository root, "python -c" would import the unbuilt source folder
    done = subprocess.run(
        [sys.executable, "-c", script], env=dict(os.environ), check=False, cwd=tmp_path
    )
    assert done.returncode == 9
    leftovers = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert len(leftovers) == 1
    model = cp.load(path)  # the old model, intact
    model.save(path)
    assert os.listdir(tmp_path) == ["m.npz"]


def test_a_user_layer_saves_and_loads_once_defined(tmp_path):
    class Scale(cp.Layer):
        def __init__(self, factor=2.0):
            self.factor = factor

        def forward(self, x):
            return x * self.factor

        def backward(self, g):
            return g * self.factor

        def get_config(self):
            return {"factor": self.factor}

    cp.Sequential(Scale(3.5)).save(tmp_path / "s.npz")
    loaded = cp.load(tmp_path / "s.npz")[0]
    assert type(loaded) is Scale and loaded.factor == 3.5


def test_a_file_naming_an_undefined_class_is_refused(tmp_path):
    cp.Sequential(cp.ReLU()).save(tmp_path / "m.npz")
    entries = _entries(tmp_path / "m.npz")
    arch = _arch(entries)
    arch["layers"][0]["type"] = "NeverDefinedLayer"
    entries["__architecture__"] = np.array(json.dumps(arch))
    np.savez(tmp_path / "m.npz", **entries)
    with pytest.raises(
        ValueError,
        match=r"layer 0: unknown type 'NeverDefinedLayer'.*"
        r"never imports.*define the class NeverDefinedLayer",
    ):
        cp.load(tmp_path / "m.npz")


# ------------------------------------------------------- tampered files
def _entries(path):
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _arch(entries):
    return json.loads(str(entries["__architecture__"]))


def _write(path, entries, arch=None):
    if arch is not None:
        entries = dict(entries, __architecture__=np.array(json.dumps(arch)))
    with open(path, "wb") as f:
        np.savez(f, **entries)


@pytest.fixture
def saved(tmp_path):
    model = _model()
    _randomize(model)
    path = tmp_path / "m.npz"
    model.save(path)
    return path


def test_truncated_file(saved):
    data = saved.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 5):
        saved.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a valid cnnpool model file"):
            cp.load(saved)


def test_flipped_byte_in_the_weights(saved):
    data = bytearray(saved.read_bytes())
    entries = _entries(saved)
    weights = entries["0.weight"].tobytes()
    at = bytes(data).index(weights[:16]) + 5
    data[at] ^= 0x40
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not a valid cnnpool model file"):
        cp.load(saved)


def test_weights_replaced_without_updating_the_checksum(saved):
    entries = _entries(saved)
    entries["0.weight"] = entries["0.weight"] + 1
    _write(saved, entries)
    with pytest.raises(ValueError, match=r"'0.weight' does not match its checksum"):
        cp.load(saved)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda a: a["layers"][0].update(type="os.system"), "unknown type 'os.system'"),
        (lambda a: a["layers"][0].update(type="__import__"), "unknown type"),
        (
            lambda a: a["layers"][0]["config"].update(kernel_size=[1, 1]),
            r"built from its config has parameters",
        ),
        (lambda a: a["layers"][0]["config"].update(evil="rm -rf /"), "cannot be built"),
        (lambda a: a["layers"][0]["config"].update(dtype="object"), "cannot be built"),
        (lambda a: a["layers"][2]["config"].update(padding=[4, 4]), "cannot be built"),
        (
            lambda a: a["layers"][0]["params"][0].update(shape=[4, 2, 3, 4]),
            r"has shape \(4, 2, 3, 3\), the architecture says \(4, 2, 3, 4\)",
        ),
        (lambda a: a["layers"][0]["params"][0].update(dtype="float64"), "has dtype float32"),
        (lambda a: a["layers"][0]["params"][0].update(key="9.weight"), r"missing \['9.weight'\]"),
        (lambda a: a["layers"].pop(7), r"unexpected \['7.bias', '7.weight'\]"),
        (lambda a: a.update(version=99), "format version 99 is not supported"),
        (lambda a: a.update(format="something else"), "not a cnnpool.Sequential"),
        (lambda a: a["layers"][1].update(config=[1, 2]), "'config' \\(object\\)"),
        (lambda a: a["layers"][0]["params"][0].update(shape=[-1]), "malformed parameter"),
    ],
)
def test_tampered_architecture(saved, edit, match):
    entries = _entries(saved)
    arch = _arch(entries)
    edit(arch)
    _write(saved, entries, arch)
    with pytest.raises(ValueError, match=match):
        cp.load(saved)


def test_huge_configuration_is_refused_before_allocating(saved):
    """A config asking for a 10**12-element weight fails fast, never allocates it."""
    entries = _entries(saved)
    arch = _arch(entries)
    arch["layers"][0]["config"].update(in_channels=10**6, out_channels=10**6)
    _write(saved, entries, arch)
    with pytest.raises(ValueError, match="more elements than the .* the saved file declares"):
        cp.load(saved)


def test_architecture_that_is_not_json_or_not_text(saved):
    entries = _entries(saved)
    _write(saved, dict(entries, __architecture__=np.array("{'layers': [")))
    with pytest.raises(ValueError, match="not valid JSON"):
        cp.load(saved)
    _write(saved, dict(entries, __architecture__=np.array([1, 2, 3])))
    with pytest.raises(ValueError, match="must be a text entry"):
        cp.load(saved)
    arch = json.dumps(_arch(entries)).replace('"version": 1', '"version": NaN')
    _write(saved, dict(entries, __architecture__=np.array(arch)))
    with pytest.raises(ValueError, match="not valid JSON"):
        cp.load(saved)
    del entries["__architecture__"]
    _write(saved, entries)
    with pytest.raises(ValueError, match="no '__architecture__' entry"):
        cp.load(saved)


class _Boom:
    """Unpickling this would run code: the loader must never get that far."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickled_objects_are_never_loaded(tmp_path, saved, monkeypatch):
    # An object array inside the .npz, or a bare pickle under an .npz name.
    entries = _entries(saved)
    entries["0.weight"] = np.array([_Boom()], dtype=object)
    with open(saved, "wb") as f:
        np.savez(f, **entries)
    bare = tmp_path / "bare.npz"
    bare.write_bytes(pickle.dumps(_Boom()))
    calls = []
    monkeypatch.setattr(os, "system", lambda cmd: calls.append(cmd))
    with pytest.raises(ValueError, match="pickled data"):
        cp.load(saved)
    with pytest.raises(ValueError, match="pickled data"):
        cp.load(bare)
    assert calls == []


def test_other_files_are_refused(tmp_path):
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ValueError, match="single array"):
        cp.load(npy)
    text = tmp_path / "t.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a valid cnnpool model file"):
        cp.load(text)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "not an array")
    (tmp_path / "z.npz").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="not a valid cnnpool model file"):
        cp.load(tmp_path / "z.npz")
    with pytest.raises(FileNotFoundError):
        cp.load(tmp_path / "missing.npz")
