"""The pieces of ``benchmarks/bench_layers.py``, one idea per module.

* :mod:`.harness`: timing (competitors interleaved in one process), thread
  pinning, machine description, the subprocess per thread count and the
  memory probe.
* :mod:`.baselines`: the competitors that are not cnnpool: plain-NumPy
  versions of pooling and convolution, and the PyTorch models of the
  training steps.
* :mod:`.workloads`: what is timed.  A workload is a function returning
  ``{pass_name: {competitor: fn}}``, registered under a short key; a conv
  layer shape is one line of :data:`.workloads.CONV_SHAPES`.
* :mod:`.targets`: the issues' targets, checked against one run.
* :mod:`.report`: the Markdown written to ``benchmarks/RESULTS.md``.
"""
