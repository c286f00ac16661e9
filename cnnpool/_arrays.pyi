"""Type stub of the compiled module ``cnnpool._arrays`` (see ``_arrays.pyx``).

Its array checks are C-level (``cdef`` functions, shared through
``_arrays.pxd``); the one Python-level function serves ``cnnpool._buffers``.
"""

from typing import Any

def sole_reference(cache: dict[Any, Any], key: object) -> bool: ...
