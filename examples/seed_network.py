"""The classic hand-worked network, made runnable: backprop through max pooling by hand.

A 6x6 image, one 3x3 convolution (no padding) to a 4x4 map, 2x2 max
pooling to 2x2, flattened to 4 numbers, one 4 -> 1 linear layer, and the
L2 cost ``C = 0.5 * (y - t)**2``:

    X (6x6) --conv W (3x3)--> L1 (4x4) [--ReLU-->] --max 2x2--> P (2x2) --flat--> p (4)
            --linear WW (4)--> y --> C = 0.5 (y - t)^2

Backward, by the chain rule:

    dC/dy  = y - t
    dC/dWW = (y - t) * p                       (4 numbers)
    dC/dP  = (y - t) * WW, as a 2x2            (one number per window)
    dC/dL1 = dC/dP copied to each window's argmax, 0 elsewhere   (the max pooling step)
             [times ReLU'(L1) = 1 where L1 > 0, with the ReLU]
    dC/dW  = sum over the 4x4 positions of dC/dL1 times the 3x3 patch of X under it
             (a "valid" correlation of X with dC/dL1)

The script prints every one of these matrices computed by hand with NumPy,
checks them against cnnpool's layers, trains the network with SGD to show
the cost falling, and then does the same with mean pooling, where
``dC/dL1`` is ``dC/dP / 4`` spread over every element of each window.

Run:  python examples/seed_network.py [--steps 100] [--lr 0.01]
"""

import argparse

import numpy as np

import cnnpool as cp

np.set_printoptions(precision=4, suppress=True, linewidth=100)

# The worked example's numbers: small and readable, chosen so that each 2x2 window
# of the conv map has a clear winner, and one window is all negative: the ReLU
# turns it into four zeros (a tie, won by the first), and its gradient is blocked.
X = np.array(
    [
        [0, 4, 3, 2, 1, 3],
        [1, 4, 3, 0, 0, 2],
        [1, 0, 3, 0, 1, 4],
        [1, 2, 1, 3, 3, 2],
        [4, 1, 0, 2, 0, 2],
        [4, 2, 2, 0, 1, 1],
    ],
    dtype=np.float64,
)
W = np.array(
    [
        [-0.1, 0.3, 0.3],
        [-0.3, 0.1, -0.3],
        [-0.2, -0.1, 0.2],
    ]
)
WW = np.array([0.5, -0.3, 0.2, 0.4])
TARGET = 3.0


def build(pool, relu):
    """The network as cnnpool layers, float64, with the weights above."""
    conv = cp.Conv2d(1, 1, 3, bias=False, dtype=np.float64)
    conv.weight.data[...] = W
    linear = cp.Linear(4, 1, bias=False, dtype=np.float64)
    linear.weight.data[...] = WW
    layers = [conv] + ([cp.ReLU()] if relu else []) + [pool, cp.Flatten(), linear]
    return cp.Sequential(*layers)


def correlate_valid(x, k):
    """``out[i, j] = sum(x[i:i+kh, j:j+kw] * k)``: what a conv layer computes."""
    kh, kw = k.shape
    oh, ow = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    return np.array([[np.sum(x[i : i + kh, j : j + kw] * k) for j in range(ow)] for i in range(oh)])


def by_hand(kind, relu):
    """Forward and backward of the network in plain NumPy, as on paper."""
    L1 = correlate_valid(X, W)
    A = np.maximum(L1, 0) if relu else L1
    P = np.zeros((2, 2))
    argmax = {}
    for r in range(2):
        for c in range(2):
            window = A[2 * r : 2 * r + 2, 2 * c : 2 * c + 2]
            if kind == "max":
                i = int(np.argmax(window))  # first maximum in row-major order, as PyTorch
                argmax[(r, c)] = (2 * r + i // 2, 2 * c + i % 2)
                P[r, c] = window.flat[i]
            else:
                P[r, c] = window.mean()
    p = P.reshape(-1)
    y = float(p @ WW)
    cost = 0.5 * (y - TARGET) ** 2

    dy = y - TARGET
    dWW = dy * p
    dP = (dy * WW).reshape(2, 2)
    dA = np.zeros((4, 4))
    for r in range(2):
        for c in range(2):
            if kind == "max":
                dA[argmax[(r, c)]] = dP[r, c]  # winner takes all
            else:
                dA[2 * r : 2 * r + 2, 2 * c : 2 * c + 2] = dP[r, c] / 4  # even spread
    dL1 = dA * (L1 > 0) if relu else dA
    dW = correlate_valid(X, dL1)
    return dict(
        L1=L1, A=A, P=P, argmax=argmax, y=y, cost=cost, dy=dy, dWW=dWW, dP=dP, dA=dA, dL1=dL1, dW=dW
    )


def show(kind, relu):
    title = f"{kind} pooling, {'with' if relu else 'without'} ReLU"
    print("=" * 72)
    print(title)
    print("=" * 72)
    h = by_hand(kind, relu)
    print("L1 = X conv W (4x4):\n", h["L1"])
    if relu:
        print("ReLU(L1):\n", h["A"])
    print(f"{kind}-pooled P (2x2):\n", h["P"])
    if kind == "max":
        coords = ", ".join(f"window {rc} -> {pos}" for rc, pos in h["argmax"].items())
        print("argmax coordinates (row, col) in the 4x4 map:", coords)
        for (r, c), pos in h["argmax"].items():
            window = h["A"][2 * r : 2 * r + 2, 2 * c : 2 * c + 2]
            if relu and np.all(window == 0):
                print(
                    f"  window {(r, c)} is all zeros after the ReLU: a tie, won by its first "
                    f"element {pos}; ReLU'(L1) = 0 there, so no gradient gets through it"
                )
    print(f"y = P.flat @ WW = {h['y']:.6f}   target {TARGET}   cost 0.5(y-t)^2 = {h['cost']:.6f}")
    print("\nbackward")
    print(f"dC/dy = y - t = {h['dy']:.6f}")
    print("dC/dWW = (y - t) * P.flat:", h["dWW"])
    print("dC/dP = (y - t) * WW as 2x2:\n", h["dP"])
    where = "copied to each window's argmax" if kind == "max" else "divided by 4, spread evenly"
    print(f"dC/d(pool input), dC/dP {where} (4x4):\n", h["dA"])
    if relu:
        print("dC/dL1 = that * (L1 > 0):\n", h["dL1"])
    print("dC/dW = X correlated with dC/dL1 (3x3):\n", h["dW"])

    lib = _library(kind, relu)
    diffs = {name: float(np.max(np.abs(lib[name] - h[name]))) for name in ("dWW", "dP", "dA", "dW")}
    diffs["y"] = abs(lib["y"] - h["y"])
    worst = max(diffs.values())
    print(f"\ncnnpool's layers give the same numbers: largest difference {worst:.1e}")
    if worst > 1e-12:
        raise SystemExit(f"MISMATCH between the hand derivation and cnnpool: {diffs}")
    if kind == "max":
        idx = lib["indices"]
        coords = [(int(i) // 4, int(i) % 4) for i in idx.reshape(-1)]
        print("MaxPool2d.indices as (row, col):", coords)


def _library(kind, relu):
    pool = cp.MaxPool2d(2) if kind == "max" else cp.MeanPool2d(2)
    model = build(pool, relu)
    loss = cp.MSELoss(reduction="sum", half=True)
    y = model(X[None, None])
    loss(y, np.array([[TARGET]]))
    g = loss.backward()
    grads = []
    for layer in reversed(model.layers):  # walk back layer by layer, keeping each gradient
        g = layer.backward(g)
        grads.append((layer, g))
    got = {layer: gr for layer, gr in grads}
    flat = model.layers[-2]
    return dict(
        y=float(y[0, 0]),
        dWW=model.layers[-1].weight.grad[0].copy(),
        dP=got[flat][0, 0],  # gradient leaving Flatten = dC/dP
        dA=got[pool][0, 0],  # gradient leaving the pool = dC/d(pool input)
        dW=model.layers[0].weight.grad[0, 0].copy(),
        indices=pool.indices if kind == "max" else None,
    )


def train(kind, relu, steps, lr):
    pool = cp.MaxPool2d(2) if kind == "max" else cp.MeanPool2d(2)
    model = build(pool, relu)
    loss = cp.MSELoss(reduction="sum", half=True)
    opt = cp.SGD(model.parameters(), lr=lr)
    x, t = X[None, None], np.array([[TARGET]])
    history = []
    for _ in range(steps):
        opt.zero_grad()
        cost = loss(model(x), t)
        model.backward(loss.backward())
        opt.step()
        history.append(cost)
    final = loss(model(x), t)
    marks = sorted({0, 1, 2, 5, 10, 20, 50, 100, 200, 500, steps - 1} & set(range(steps)))
    trail = ", ".join(f"{i}: {history[i]:.2e}" for i in marks)
    print(f"SGD lr {lr:g}, {steps} steps, cost by step: {trail}; after training {final:.2e}")
    if steps >= 20 and not final < history[0]:
        raise SystemExit("the cost did not fall")
    return history


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="SGD steps (default 100)")
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    args = parser.parse_args(argv)
    print("X (6x6):\n", X)
    print("W (3x3):\n", W)
    print("WW (4):", WW, "  target t =", TARGET)
    for kind in ("max", "mean"):
        for relu in (False, True):
            show(kind, relu)
            train(kind, relu, args.steps, args.lr)
            print()


if __name__ == "__main__":
    main()
