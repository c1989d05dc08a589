"""Caching strategies, one per module, chosen by name from one registry.

Importing this package imports the interface (:mod:`~stampede.strategies.base`), not the
strategies: :mod:`stampede.registry` maps each name to its module and imports it on first use,
and never touches the optional peers (:mod:`stampede.peers`) unless one is asked for.
"""

from __future__ import annotations

from stampede.registry import create_strategy, register, strategy_class, strategy_names
from stampede.strategies.base import Deps, Loader, Strategy

__all__ = [
    "Deps",
    "Loader",
    "Strategy",
    "create_strategy",
    "register",
    "strategy_class",
    "strategy_names",
]
