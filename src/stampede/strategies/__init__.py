"""Caching strategies, one per module, chosen by name from one registry.

Importing this package registers the built-in strategies (class definitions only: no I/O).
"""

from __future__ import annotations

import contextlib

from stampede.strategies import (
    fixed_cutoff,
    local_lock,
    naive,
    recommended,
    single_flight,
    swr,
    xfetch,
)
from stampede.strategies.base import Deps, Loader, Strategy
from stampede.strategies.registry import create_strategy, register, strategy_names

__all__ = [
    "Deps",
    "Loader",
    "Strategy",
    "create_strategy",
    "fixed_cutoff",
    "local_lock",
    "naive",
    "recommended",
    "register",
    "single_flight",
    "strategy_names",
    "swr",
    "xfetch",
]

# The optional `peers` extra (cashews, dogpile.cache, aiocache) registers its adapters too.
with contextlib.suppress(ImportError):
    import stampede.peers  # noqa: F401
