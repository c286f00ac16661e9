"""Pool a scikit-image picture with max and mean pooling, and backpropagate.

Shows the two facts every pooling tutorial draws by hand:

* max pooling sends each output's gradient to the single input that won
  its window (a 2x2 window: one pixel in four receives gradient);
* mean pooling spreads it evenly (every pixel receives 1/4 of it).

Run:  python examples/pool_picture.py [--out pooled.png]
"""

import argparse

import numpy as np

import cnnpool as cp


def load_picture():
    from skimage import data

    img = data.camera().astype(np.float32) / 255.0  # (512, 512) grey, ships with skimage
    return img[None, None]  # NCHW: (1, 1, 512, 512)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", type=int, default=2, help="window size (default 2)")
    parser.add_argument("--out", help="also save a picture of the routes to this PNG")
    args = parser.parse_args(argv)

    x = load_picture()
    print(f"input: skimage.data.camera(), shape {x.shape}, dtype {x.dtype}")
    routes = {}
    # Equal neighbouring pixels tie for a max, where max is not differentiable and
    # finite differences disagree with any choice of winner; a little jitter breaks
    # the ties so the gradient check measures the backward pass itself.
    crop = x[:, :, :8, :8] + 1e-3 * np.random.default_rng(0).standard_normal((1, 1, 8, 8))
    for layer in (cp.MaxPool2d(args.kernel), cp.MeanPool2d(args.kernel)):
        y = layer(x)
        grad_in = layer.backward(np.ones_like(y))  # d(sum of outputs) / d(input)
        routes[type(layer).__name__] = grad_in[0, 0]
        share = np.count_nonzero(grad_in) / grad_in.size
        print(f"\n{layer!r}")
        print(f"  output shape {y.shape}, mean {y.mean():.4f}")
        print(f"  gradient reaches {share:.1%} of input pixels; values {np.unique(grad_in)}")
        print(f"  gradient check (float64, small crop): {cp.gradcheck(layer, crop):.1e}")
    top = routes["MaxPool2d"][:6, :6]
    print("\nmax pooling's gradient on the top-left 6x6 pixels (1 = window winner):")
    print(top.astype(int))
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
        region = (slice(200, 232), slice(230, 262))
        axes[0].imshow(x[0, 0][region], cmap="gray")
        axes[0].set_title("input (32x32 crop)")
        for ax, name in zip(axes[1:], ("MaxPool2d", "MeanPool2d")):
            shown = ax.imshow(routes[name][region], cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"{name}: gradient")
        for ax in axes:
            ax.axis("off")
        fig.colorbar(shown, ax=axes[1:], shrink=0.8, label="d(sum of outputs) / d pixel")
        fig.savefig(args.out, dpi=100)
        print(f"\nsaved {args.out}")


if __name__ == "__main__":
    main()
