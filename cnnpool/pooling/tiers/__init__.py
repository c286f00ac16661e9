"""How a strategy's math runs, slowest to fastest.

* the NumPy tier: ``pool``/``route`` over the windows array, in
  :class:`~cnnpool.pooling.base.Pool2d` itself;
* the JIT tier: scalar Python window functions compiled by Numba,
  :class:`~cnnpool.pooling.tiers.jit.JitPool2d` (``jit.py``, kernels in
  ``_jit_kernels.py``);
* the Cython tier: a ``WindowStrategy`` (``_strategy.pxd``) run by the
  compiled window driver, :mod:`cnnpool.pooling.tiers.compiled`;
* the kernel tier: ``forward_kernel``/``backward_kernel`` over whole
  batches, which every built-in strategy implements (see ``Pool2d``).
"""
