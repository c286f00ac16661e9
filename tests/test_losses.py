"""SoftmaxCrossEntropy and MSELoss: values, gradients, PyTorch, bad labels."""

import numpy as np
import pytest
import reference as ref

import cnnpool as cp
from cnnpool.layer import Layer


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


class _AsLayer(Layer):
    """A loss seen as a layer of its prediction, so that gradcheck can probe it."""

    def __init__(self, loss, target):
        self.loss, self.target = loss, target

    def forward(self, x):
        return np.array([self.loss(x, self.target)])

    def backward(self, grad_output):
        return self.loss.backward() * grad_output[0]


# ------------------------------------------------------- SoftmaxCrossEntropy
def test_cross_entropy_matches_reference_and_gradcheck():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 4)) * 3
    labels = np.array([0, 3, 1, 1, 2, 3])
    loss = cp.SoftmaxCrossEntropy()
    value = loss(logits, labels)
    assert isinstance(value, float)
    want, want_grad = ref.softmax_cross_entropy(logits, labels)
    assert value == pytest.approx(want, rel=1e-13)
    np.testing.assert_allclose(loss.backward(), want_grad, rtol=1e-12, atol=1e-15)
    assert cp.gradcheck(_AsLayer(loss, labels), logits) < 1e-6
    assert cp.gradcheck(_AsLayer(cp.SoftmaxCrossEntropy("sum"), labels), logits) < 1e-6


def test_cross_entropy_worked_number():
    # Two equal logits: p = 1/2 each, loss = log 2, gradient (p - onehot) = +-1/2.
    loss = cp.SoftmaxCrossEntropy()
    assert loss(np.array([[0.0, 0.0]]), np.array([1])) == pytest.approx(np.log(2), rel=1e-15)
    np.testing.assert_allclose(loss.backward(), [[0.5, -0.5]])


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [5e3, 5e3, 0.0]], np.float32)
    loss = cp.SoftmaxCrossEntropy()
    value = loss(logits, np.array([1, 0]))
    # Row 0: lse = 1e4, loss = 1e4 - 0; row 1: lse = 5e3 + log 2, loss = log 2.
    assert value == pytest.approx((1e4 + np.log(2)) / 2, rel=1e-6)
    grad = loss.backward()
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [-0.25, 0.25, 0.0]], atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_matches_torch(dtype, reduction):
    torch = _torch()
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((9, 5)) * 4).astype(dtype)
    labels = rng.integers(0, 5, size=9)
    loss = cp.SoftmaxCrossEntropy(reduction)
    value = loss(logits, labels)
    grad = loss.backward()
    t = torch.tensor(logits, requires_grad=True)
    tv = torch.nn.CrossEntropyLoss(reduction=reduction)(t, torch.from_numpy(labels))
    tv.backward()
    tol = 1e-6 if dtype == np.float32 else 1e-14
    assert value == pytest.approx(tv.item(), rel=tol)
    np.testing.assert_allclose(grad, t.grad.numpy(), rtol=tol, atol=tol)
    assert grad.dtype == dtype


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        (
            np.array([0, 1, 3]),
            ValueError,
            r"in \[0, 3\) for pred of shape \(3, 3\), got values "
            r"from 0 to 3",
        ),
        (np.array([0, -1, 2]), ValueError, r"in \[0, 3\)"),
        (
            np.array([[0], [1], [2]]),
            ValueError,
            r"shape \(N,\) = \(3,\) for pred of shape "
            r"\(3, 3\), got \(3, 1\)",
        ),
        (np.array([0, 1]), ValueError, r"got \(2,\)"),
        (np.array([0.0, 1.0, 2.0]), TypeError, "integer class labels, got dtype float64"),
        (np.array([True, False, True]), TypeError, "integer class labels, got dtype bool"),
    ],
)
def test_cross_entropy_bad_labels(labels, error, match):
    with pytest.raises(error, match=match):
        cp.SoftmaxCrossEntropy()(np.zeros((3, 3)), labels)


def test_cross_entropy_bad_pred_and_order():
    loss = cp.SoftmaxCrossEntropy()
    with pytest.raises(cp.BackwardBeforeForwardError):
        loss.backward()
    with pytest.raises(ValueError, match="pred must be 2-D"):
        loss(np.zeros((3, 3, 1)), np.array([0, 0, 0]))
    with pytest.raises(TypeError, match="float32 or float64"):
        loss(np.zeros((3, 3), np.int32), np.array([0, 0, 0]))
    with pytest.raises(ValueError, match="non-empty"):
        loss(np.zeros((0, 3)), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        cp.SoftmaxCrossEntropy("none")
    assert repr(loss) == "SoftmaxCrossEntropy(reduction='mean')"


# ------------------------------------------------------------------ MSELoss
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("half", [False, True])
def test_mse_values_and_gradcheck(reduction, half):
    rng = np.random.default_rng(2)
    pred, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    loss = cp.MSELoss(reduction, half=half)
    squared = (pred - target) ** 2
    want = (squared.mean() if reduction == "mean" else squared.sum()) * (0.5 if half else 1)
    assert loss(pred, target) == pytest.approx(want, rel=1e-14)
    assert cp.gradcheck(_AsLayer(loss, target), pred) < 1e-6


def test_mse_half_sum_is_the_textbook_cost():
    # 0.5 * (y - t)^2 with y = 4, t = 1: loss 4.5, gradient y - t = 3.
    loss = cp.MSELoss(reduction="sum", half=True)
    assert loss(np.array([[4.0]]), np.array([[1.0]])) == 4.5
    np.testing.assert_array_equal(loss.backward(), [[3.0]])
    assert repr(loss) == "MSELoss(reduction='sum', half=True)"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_matches_torch(dtype, reduction):
    torch = _torch()
    rng = np.random.default_rng(3)
    pred = rng.standard_normal((5, 2, 3)).astype(dtype)
    target = rng.standard_normal((5, 2, 3)).astype(dtype)
    loss = cp.MSELoss(reduction)
    value = loss(pred, target)
    t = torch.tensor(pred, requires_grad=True)
    tv = torch.nn.MSELoss(reduction=reduction)(t, torch.from_numpy(target))
    tv.backward()
    tol = 1e-6 if dtype == np.float32 else 1e-14
    assert value == pytest.approx(tv.item(), rel=tol)
    np.testing.assert_allclose(loss.backward(), t.grad.numpy(), rtol=tol, atol=tol)


def test_mse_targets_and_errors():
    loss = cp.MSELoss()
    # Float targets of the other dtype are converted to pred's.
    assert loss(np.array([1.0, 3.0], np.float32), np.array([1.0, 1.0])) == 2.0
    assert loss.backward().dtype == np.float32
    # Integer targets (class labels by mistake?), lists and masked arrays are refused.
    with pytest.raises(TypeError, match="got dtype int64.*SoftmaxCrossEntropy"):
        loss(np.zeros(2), np.array([1, 1]))
    with pytest.raises(TypeError, match="got list"):
        loss(np.zeros(2), [1.0, 1.0])
    with pytest.raises(TypeError, match="masked array"):
        loss(np.zeros(2), np.ma.masked_array([1.0, 2.0], [True, False]))
    with pytest.raises(TypeError, match="masked array"):
        cp.SoftmaxCrossEntropy()(np.zeros((2, 3)), np.ma.masked_array([1, 2], [True, False]))
    with pytest.raises(ValueError, match=r"shape of pred \(2,\), got \(2, 1\)"):
        loss(np.zeros(2), np.zeros((2, 1)))
    with pytest.raises(TypeError, match="float32 or float64"):
        loss(np.zeros(2), np.zeros(2, complex))
    with pytest.raises(TypeError, match="half must be a bool"):
        cp.MSELoss(half=0.5)
    with pytest.raises(cp.BackwardBeforeForwardError):
        cp.MSELoss().backward()
