"""The compiled pooling kernels: max and mean (``_kernels``), the window gather and
scatter of the NumPy tier (``_windows``) and adaptive pooling (``_adaptive``)."""
