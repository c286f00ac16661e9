"""The classic hand-worked network, checked against numbers derived by hand.

6x6 single-channel image -> 3x3 convolution (no padding) -> 4x4 -> 2x2 max
pooling -> flatten to 4 -> linear 4 -> 1 -> cost ``0.5 * (y - t)**2``, with
and without a ReLU after the convolution (as in the NumPy walk-through of
backpropagation through max pooling this project grew from).

Every expected number below is derived in the comments from the explicit
formulas, the way one does it on paper:

* ``L1[i, j] = sum(X[i:i+3, j:j+3] * W1)``
* each 2x2 pooling window keeps its largest entry, the *winner*;
* ``y = W2 . pooled``, ``dL/dy = y - t``;
* ``dL/dW2 = (y - t) * pooled``;
* the gradient of pooled value ``k`` is ``(y - t) * W2[k]``, and it flows
  only to its winner ``(r, c)`` (times ReLU'(L1[r, c]) when there is a
  ReLU), so ``dL/dW1 = sum_k (y - t) * W2[k] * X[r:r+3, c:c+3]`` and
  ``dL/dX`` adds ``(y - t) * W2[k] * W1`` onto the patch ``X[r:r+3, c:c+3]``.
"""

import numpy as np
import pytest

import cnnpool as cp

X = np.array(
    [
        [1, 0, 2, 1, 0, 1],
        [0, 1, 1, 0, 2, 0],
        [2, 1, 0, 1, 1, 3],
        [1, 0, 1, 2, 0, 1],
        [0, 2, 1, 0, 1, 0],
        [1, 1, 0, 3, 0, 2],
    ],
    dtype=np.float64,
)
W1 = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64)  # a Sobel kernel
W2 = np.array([0.5, -0.5, 1.0, 0.5])
T = 1.0

# L1 = X (*) W1, e.g. L1[0, 0] = (1 + 2*0 + 2) - (2 + 2*1 + 0) = -1 (left column
# minus right column of the patch, the middle row counted twice).
L1 = np.array(
    [
        [-1, 1, -1, -2],
        [3, -1, -2, -3],
        [1, -2, 1, 0],
        [-1, 0, 1, 2],
    ],
    dtype=np.float64,
)
# The four 2x2 windows, in row-major order, and where their maximum sits:
#   top-left     [[-1,  1], [ 3, -1]] -> 3 at (1, 0)
#   top-right    [[-1, -2], [-2, -3]] -> -1 at (0, 2)
#   bottom-left  [[ 1, -2], [-1,  0]] -> 1 at (2, 0)
#   bottom-right [[ 1,  0], [ 1,  2]] -> 2 at (3, 3)
WINNERS = [(1, 0), (0, 2), (2, 0), (3, 3)]

# ---- without ReLU
# pooled = [3, -1, 1, 2];  y = 0.5*3 - 0.5*(-1) + 1*1 + 0.5*2 = 4;  L = 0.5*(4 - 1)**2 = 4.5
# dL/dy = 3;  dL/dW2 = 3 * [3, -1, 1, 2] = [9, -3, 3, 6]
# pooled gradients 3 * W2 = [1.5, -1.5, 3, 1.5], so
# dL/dW1 = 1.5*X[1:4, 0:3] - 1.5*X[0:3, 2:5] + 3*X[2:5, 0:3] + 1.5*X[3:6, 3:6]
#        = 1.5*[[0,1,1],[2,1,0],[1,0,1]] - 1.5*[[2,1,0],[1,0,2],[0,1,1]]
#          + 3*[[2,1,0],[1,0,1],[0,2,1]] + 1.5*[[2,0,1],[0,1,0],[3,0,2]]
PLAIN = dict(
    pooled=[3.0, -1.0, 1.0, 2.0],
    y=4.0,
    loss=4.5,
    grad_w2=[9.0, -3.0, 3.0, 6.0],
    grad_w1=[[6.0, 3.0, 3.0], [4.5, 3.0, 0.0], [6.0, 4.5, 6.0]],
    # dL/dX: 1.5*W1 on the patch at (1,0), -1.5*W1 at (0,2), 3*W1 at (2,0), 1.5*W1 at (3,3)
    grad_x=[
        [0.0, 0.0, -1.5, 0.0, 1.5, 0.0],
        [1.5, 0.0, -4.5, 0.0, 3.0, 0.0],
        [6.0, 0.0, -7.5, 0.0, 1.5, 0.0],
        [7.5, 0.0, -7.5, 1.5, 0.0, -1.5],
        [3.0, 0.0, -3.0, 3.0, 0.0, -3.0],
        [0.0, 0.0, 0.0, 1.5, 0.0, -1.5],
    ],
)

# ---- with ReLU after the convolution
# ReLU(L1) = [[0,1,0,0],[3,0,0,0],[1,0,1,0],[0,0,1,2]]; the top-right window is all
# zeros (its first entry (0, 2) wins the tie, as in PyTorch), and ReLU'(-1) = 0 there,
# so that window passes no gradient.  The other winners are unchanged.
# pooled = [3, 0, 1, 2];  y = 1.5 + 0 + 1 + 1 = 3.5;  L = 0.5*(3.5 - 1)**2 = 3.125
# dL/dy = 2.5;  dL/dW2 = 2.5 * [3, 0, 1, 2] = [7.5, 0, 2.5, 5]
# pooled gradients 2.5 * W2 = [1.25, -1.25, 2.5, 1.25], the second one blocked:
# dL/dW1 = 1.25*X[1:4, 0:3] + 2.5*X[2:5, 0:3] + 1.25*X[3:6, 3:6]
RELU = dict(
    pooled=[3.0, 0.0, 1.0, 2.0],
    y=3.5,
    loss=3.125,
    grad_w2=[7.5, 0.0, 2.5, 5.0],
    grad_w1=[[7.5, 3.75, 2.5], [5.0, 2.5, 2.5], [5.0, 5.0, 6.25]],
    grad_x=[
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [1.25, 0.0, -1.25, 0.0, 0.0, 0.0],
        [5.0, 0.0, -5.0, 0.0, 0.0, 0.0],
        [6.25, 0.0, -6.25, 1.25, 0.0, -1.25],
        [2.5, 0.0, -2.5, 2.5, 0.0, -2.5],
        [0.0, 0.0, 0.0, 1.25, 0.0, -1.25],
    ],
)
CASES = [(False, PLAIN), (True, RELU)]
IDS = ["without-relu", "with-relu"]


def _network(relu, dtype=np.float64):
    conv = cp.Conv2d(1, 1, 3, bias=False, dtype=dtype)
    conv.weight.data[0, 0] = W1
    linear = cp.Linear(4, 1, bias=False, dtype=dtype)
    linear.weight.data[0] = W2
    layers = [conv] + ([cp.ReLU()] if relu else []) + [cp.MaxPool2d(2), cp.Flatten(), linear]
    return cp.Sequential(*layers)


def _loss_and_grads(model, x):
    cost = cp.MSELoss(reduction="sum", half=True)
    model.zero_grad()
    value = cost(model(x), np.array([[T]]))
    grad_x = model.backward(cost.backward())
    return value, grad_x


@pytest.mark.parametrize(("relu", "want"), CASES, ids=IDS)
def test_forward_matches_the_hand_derivation(relu, want):
    model = _network(relu)
    x = X[None, None]
    conv_out = model[0](x)
    np.testing.assert_array_equal(conv_out[0, 0], L1)
    pool = model[2 if relu else 1]
    pooled = pool(model[1](conv_out) if relu else conv_out)
    np.testing.assert_array_equal(pooled.reshape(4), want["pooled"])
    np.testing.assert_array_equal(pool.indices.reshape(4), [r * 4 + c for r, c in WINNERS])
    y = model(x)
    assert y.shape == (1, 1) and y[0, 0] == want["y"]


@pytest.mark.parametrize(("relu", "want"), CASES, ids=IDS)
def test_gradients_match_the_hand_derivation(relu, want):
    model = _network(relu)
    value, grad_x = _loss_and_grads(model, X[None, None])
    assert value == want["loss"]
    conv, linear = model[0], model[-1]
    np.testing.assert_allclose(linear.weight.grad[0], want["grad_w2"], rtol=0, atol=1e-14)
    np.testing.assert_allclose(conv.weight.grad[0, 0], want["grad_w1"], rtol=0, atol=1e-14)
    np.testing.assert_allclose(grad_x[0, 0], want["grad_x"], rtol=0, atol=1e-14)


@pytest.mark.parametrize(("relu", "want"), CASES, ids=IDS)
def test_hand_derivation_agrees_with_finite_differences(relu, want):
    model = _network(relu)
    conv, linear = model[0], model[-1]
    x = X[None, None].copy()

    def numeric(array, eps=1e-6):
        out = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            old = array[i]
            array[i] = old + eps
            plus = _loss_and_grads(model, x)[0]
            array[i] = old - eps
            minus = _loss_and_grads(model, x)[0]
            array[i] = old
            out[i] = (plus - minus) / (2 * eps)
        return out

    np.testing.assert_allclose(numeric(linear.weight.data)[0], want["grad_w2"], atol=1e-6)
    np.testing.assert_allclose(numeric(conv.weight.data)[0, 0], want["grad_w1"], atol=1e-6)
    np.testing.assert_allclose(numeric(x)[0, 0], want["grad_x"], atol=1e-6)


@pytest.mark.parametrize(("relu", "want"), CASES, ids=IDS)
def test_torch_agrees_with_the_hand_derivation(relu, want):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    x = torch.tensor(X[None, None], requires_grad=True)
    w1 = torch.tensor(W1[None, None], requires_grad=True)
    w2 = torch.tensor(W2[None], requires_grad=True)
    h = torch.nn.functional.conv2d(x, w1)
    if relu:
        h = torch.relu(h)
    y = torch.nn.functional.max_pool2d(h, 2).flatten(1) @ w2.T
    loss = 0.5 * (y - T) ** 2
    loss.sum().backward()
    assert loss.item() == want["loss"]
    np.testing.assert_allclose(w2.grad.numpy()[0], want["grad_w2"], atol=1e-14)
    np.testing.assert_allclose(w1.grad.numpy()[0, 0], want["grad_w1"], atol=1e-14)
    np.testing.assert_allclose(x.grad.numpy()[0, 0], want["grad_x"], atol=1e-14)


@pytest.mark.parametrize("relu", [False, True], ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_drives_the_loss_toward_zero(relu, dtype):
    # Four images (the seed image, transposed, flipped, rotated) and four targets:
    # 13 weights can fit them, and plain SGD gets there in a few hundred steps.
    images = np.stack([X, X.T, X[::-1], np.rot90(X)])[:, None].astype(dtype)
    targets = np.array([[1.0], [0.0], [-1.0], [0.5]], dtype)
    model = _network(relu, dtype)
    cost = cp.MSELoss(reduction="sum", half=True)
    opt = cp.SGD(model.parameters(), lr=0.01)
    history = []
    for _ in range(400):
        opt.zero_grad()
        history.append(cost(model(images), targets))
        model.backward(cost.backward())
        opt.step()
    assert history[0] > 19
    assert history[100] < 0.2 and history[-1] < 1e-3
    assert history[-1] < history[300] < history[200] < history[100]
