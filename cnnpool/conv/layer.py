"""``Conv2d``: 2-D convolution, direct or as im2col + one batched GEMM.

Unit stride (the common case) on a build with AVX2 and FMA runs the direct
kernels of ``_direct.pyx`` where they are the faster (see
``Conv2d._direct_wins``): the zero-padded input is read in place by
register-blocked loops, with no unrolled copy of it (see that module).
Depthwise convolution (``groups == in_channels``) has kernels of its own
there, one plane at a time, on every build, at any stride and padding.
Every other case is im2col + GEMM (with groups, one GEMM per group and
image, as a batched ``np.matmul``):

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

import numbers

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
    """Output length along one axis: ``(L + 2p - d(k-1) - 1) // s + 1`` (may be < 1).

    ``padding`` is an int (both ends) or a pair ``(before, after)``.
    """
    before, after = (padding, padding) if isinstance(padding, numbers.Integral) else padding
    return (size + before + after - dilation * (kernel - 1) - 1) // stride + 1


_PADDING_STRINGS = ("valid", "same", "same_lower")


def resolve_padding(padding, kernel_size, stride, dilation):
    """Check ``padding`` and return ``(spec, pads)``.

    Parameters
    ----------
    padding : int, (int, int), (int, int, int, int) or str
        An int pads every side alike; a pair gives ``(ph, pw)``, both sides
        of each axis; four ints give ``(top, bottom, left, right)`` (the
        order of the axes, before then after: ``torch.nn.functional.pad``
        orders the last axis first, this does not).  ``"valid"`` is no
        padding; ``"same"`` pads ``d*(k-1)`` in all along each axis, half
        before and the odd one after (as PyTorch, and ONNX's SAME_UPPER);
        ``"same_lower"`` puts the odd one before (ONNX's SAME_LOWER).
        ``"same"``/``"same_lower"`` need unit stride (PyTorch refuses
        others too).
    kernel_size, stride, dilation : (int, int)
        Checked pairs.

    Returns
    -------
    spec : (int, int), (int, int, int, int) or str
        What ``Conv2d.padding`` shows and the saved config keeps: a pair
        when both sides of each axis agree, the string as given.
    pads : (int, int, int, int)
        ``(top, bottom, left, right)``.
    """
    if isinstance(padding, str):
        if padding not in _PADDING_STRINGS:
            raise ValueError(
                f"padding must be an int, a pair, four ints (top, bottom, left, right) or "
                f"one of {_PADDING_STRINGS}, got {padding!r}"
            )
        if padding == "valid":
            return padding, (0, 0, 0, 0)
        if stride != (1, 1):
            raise ValueError(
                f"padding={padding!r} needs stride 1 (as in PyTorch: with a stride the "
                f"output size would depend on the input size), got stride={stride}; "
                f"give the padding as numbers instead"
            )
        pads = []
        for k, d in zip(kernel_size, dilation, strict=True):
            total = d * (k - 1)
            small = total // 2
            pads += [small, total - small] if padding == "same" else [total - small, small]
        _checks.pair(pads[:2], "padding", minimum=0)  # d*(k-1) may exceed 2**31 - 1
        _checks.pair(pads[2:], "padding", minimum=0)
        return padding, tuple(pads)
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        try:
            top, bottom = _checks.pair(padding[:2], "padding", minimum=0)
            left, right = _checks.pair(padding[2:], "padding", minimum=0)
        except TypeError:
            raise TypeError(
                f"padding must be an int, a pair, four ints (top, bottom, left, right) or "
                f"one of {_PADDING_STRINGS}, got {padding!r}"
            ) from None
        except ValueError:
            raise ValueError(
                f"padding (top, bottom, left, right) must be >= 0 and at most 2**31 - 1, "
                f"got {padding!r}"
            ) from None
        if (top, left) == (bottom, right):
            return (top, left), (top, top, left, left)
        return (top, bottom, left, right), (top, bottom, left, right)
    try:
        ph, pw = _checks.pair(padding, "padding", minimum=0)
    except TypeError:
        raise TypeError(
            f"padding must be an int, a pair (ph, pw), four ints (top, bottom, left, right) "
            f"or one of {_PADDING_STRINGS}, got {padding!r}"
        ) from None
    return (ph, pw), (ph, ph, pw, pw)


@register
class Conv2d(Layer):
    """2-D convolution over NCHW arrays, as ``torch.nn.Conv2d``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels ``C`` of the input and ``O`` of the output.
    kernel_size : int or (int, int)
        ``(kh, kw)``.
    stride : int or (int, int)
        Step between receptive fields.
    padding : int, (int, int), (int, int, int, int), "valid", "same" or "same_lower"
        Zeros added around the input.  An int or a pair ``(ph, pw)`` pads
        both sides of each axis alike, as in PyTorch; ``"valid"`` (none)
        and ``"same"`` (output as large as the input; unit stride only;
        an odd total goes after, as in PyTorch) too.  Our extensions, as
        ONNX's ``Conv`` has them: four ints ``(top, bottom, left, right)``
        (the order of the axes, before then after: not the last-axis-first
        order of ``torch.nn.functional.pad``), and ``"same_lower"`` (the
        odd one before: ONNX's ``SAME_LOWER``).
    dilation : int or (int, int)
        Spacing between kernel taps.
    groups : int
        Split the input and output channels into this many groups, each
        convolved on its own (both channel counts must be multiples).
        ``groups == in_channels`` is depthwise convolution (each output
        channel filters one input channel), which has kernels of its own.
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
    weight : Parameter, shape (O, C / groups, kh, kw)
    bias : Parameter of shape (O,), or None
    padding : (int, int), (int, int, int, int) or str
        As given (a pair when both sides of each axis agree).

    Notes
    -----
    Input ``(N, C, H, W)``, output ``(N, O, OH, OW)`` with
    ``OH = (H + top + bottom - dh*(kh - 1) - 1) // sh + 1`` (likewise
    ``OW``).  An unbatched input ``(C, H, W)`` gives an unbatched output
    ``(O, OH, OW)``, and backward then takes and returns unbatched
    gradients, as in PyTorch.

    Depthwise convolution (``groups == in_channels``, any multiple of it
    as ``out_channels``) runs kernels of its own on every build, at any
    stride and padding: one plane at a time, a whole row per tap.  Other
    groups run the paths below, one group at a time.

    Two implementations give the same numbers to rounding.  With unit stride
    and ``padding <= dilation*(kernel - 1)`` on a build with AVX2 and FMA
    (the default ``-march=native`` build on such a CPU) the direct kernels
    run when they are the faster: up to 432 taps per output (``C/groups*kh*kw``:
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
    >>> depthwise = cp.Conv2d(8, 8, 3, padding="same", groups=8, rng=0)
    >>> depthwise.weight.shape
    (8, 1, 3, 3)
    >>> depthwise(np.zeros((8, 5, 7), np.float32)).shape  # unbatched
    (8, 5, 7)
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        dtype=np.float32,
        rng=None,
    ):
        self.in_channels = _checks.positive_int(in_channels, "in_channels")
        self.out_channels = _checks.positive_int(out_channels, "out_channels")
        self.kernel_size = _checks.pair(kernel_size, "kernel_size")
        self.stride = _checks.pair(stride, "stride")
        self.dilation = _checks.pair(dilation, "dilation")
        self.padding, self._pads = resolve_padding(
            padding, self.kernel_size, self.stride, self.dilation
        )
        self.groups = _checks.positive_int(groups, "groups")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"groups={self.groups} must divide both in_channels={self.in_channels} and "
                f"out_channels={self.out_channels}"
            )
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be a bool, got {bias!r}")
        dtype = _checks.float_dtype(dtype)
        generator = make_rng(rng)
        kh, kw = self.kernel_size
        group_in = self.in_channels // self.groups
        fan_in = group_in * kh * kw
        self.weight = Parameter(
            he_normal((self.out_channels, group_in, kh, kw), fan_in, dtype, generator),
            "weight",
        )
        self.bias = Parameter(np.zeros(self.out_channels, dtype), "bias") if bias else None
        top, bottom, left, right = self._pads
        # A 1x1 kernel with unit stride and no padding reads each pixel once:
        # the columns are the input itself, so im2col and col2im are skipped.
        self._pointwise = (
            self.kernel_size == (1, 1) and self.stride == (1, 1) and not any(self._pads)
        )
        # im2col's geometry: the loops need the top and left padding only;
        # the bottom and right ones go last (they check the output size).
        self._geometry_args = self.kernel_size + self.stride + (top, left) + self.dilation
        self._far_pads = (bottom, right)
        # The direct kernels need unit stride, and padding of at most
        # dilation*(kernel-1) on each side (the input gradient pads the output
        # gradient by the difference); 1x1 kernels keep the plain GEMM, which
        # BLAS does well.
        dh, dw = self.dilation
        unit_stride_fits = (
            self.stride == (1, 1)
            and max(top, bottom) <= dh * (kh - 1)
            and max(left, right) <= dw * (kw - 1)
        )
        self._direct = _direct.SIMD and unit_stride_fits and not self._pointwise
        # Depthwise: one filter per output plane, too little work per tap for
        # the register blocks of the direct kernels; its own loops, any build,
        # stride and padding.
        self._depthwise = self.groups > 1 and self.groups == self.in_channels
        self._taps = group_in * kh * kw
        self._out_sizes = {}
        self._cols = None  # reusable im2col buffer (the one the last forward filled)
        self._grad_cols = None  # backward's scratch: gradient columns of one chunk
        self._plan = None  # the direct path's _DirectPlan for the last input shape
        self._outputs = OutputBuffers()  # large results, reused once the caller drops them
        self._saved = None
        self._unbatched = False  # whether the last forward's input was (C, H, W)

    # ------------------------------------------------------------------ geometry
    def _out_size(self, x_shape):
        """``(OH, OW)`` for input shape ``x_shape``; raise when the kernel does not fit."""
        key = x_shape[2:]
        size = self._out_sizes.get(key)
        if size is None:
            pads = (self._pads[:2], self._pads[2:])
            size = tuple(
                conv_output_size(length, k, s, p, d)
                for length, k, s, p, d in zip(
                    key, self.kernel_size, self.stride, pads, self.dilation, strict=True
                )
            )
            if min(size) < 1:
                raise ValueError(
                    f"Conv2d kernel (kernel_size={self.kernel_size}, dilation="
                    f"{self.dilation}) is larger than the padded input: x of shape "
                    f"{tuple(x_shape)} with padding={self.padding!r} gives output "
                    f"(OH, OW) = {size}"
                )
            if len(self._out_sizes) > 32:  # a model sees few sizes; bound the cache anyway
                self._out_sizes.clear()
            self._out_sizes[key] = size
        return size

    def output_shape(self, input_shape):
        """Output shape ``(N, O, OH, OW)`` for an input of shape ``(N, C, H, W)``
        (``(O, OH, OW)`` for an unbatched ``(C, H, W)``)."""
        input_shape = tuple(input_shape)
        if len(input_shape) == 3 and input_shape[0] == self.in_channels:
            return self.output_shape((1,) + input_shape)[1:]
        if len(input_shape) != 4 or input_shape[1] != self.in_channels:
            raise ValueError(
                f"input_shape must be (N, {self.in_channels}, H, W) or ({self.in_channels}, "
                f"H, W) for Conv2d with in_channels={self.in_channels}, got {input_shape}"
            )
        return (input_shape[0], self.out_channels) + self._out_size(input_shape)

    # ---------------------------------------------------------- forward/backward
    def forward(self, x):
        """Convolve ``x`` (N, C, H, W) or (C, H, W); returns ``(N, O, OH, OW)``
        (``(O, OH, OW)``) of the same dtype."""
        given = x
        x = _checks.as_float_array(x, "x")
        if x.ndim == 4:
            self._unbatched = False
            return self._forward(x, given)
        if x.ndim != 3:
            raise ValueError(
                f"x must be 4-D (N, C, H, W) or, unbatched, 3-D (C, H, W); got a "
                f"{x.ndim}-D array of shape {x.shape}"
            )
        if x.shape[0] != self.in_channels:
            raise ValueError(
                f"x has {x.shape[0]} channels (unbatched, shape {x.shape}: (C, H, W)) but "
                f"Conv2d expects in_channels={self.in_channels}"
            )
        self._unbatched = True
        return self._forward(x[None], given)[0]

    def _forward(self, x, given):
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
        if self._depthwise:
            return self._forward_direct(x, depthwise=True)
        if self._direct and self._direct_wins(x.shape):
            return self._forward_direct(x)
        if self.groups > 1:
            return self._forward_grouped(x, given)
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
                *self._far_pads,
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
        _im2col.im2col(x, cols, *self._geometry_args, out_h, out_w, 1, *self._far_pads)
        wmat = np.concatenate((w2, bias.data[:, None]), axis=1) if ones else w2
        out = np.matmul(wmat, cols)  # (N, O, OH*OW): one BLAS GEMM per image, in C
        self._saved = (x.shape, cols, w2, ones)
        return out.reshape(n, self.out_channels, out_h, out_w)

    def backward(self, grad_output):
        """Gradient w.r.t. ``x``; adds the weight and bias gradients into ``.grad``.

        ``grad_output`` has the shape of the last forward's output (unbatched
        if its input was), and so does the result have its input's.
        """
        if self._saved is None:
            raise BackwardBeforeForwardError("Conv2d.backward called before forward")
        if not self._unbatched:
            return self._backward(grad_output)
        shape, dtype = self._saved_output_shape()
        grad = _checks.grad_like(grad_output, shape[1:], dtype)
        return self._backward(grad[None])[0]

    def _saved_output_shape(self):
        """Shape and dtype of the last forward's (batched) output."""
        saved = self._saved
        if saved[0] == "direct":
            return saved[1].out_shape, saved[1].dtype
        x_shape, cols = (saved[1], saved[2]) if isinstance(saved[0], str) else saved[:2]
        return (x_shape[0], self.out_channels) + self._out_size(x_shape), cols.dtype

    def _backward(self, grad_output):
        if self._saved[0] == "direct":
            return self._backward_direct(grad_output)
        if self._saved[0] == "merged":
            return self._backward_merged(grad_output)
        if self._saved[0] == "grouped":
            return self._backward_grouped(grad_output)
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
        far = self._far_pads
        # Serial col2im, for the reason given in forward (10x slower on two
        # cores between the chunks' BLAS-threaded GEMMs when it was parallel).
        threads = 1
        if chunk >= n:  # small batches: one GEMM, one col2im
            np.matmul(w2.T, g, out=grad_cols)
            _im2col.col2im(grad_cols, grad_x, *args, threads, *far)
            return grad_x
        w2t = w2.T
        for i in range(0, n, chunk):
            j = min(i + chunk, n)
            buf = grad_cols[: j - i]
            np.matmul(w2t, g[i:j], out=buf)
            _im2col.col2im(buf, grad_x[i:j], *args, threads, *far)
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
            _im2col.col2im(view, grad_x[i:j], *args, 1, *self._far_pads)
        return grad_x

    # ------------------------------------------------------------ grouped GEMM
    def _forward_grouped(self, x, given):
        """im2col + one GEMM per group and image (``groups > 1``): the columns
        of group g are rows ``[g*K, (g+1)*K)`` of the usual im2col matrix
        (``K = C/groups*kh*kw``), so one batched ``np.matmul`` of the
        (groups, O/groups, K) weights with a (N, groups, K, P) view of them
        does every group."""
        n, c, h, w = x.shape
        groups, o = self.groups, self.out_channels
        out_h, out_w = self._out_size(x.shape)
        pixels = out_h * out_w
        # A copy: backward must use these weights even if an optimizer steps first.
        w3 = self.weight.data.reshape(groups, o // groups, -1).copy()
        if self._pointwise:
            self._saved = None  # drop the previous copy first, so that its memory is reused
            cols = _checks.owned(x, given, self._outputs).reshape(n, c, pixels)
        else:
            shape = (n, c * self.kernel_size[0] * self.kernel_size[1], pixels)
            cols = self._cols
            if cols is None or cols.shape != shape or cols.dtype != x.dtype:
                cols = self._cols = np.empty(shape, x.dtype)
            _im2col.im2col(x, cols, *self._geometry_args, out_h, out_w, 1, *self._far_pads)
        out = np.matmul(w3, cols.reshape(n, groups, w3.shape[2], pixels))  # (N, G, O/G, P)
        if self.bias is not None:
            out += self.bias.data.reshape(groups, o // groups, 1)
        self._saved = ("grouped", x.shape, cols, w3)
        return out.reshape(n, o, out_h, out_w)

    def _backward_grouped(self, grad_output):
        _, x_shape, cols, w3 = self._saved
        n, groups = x_shape[0], self.groups
        out_shape = (n, self.out_channels) + self._out_size(x_shape)
        grad = _checks.grad_like(grad_output, out_shape, cols.dtype)
        pixels = out_shape[2] * out_shape[3]
        g = grad.reshape(n, groups, w3.shape[1], pixels)
        c4 = cols.reshape(n, groups, w3.shape[2], pixels)
        grad_w = np.matmul(g, c4.transpose(0, 1, 3, 2))  # (N, G, O/G, K)
        grad_w = grad_w[0] if n == 1 else grad_w.sum(axis=0)
        self.weight.grad += grad_w.reshape(self.weight.grad.shape)
        if self.bias is not None:
            self.bias.grad += g.sum(axis=(0, 3)).reshape(-1)
        grad_cols = np.matmul(w3.transpose(0, 2, 1), g)  # (N, G, K, P)
        if self._pointwise:
            return grad_cols.reshape(x_shape)
        grad_x = self._outputs.empty("grad_x", x_shape, cols.dtype)  # col2im zeroes it
        _im2col.col2im(
            grad_cols.reshape(cols.shape),
            grad_x,
            *self._geometry_args,
            *out_shape[2:],
            1,
            *self._far_pads,
        )
        return grad_x

    # ------------------------------------------------------------- direct path
    def _direct_wins(self, x_shape):
        """Whether the direct kernels beat im2col + BLAS on ``x_shape`` (per build)."""
        if self._taps <= _DIRECT_MAX_TAPS:
            return True
        if _DIRECT_WIDE_ROW is None:
            return False
        return self._out_size(x_shape)[1] >= _DIRECT_WIDE_ROW

    def _forward_direct(self, x, depthwise=False):
        plan = self._plan
        if plan is None or plan.x_shape != x.shape or plan.dtype != x.dtype:
            plan = self._plan = _DirectPlan(self, x.shape, x.dtype)
        out = self._outputs.empty("out", plan.out_shape, plan.dtype)
        weight = self.weight.data
        bias = None if self.bias is None else self.bias.data
        # Our own padded copy of x goes to plan.xp: backward reads it, so
        # later edits of x change nothing.
        if depthwise:
            # Planes, not images, are spread over threads there.
            threads = threads_for(plan.x_shape[0] * plan.x_shape[1], plan.forward_work)
            _direct.depthwise_forward(
                x, plan.xp, weight, bias, out, *plan.pads, threads, *self.stride
            )
        else:
            threads = threads_for(plan.x_shape[0], plan.forward_work)
            _direct.forward(x, plan.xp, weight, bias, out, *plan.args, threads, *plan.tail)
        # Backward uses the weights of this call even if an optimizer steps first.
        self._saved = ("direct", plan, weight.copy(), depthwise)
        return out

    def _backward_direct(self, grad_output):
        _, plan, weight, depthwise = self._saved
        g = _checks.grad_like(grad_output, plan.out_shape, plan.dtype)
        grad_x = self._outputs.empty("grad_x", plan.x_shape, plan.dtype)
        bias_grad = None if self.bias is None else self.bias.grad
        if depthwise:
            threads = threads_for(plan.x_shape[0] * plan.x_shape[1], plan.backward_work)
            _direct.depthwise_backward(
                plan.xp, g, weight, grad_x, self.weight.grad, bias_grad, *plan.pads, threads,
                *self.stride,
            )  # fmt: skip
            return grad_x
        threads = threads_for(plan.x_shape[0], plan.backward_work)
        plan.backward_scratch(self.out_channels, self.kernel_size, threads)
        _direct.backward(
            plan.xp,
            g,
            weight,
            grad_x,
            self.weight.grad,
            bias_grad,
            plan.scratch,
            *plan.args,
            threads,
            *plan.tail,
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
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
            "bias": self.bias is not None,
            "dtype": str(self.weight.data.dtype),
        }

    def extra_repr(self):
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding!r}, dilation={self.dilation}"
        )
        if self.groups != 1:
            text += f", groups={self.groups}"
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
        "args",
        "tail",
        "xp",
        "forward_work",
        "backward_work",
        "scratch",
    )

    def __init__(self, conv, x_shape, dtype):
        n, c, h, w = x_shape
        top, bottom, left, right = conv._pads
        self.x_shape, self.dtype = x_shape, dtype
        self.out_shape = (n, conv.out_channels) + conv._out_size(x_shape)
        # The depthwise kernels' geometry arguments, and the others' (top,
        # left, dilation, then after the thread count: bottom, right, groups;
        # none when they are the defaults, the symmetric ungrouped case).
        self.pads = (top, bottom, left, right) + conv.dilation
        self.args = (top, left) + conv.dilation
        self.tail = (
            () if (top, left, 1) == (bottom, right, conv.groups) else (bottom, right, conv.groups)
        )
        self.xp = np.empty((n * (c * (h + top + bottom) * (w + left + right) + _MARGIN),), dtype)
        # Work sizes for threads_for, which is asked on every call (the
        # thread limit can change between calls: cnnpool.set_num_threads).
        group_in = c // conv.groups
        self.forward_work = n * group_in * h * w * conv.out_channels
        self.backward_work = (
            n * conv.out_channels * self.out_shape[2] * self.out_shape[3] * group_in
        )
        self.scratch = None

    def backward_scratch(self, out_channels, kernel_size, threads):
        """Allocate the backward's arrays if missing or too few for ``threads``."""
        if self.scratch is not None and self.scratch.shape[0] >= threads:
            return
        o = out_channels
        (kh, kw), (top, bottom, left, right, dh, dw) = kernel_size, self.pads
        oh, ow = self.out_shape[2:]
        gh = oh + 2 * dh * (kh - 1) - top - bottom
        gw = ow + 2 * dw * (kw - 1) - left - right
        self.scratch = np.empty((threads, o * gh * gw + _MARGIN), self.dtype)
