"""Deprecated location: the registry is :mod:`cnnpool.registry`.

Kept only so that code written against the old module keeps working while
it moves: ``available`` is :func:`cnnpool.registry.pool_names`,
``make_pool`` is :func:`cnnpool.registry.make_pool`, and ``POOLS`` a live,
read-only view of the short names, each mapped to a factory
``factory(kernel_size, stride=None, *, seed=None)``.  New code uses
:mod:`cnnpool.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..registry import make_pool, pool_names

__all__ = ["POOLS", "available", "make_pool"]

available = pool_names


class _Pools(Mapping):
    """Short name -> factory, always what :mod:`cnnpool.registry` holds now."""

    def __getitem__(self, name):
        if name not in pool_names():
            raise KeyError(name)

        def factory(kernel_size, stride=None, *, seed=None):
            return make_pool(name, kernel_size, stride, seed=seed)

        return factory

    def __iter__(self):
        return iter(pool_names())

    def __len__(self):
        return len(pool_names())


POOLS = _Pools()
