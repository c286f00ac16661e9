"""SGD and Adam: update rules against a NumPy reference and against torch.optim."""

import numpy as np
import pytest
import reference as ref

import cnnpool as cp

SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.5, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9, weight_decay=0.1, nesterov=True),
]
ADAM_CASES = [
    dict(lr=1e-2),
    dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05),
]


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return [
        cp.Parameter(rng.standard_normal((3, 4)), "a"),
        cp.Parameter(rng.standard_normal(5), "b"),
    ]


def _set_grads(params, step):
    rng = np.random.default_rng(100 + step)
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape)


@pytest.mark.parametrize("kwargs", SGD_CASES, ids=str)
def test_sgd_matches_reference(kwargs):
    params = _params()
    want = [p.data.copy() for p in params]
    bufs = [None] * len(params)
    opt = cp.SGD(params, **kwargs)
    for step in range(3):
        _set_grads(params, step)
        for i, p in enumerate(params):
            want[i], bufs[i] = ref.sgd_step(want[i], p.grad, bufs[i], **kwargs)
        opt.step()
        for p, w in zip(params, want, strict=True):
            np.testing.assert_allclose(p.data, w, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("kwargs", ADAM_CASES, ids=str)
def test_adam_matches_reference(kwargs):
    params = _params(1)
    want = [p.data.copy() for p in params]
    m = [np.zeros_like(w) for w in want]
    v = [np.zeros_like(w) for w in want]
    opt = cp.Adam(params, **kwargs)
    for step in range(1, 4):
        _set_grads(params, step)
        for i, p in enumerate(params):
            want[i], m[i], v[i] = ref.adam_step(want[i], p.grad, m[i], v[i], step, **kwargs)
        opt.step()
        for p, w in zip(params, want, strict=True):
            np.testing.assert_allclose(p.data, w, rtol=1e-12, atol=1e-15)


def test_first_adam_step_moves_each_weight_by_lr():
    # Step 1: m_hat = g and v_hat = g*g, so every weight moves by lr * sign(g).
    p = cp.Parameter(np.zeros(4))
    p.grad[...] = [3.0, -0.5, 1e-3, -200.0]
    cp.Adam([p], lr=0.1, eps=0).step()
    np.testing.assert_allclose(p.data, [-0.1, 0.1, -0.1, 0.1], rtol=1e-15)


# -------------------------------------------------- torch.optim on a small CNN
def _twin_models(dtype):
    torch = _torch()
    model = cp.Sequential(
        cp.Conv2d(2, 3, 3, padding=1, dtype=dtype, rng=0),
        cp.ReLU(),
        cp.MaxPool2d(2),
        cp.Flatten(),
        cp.Linear(3 * 3 * 3, 4, dtype=dtype, rng=1),
    )
    rng = np.random.default_rng(2)
    for p in model.parameters():
        if p.name == "bias":
            p.data[...] = rng.standard_normal(p.shape) * 0.1
    tmodel = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(27, 4),
    ).to(getattr(torch, str(np.dtype(dtype))))
    with torch.no_grad():
        for tp, p in zip(tmodel.parameters(), model.parameters(), strict=True):
            tp.copy_(torch.from_numpy(p.data))
    return model, tmodel


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("SGD", c) for c in SGD_CASES] + [("Adam", c) for c in ADAM_CASES],
    ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()),
)
def test_steps_of_a_small_cnn_match_torch(dtype, name, kwargs):
    torch = _torch()
    model, tmodel = _twin_models(dtype)
    opt = getattr(cp, name)(model.parameters(), **kwargs)
    topt = getattr(torch.optim, name)(tmodel.parameters(), **kwargs)
    loss, tloss = cp.SoftmaxCrossEntropy(), torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(3)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    for _ in range(3):  # the first step, then steps that use the momentum/moment buffers
        x = rng.standard_normal((5, 2, 6, 6)).astype(dtype)
        labels = rng.integers(0, 4, size=5)
        opt.zero_grad()
        value = loss(model(x), labels)
        model.backward(loss.backward())
        opt.step()
        topt.zero_grad()
        tvalue = tloss(tmodel(torch.from_numpy(x)), torch.from_numpy(labels))
        tvalue.backward()
        topt.step()
        assert value == pytest.approx(tvalue.item(), rel=tol["rtol"])
        for p, tp in zip(model.parameters(), tmodel.parameters(), strict=True):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), **tol)


# ------------------------------------------------------------ the contract
def test_zero_grad_and_shared_parameters():
    p = cp.Parameter(np.ones(3))
    p.grad[...] = 2.0
    opt = cp.SGD([p, p], lr=0.5)  # listed twice, updated once
    opt.step()
    np.testing.assert_array_equal(p.data, [0.0, 0.0, 0.0])
    opt.zero_grad()
    assert not p.grad.any()
    assert "SGD(1 parameters, lr=0.5" in repr(opt)


def test_step_updates_data_in_place():
    p = cp.Parameter(np.ones(3, np.float32))
    data = p.data
    p.grad[...] = 1.0
    cp.Adam([p]).step()
    assert p.data is data and p.data.dtype == np.float32


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda ps: cp.SGD(ps, lr=-1), ValueError, "lr must be >= 0"),
        (lambda ps: cp.SGD(ps, lr=0.1, nesterov=True), ValueError, "requires momentum > 0"),
        (lambda ps: cp.SGD(ps, lr=0.1, momentum=-0.5), ValueError, "momentum must be >= 0"),
        (lambda ps: cp.SGD(ps, lr="0.1"), TypeError, "lr must be a real number"),
        (lambda ps: cp.Adam(ps, betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
        (lambda ps: cp.Adam(ps, betas=0.9), TypeError, "betas must be a pair"),
        (lambda ps: cp.Adam(ps, eps=-1e-8), ValueError, "eps must be >= 0"),
        (lambda ps: cp.SGD([], lr=0.1), ValueError, "empty parameter list"),
        (lambda ps: cp.SGD([np.zeros(3)], lr=0.1), TypeError, r"params\[0\] must be a cnnpool"),
        (lambda ps: cp.SGD(ps[0], lr=0.1), TypeError, "single Parameter"),
    ],
)
def test_bad_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build(_params())
