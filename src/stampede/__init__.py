"""Stampede Lab: make cache stampedes happen, measure them, fix them one strategy at a time.

What a notebook needs is re-exported here; importing the package starts nothing, reads no
environment variable and opens no connection.
"""

from __future__ import annotations

from stampede import charts
from stampede.config import LabConfig, LoadConfig, StrategyConfig
from stampede.errors import (
    ConfigError,
    ItemNotFound,
    LabError,
    LostRequests,
    OriginError,
    PortInUse,
    ProcessFailed,
    RedisNotFound,
    StampedeError,
    WaitTimeout,
)
from stampede.lab import Lab
from stampede.runner import RunResult, compare, run
from stampede.strategies import strategy_names

__all__ = [
    "ConfigError",
    "ItemNotFound",
    "Lab",
    "LabConfig",
    "LabError",
    "LoadConfig",
    "LostRequests",
    "OriginError",
    "PortInUse",
    "ProcessFailed",
    "RedisNotFound",
    "RunResult",
    "StampedeError",
    "StrategyConfig",
    "WaitTimeout",
    "charts",
    "compare",
    "run",
    "strategy_names",
]

__version__ = "0.1.0"
