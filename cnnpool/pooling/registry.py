"""Deprecated location: the registry is :mod:`cnnpool.registry`.

Kept only so that code written against the old module keeps importing
while it moves (``available`` is :func:`cnnpool.registry.pool_names`);
new code uses :mod:`cnnpool.registry`.
"""

from __future__ import annotations

from ..registry import make_pool, pool_names

__all__ = ["available", "make_pool"]

available = pool_names
