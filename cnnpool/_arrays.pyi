"""Type stub of the compiled module ``cnnpool._arrays`` (see ``_arrays.pyx``).

It holds only C-level helpers (``cdef`` functions, shared through
``_arrays.pxd``); nothing is callable from Python.
"""
