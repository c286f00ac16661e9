"""``Conv2d``: 2-D convolution, direct or as im2col + one batched GEMM.

Unit stride (the common case) on a build with AVX2 and FMA runs the direct
kernels of ``_direct.pyx`` where they are the faster (see
``Conv2d._direct_wins``): the zero-padded input is read in place by
register-blocked loops, with no unrolled copy of it (see that module).
Every other case is im2col + GEMM:

Forward: unroll every receptive field of ``x`` into a column (compiled
``im2col``), then ``out[n] = W @ cols[n]`` for all images in one
``np.matmul`` call, which runs BLAS (for output planes of fewer than
256 pixels, one GEMM ``W @ [cols[0] cols[1] ...]`` over the whole batch
instead).  Backward, with ``g`` the output gradient:

* ``grad_bias   = sum over n, oh, ow of g``
* ``grad_weight = sum over n of g[n] @ cols[n].T``  (the saved columns)
* ``grad_x      = col2im(W.T @ g[n])``  (compiled; overlapping receptive
  fields accumulate)

As in PyTorch (and every deep-learning library), "convolution" is
cross-correlation: the kernel is not flipped.
"""

from __future__ import annotations

import numpy as np

from .. import _checks
from .._buffers import OutputBuffers
from .._init import he_normal, make_rng
from .._parallel import threads_for
from ..layer import BackwardBeforeForwardError, Layer, Parameter
from ..registry import register
from . import _direct, _im2col

_MARGIN = _direct.MARGIN

# When the direct kernels beat im2col + BLAS, measured per instruction set
# (forward + backward, one thread; see docs/performance.rst).  With AVX2,
# up to 432 taps per output (C*kh*kw): past it a register block's weights
# and input rows no longer fit in L1 and OpenBLAS's packed GEMM wins.  With
# AVX-512 the direct kernels win at any tap count measured (up to 2304) on
# rows of at least one full vector (16 floats); on narrower rows most lanes
# are idle and only small tap counts stay direct.
_DIRECT_MAX_TAPS = 432
_DIRECT_WIDE_ROW = 16 if _direct.AVX512 else None

# im2col + GEMM with fewer output pixels per image than this runs one GEMM
# over the whole batch (columns of all images side by side) instead of one
# per image: a GEMM of a few columns reads the whole weight matrix for
# little work (512 channels on 2x2 maps: 4 columns per image).
_MERGE_BELOW_PIXELS = 256

# Backward turns gradient columns into the input gradient this many bytes of
# columns at a time, so that col2im reads them from cache.
_CHUNK_BYTES = 1 << 20


def conv_output_size(size, kernel, stride, padding, dilation):
    """Output length along one axis: ``(L + 2p - d(k-1) - 1) // s + 1`` (may be < 1)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@register
class Conv2d(Layer):
    """2-D convolution over NCHW arrays, as ``torch.nn.Conv2d`` (groups=1).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels ``C`` of the input and ``O`` of the output.
    kernel_size : int or (int, int)
        ``(kh, kw)``.
    stride : int or (int, int)
        Step between receptive fields.
    padding : int or (int, int)
        Zeros added on both sides of each spatial axis.
    dilation : int or (int, int)
        Spacing between kernel taps.
    bias : bool
        Add a learnable bias per output channel.
    dtype : float32 or float64
        Dtype of the parameters; inputs must have the same dtype.
    rng : None, int or numpy.random.Generator
        Source of the initial weights: He (Kaiming) normal,
        ``N(0, 2 / (C*kh*kw))``, and a zero bias.  A seed makes the layer
        reproducible.  (PyTorch's default initialisation differs; copy
        weights across to compare the two.)

    Attributes
    ----------
    weight : Parameter, shape (O, C, kh, kw)
    bias : Parameter of shape (O,), or None

    Notes
    -----
    Input ``(N, C, H, W)``, output ``(N, O, OH, OW)`` with
    ``OH = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1`` (likewise ``OW``).

    Two implementations give the same numbers to rounding.  With unit stride
    and ``padding <= dilation*(kernel - 1)`` on a build with AVX2 and FMA
    (the default ``-march=native`` build on such a CPU) the direct kernels
    run when they are the faster: up to 432 taps per output (``C*kh*kw``:
    48 input channels with a 3x3 kernel), and with AVX-512 at any tap count
    on output rows of at least 16 pixels.  Forward keeps one zero-padded
    copy of the input, ``N*C*(H+2ph)*(W+2pw)`` elements, for the weight
    gradient.  Otherwise (strides, 1x1 kernels, many channels on small
    maps, other CPUs) it is im2col + GEMM: forward keeps the unrolled
    columns, ``N*C*kh*kw*OH*OW`` elements (plus a row of ones that carries
    the bias through the GEMM), and backward a scratch buffer for the
    gradient columns of a chunk of images (about 1 MiB).  Output planes of
    fewer than 256 pixels put the columns of all images side by side, so
    that one GEMM serves the batch.  Either way the buffers are reused by
    the next call of the same shape, and backward uses the weights of the
    last forward.

    Examples
    --------
    >>> import numpy as np, cnnpool as cp
    >>> conv = cp.Conv2d(3, 8, 3, padding=1, rng=0)
    >>> conv(np.zeros((2, 3, 16, 16), np.float32)).shape
    (2, 8, 16, 16)
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        bias=True,
        dtype=np.float32,
        rng=None,
    ):
        self.in_channels = _checks.positive_int(in_channels, "in_channels")
        self.out_channels = _checks.positive_int(out_channels, "out_channels")
        self.kernel_size = _checks.pair(kernel_size, "kernel_size")
        self.stride = _checks.pair(stride, "stride")
        self.padding = _checks.pair(padding, "padding", minimum=0)
        self.dilation = _checks.pair(dilation, "dilation")
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be a bool, got {bias!r}")
        dtype = _checks.float_dtype(dtype)
        generator = make_rng(rng)
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        self.weight = Parameter(
            he_normal((self.out_channels, self.in_channels, kh, kw), fan_in, dtype, generator),
            "weight",
        )
        self.bias = Parameter(np.zeros(self.out_channels, dtype), "bias") if bias else None
        # A 1x1 kernel with unit stride and no padding reads each pixel once:
        # the columns are the input itself, so im2col and col2im are skipped.
        self._pointwise = (
            self.kernel_size == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0)
        )
        self._geometry_args = self.kernel_size + self.stride + self.padding + self.dilation
        # The direct kernels need unit stride, and padding of at most
        # dilation*(kernel-1) (the input gradient pads the output gradient by
        # the difference); 1x1 kernels keep the plain GEMM, which BLAS does well.
        self._direct = (
            _direct.SIMD
            and self.stride == (1, 1)
            and not self._pointwise
            and all(
                p <= d * (k - 1) for p, d, k in zip(self.padding, self.dilation, self.kernel_size)
            )
        )
        self._taps = self.in_channels * kh * kw
        self._out_sizes = {}
        self._cols = None  # reusable im2col buffer (the one the last forward filled)
        self._grad_cols = None  # backward's scratch: gradient columns of one chunk
        self._plan = None  # the direct path's _DirectPlan for the last input shape
        self._outputs = OutputBuffers()  # large results, reused once the caller drops them
        self._saved = None

    # ------------------------------------------------------------------ geometry
    def _out_size(self, x_shape):
        """``(OH, OW)`` for input shape ``x_shape``; raise when the kernel does not fit."""
        key = x_shape[2:]
        size = self._out_sizes.get(key)
        if size is None:
            size = tuple(
                conv_output_size(length, k, s, p, d)
                for length, k, s, p, d in zip(
                    key, self.kernel_size, self.stride, self.padding, self.dilation, strict=True
                )
            )
            if min(size) < 1:
                raise ValueError(
                    f"Conv2d kernel (kernel_size={self.kernel_size}, dilation="
                    f"{self.dilation}) is larger than the padded input: x of shape "
                    f"{tuple(x_shape)} with padding={self.padding} gives output "
                    f"(OH, OW) = {size}"
                )
            if len(self._out_sizes) > 32:  # a model sees few sizes; bound the cache anyway
                self._out_sizes.clear()
            self._out_sizes[key] = size
        return size

    def output_shape(self, input_shape):
        """Output shape ``(N, O, OH, OW)`` for an input of shape ``(N, C, H, W)``."""
        input_shape = tuple(input_shape)
        if len(input_shape) != 4 or input_shape[1] != self.in_channels:
            raise ValueError(
                f"input_shape must be (N, {self.in_channels}, H, W) for Conv2d with "
                f"in_channels={self.in_channels}, got {input_shape}"
            )
        return (input_shape[0], self.out_channels) + self._out_size(input_shape)

    # ---------------------------------------------------------- forward/backward
    def forward(self, x):
        """Convolve ``x`` (N, C, H, W); returns ``(N, O, OH, OW)`` of the same dtype."""
        given = x
        x = _checks.as_float_array(x, "x", 4)
        weight = self.weight.data
        if x.dtype != weight.dtype:
            raise TypeError(
                f"x has dtype {x.dtype} (shape {x.shape}) but the Conv2d weights are "
                f"{weight.dtype}; convert x with x.astype(np.{weight.dtype}) or build "
                f"the layer with dtype=np.{x.dtype}"
            )
        n, c, h, w = x.shape
        if c != self.in_channels:
            raise ValueError(
                f"x has {c} channels (shape {x.shape}) but Conv2d expects "
                f"in_channels={self.in_channels}"
            )
        if self._direct and self._direct_wins(x.shape):
            return self._forward_direct(x)
        out_h, out_w = self._out_size(x.shape)
        # A copy: backward must use these weights even if an optimizer steps first.
        w2 = weight.reshape(self.out_channels, weight[0].size).copy()
        bias = self.bias
        if self._pointwise:
            # The columns are x itself: ours, since the caller may edit x next
            # (the previous copy is dropped first, so that its memory is reused).
            self._saved = None
            cols = _checks.owned(x, given, self._outputs).reshape(n, c, h * w)
            out = np.matmul(w2, cols)  # (N, O, H*W): one BLAS GEMM per image, in C
            if bias is not None:
                out += bias.data[:, None]
            self._saved = (x.shape, cols, w2, False)
            return out.reshape(n, self.out_channels, out_h, out_w)
        # With a bias, cols gets one more row, all ones, and the weight matrix
        # the bias as one more column: the GEMM then adds the bias, and in
        # backward the same GEMM that gives grad_weight gives grad_bias, which
        # saves two passes over the output.
        k = w2.shape[1]
        ones = bias is not None
        pixels = out_h * out_w
        merged = n > 1 and pixels < _MERGE_BELOW_PIXELS
        # Merged, the columns of image i are columns [i*P, (i+1)*P) of one
        # (k + ones, N*P) matrix; im2col writes them through a (N, k + ones, P)
        # view of it (rows of stride N*P, each run of P contiguous).
        shape = (k + ones, n * pixels) if merged else (n, k + ones, pixels)
        cols = self._cols
        if cols is None or cols.shape != shape or cols.dtype != x.dtype:
            cols = self._cols = np.empty(shape, x.dtype)
            if ones:
                cols[..., k, :] = 1  # im2col writes rows [0, k) only: this row stays ones
        if merged:
            _im2col.im2col(
                x,
                cols.reshape(k + ones, n, pixels).transpose(1, 0, 2),
                *self._geometry_args,
                out_h,
                out_w,
                1,
            )
            wmat = np.concatenate((w2, bias.data[:, None]), axis=1) if ones else w2
            out = self._outputs.empty("out", (n, self.out_channels, out_h, out_w), x.dtype)
            prod = np.matmul(wmat, cols)  # (O, N*P): one GEMM for the batch
            np.copyto(
                out.reshape(n, self.out_channels, pixels),
                prod.reshape(self.out_channels, n, pixels).transpose(1, 0, 2),
            )
            self._saved = ("merged", x.shape, cols, w2, ones)
            return out
        # im2col runs on the calling thread: the GEMMs are the parallel part
        # (BLAS threads), and an OpenMP team left spinning after a short parallel
        # im2col fights them for the cores (W3 forward on two threads: 24 ms
        # with a parallel im2col, 17 ms serial, 17 ms on one thread).
        _im2col.im2col(x, cols, *self._geometry_args, out_h, out_w, 1)
        wmat = np.concatenate((w2, bias.data[:, None]), axis=1) if ones else w2
        out = np.matmul(wmat, cols)  # (N, O, OH*OW): one BLAS GEMM per image, in C
        self._saved = (x.shape, cols, w2, ones)
        return out.reshape(n, self.out_channels, out_h, out_w)

    def backward(self, grad_output):
        """Gradient w.r.t. ``x``; adds the weight and bias gradients into ``.grad``."""
        if self._saved is None:
            raise BackwardBeforeForwardError("Conv2d.backward called before forward")
        if self._saved[0] == "direct":
            return self._backward_direct(grad_output)
        if self._saved[0] == "merged":
            return self._backward_merged(grad_output)
        x_shape, cols, w2, ones = self._saved
        n = x_shape[0]
        out_shape = (n, self.out_channels) + self._out_size(x_shape)
        grad = _checks.grad_like(grad_output, out_shape, cols.dtype)
        g = grad.reshape(n, self.out_channels, out_shape[2] * out_shape[3])
        k = w2.shape[1]
        grad_w = np.matmul(g, cols.transpose(0, 2, 1))  # (N, O, k + ones)
        grad_w = grad_w[0] if n == 1 else grad_w.sum(axis=0)
        if ones:
            self.bias.grad += grad_w[:, k]
            grad_w = grad_w[:, :k]
        elif self.bias is not None:
            self.bias.grad += g.sum(axis=(0, 2))
        self.weight.grad += grad_w.reshape(self.weight.grad.shape)
        if self._pointwise:
            return np.matmul(w2.T, g).reshape(x_shape)
        # grad_x = col2im(W.T @ g[n]) a chunk of images at a time: each chunk's
        # gradient columns (written whole by the GEMM) are consumed by col2im
        # while still in cache, instead of a round trip through memory of an
        # array as large as cols.  The scratch buffer is kept between calls.
        grad_x = np.empty(x_shape, cols.dtype)  # col2im zeroes each plane itself
        size = k * g.shape[2]  # gradient columns of one image
        chunk = n if n * size * cols.itemsize <= _CHUNK_BYTES else self._chunk(n, size, cols)
        shape = (chunk, k, g.shape[2])
        grad_cols = self._grad_cols
        if grad_cols is None or grad_cols.shape != shape or grad_cols.dtype != cols.dtype:
            grad_cols = self._grad_cols = np.empty(shape, cols.dtype)
        args = self._geometry_args + out_shape[2:]
        # Serial col2im, for the reason given in forward (10x slower on two
        # cores between the chunks' BLAS-threaded GEMMs when it was parallel).
        threads = 1
        if chunk >= n:  # small batches: one GEMM, one col2im
            np.matmul(w2.T, g, out=grad_cols)
            _im2col.col2im(grad_cols, grad_x, *args, threads)
            return grad_x
        w2t = w2.T
        for i in range(0, n, chunk):
            j = min(i + chunk, n)
            buf = grad_cols[: j - i]
            np.matmul(w2t, g[i:j], out=buf)
            _im2col.col2im(buf, grad_x[i:j], *args, threads)
        return grad_x

    def _backward_merged(self, grad_output):
        """Backward of the merged im2col + GEMM forward (small output planes)."""
        _, x_shape, cols, w2, ones = self._saved
        n, o = x_shape[0], self.out_channels
        out_shape = (n, o) + self._out_size(x_shape)
        grad = _checks.grad_like(grad_output, out_shape, cols.dtype)
        pixels = out_shape[2] * out_shape[3]
        k = w2.shape[1]
        # The output gradient as one (O, N*P) matrix, the layout of the columns.
        gm = np.ascontiguousarray(grad.reshape(n, o, pixels).transpose(1, 0, 2))
        gm = gm.reshape(o, n * pixels)
        grad_w = gm @ cols.T  # (O, k + ones): one GEMM over the batch
        if ones:
            self.bias.grad += grad_w[:, k]
            grad_w = grad_w[:, :k]
        elif self.bias is not None:
            self.bias.grad += gm.sum(axis=1)
        self.weight.grad += grad_w.reshape(self.weight.grad.shape)
        grad_x = self._outputs.empty("grad_x", x_shape, cols.dtype)  # col2im zeroes it
        chunk = self._chunk(n, k * pixels, cols)
        shape = (k, chunk * pixels)
        grad_cols = self._grad_cols
        if grad_cols is None or grad_cols.shape != shape or grad_cols.dtype != cols.dtype:
            grad_cols = self._grad_cols = np.empty(shape, cols.dtype)
        args = self._geometry_args + out_shape[2:]
        w2t = w2.T
        for i in range(0, n, chunk):
            j = min(i + chunk, n)
            buf = grad_cols[:, : (j - i) * pixels]
            np.matmul(w2t, gm[:, i * pixels : j * pixels], out=buf)
            view = buf.reshape(k, j - i, pixels).transpose(1, 0, 2)
            _im2col.col2im(view, grad_x[i:j], *args, 1)
        return grad_x

    # ------------------------------------------------------------- direct path
    def _direct_wins(self, x_shape):
        """Whether the direct kernels beat im2col + BLAS on ``x_shape`` (per build)."""
        if self._taps <= _DIRECT_MAX_TAPS:
            return True
        if _DIRECT_WIDE_ROW is None:
            return False
        return self._out_size(x_shape)[1] >= _DIRECT_WIDE_ROW

    def _forward_direct(self, x):
        plan = self._plan
        if plan is None or plan.x_shape != x.shape or plan.dtype != x.dtype:
            plan = self._plan = _DirectPlan(self, x.shape, x.dtype)
        out = self._outputs.empty("out", plan.out_shape, plan.dtype)
        weight = self.weight.data
        bias = None if self.bias is None else self.bias.data
        # Our own padded copy of x goes to plan.xp: backward reads it, so
        # later edits of x change nothing.
        threads = threads_for(plan.x_shape[0], plan.forward_work)
        _direct.forward(x, plan.xp, weight, bias, out, *plan.pads, threads)
        # Backward uses the weights of this call even if an optimizer steps first.
        self._saved = ("direct", plan, weight.copy())
        return out

    def _backward_direct(self, grad_output):
        _, plan, weight = self._saved
        g = _checks.grad_like(grad_output, plan.out_shape, plan.dtype)
        threads = threads_for(plan.x_shape[0], plan.backward_work)
        plan.backward_scratch(self.out_channels, self.kernel_size, threads)
        grad_x = self._outputs.empty("grad_x", plan.x_shape, plan.dtype)
        bias_grad = None if self.bias is None else self.bias.grad
        _direct.backward(
            plan.xp,
            g,
            weight,
            grad_x,
            self.weight.grad,
            bias_grad,
            plan.scratch,
            *plan.pads,
            threads,
        )
        return grad_x

    @staticmethod
    def _chunk(n, size, cols):
        """Images per backward chunk: about ``_CHUNK_BYTES`` of gradient columns
        (``size`` elements per image)."""
        return max(1, min(n, _CHUNK_BYTES // max(size * cols.itemsize, 1)))

    # ---------------------------------------------------------------- the rest
    def parameters(self):
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def get_config(self):
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "dilation": list(self.dilation),
            "bias": self.bias is not None,
            "dtype": str(self.weight.data.dtype),
        }

    def extra_repr(self):
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}"
        )
        if self.bias is None:
            text += ", bias=False"
        return text + f", dtype={self.weight.data.dtype}"


class _DirectPlan:
    """What the direct path needs for one input shape, made once per shape.

    The padded input (each image followed by a margin of its own, see
    ``_direct``), the output shape and work sizes, and, from the
    first backward on, the scratch of the backward: per thread, one
    zero-padded image of the output gradient.
    A layer keeps the plan of its last input shape: a tiny layer's call
    then costs little more than its kernel (W4 of the benchmark).
    """

    __slots__ = (
        "x_shape",
        "dtype",
        "out_shape",
        "pads",
        "xp",
        "forward_work",
        "backward_work",
        "scratch",
    )

    def __init__(self, conv, x_shape, dtype):
        n, c, h, w = x_shape
        (ph, pw), (dh, dw) = conv.padding, conv.dilation
        self.x_shape, self.dtype = x_shape, dtype
        self.out_shape = (n, conv.out_channels) + conv._out_size(x_shape)
        self.pads = (ph, pw, dh, dw)
        self.xp = np.empty((n * (c * (h + 2 * ph) * (w + 2 * pw) + _MARGIN),), dtype)
        # Work sizes for threads_for, which is asked on every call (the
        # thread limit can change between calls: cnnpool.set_num_threads).
        self.forward_work = n * c * h * w * conv.out_channels
        self.backward_work = n * conv.out_channels * self.out_shape[2] * self.out_shape[3] * c
        self.scratch = None

    def backward_scratch(self, out_channels, kernel_size, threads):
        """Allocate the backward's arrays if missing or too few for ``threads``."""
        if self.scratch is not None and self.scratch.shape[0] >= threads:
            return
        o = out_channels
        (kh, kw), (ph, pw, dh, dw) = kernel_size, self.pads
        oh, ow = self.out_shape[2:]
        gh, gw = oh + 2 * (dh * (kh - 1) - ph), ow + 2 * (dw * (kw - 1) - pw)
        self.scratch = np.empty((threads, o * gh * gw + _MARGIN), self.dtype)
