"""2-D convolution: the ``Conv2d`` layer and its compiled kernels.

* :mod:`.layer`: :class:`Conv2d`, which picks a path per input shape;
* ``_direct`` (``_direct.pyx`` and its SIMD header ``_direct.h``): direct,
  register-blocked kernels for unit-stride convolutions;
* ``_im2col``: im2col/col2im, the data movement of the GEMM path.
"""

from .layer import Conv2d, conv_output_size

__all__ = ["Conv2d", "conv_output_size"]
