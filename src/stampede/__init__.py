"""Stampede Lab: make cache stampedes happen, measure them, fix them one strategy at a time.

What a notebook needs is re-exported here; importing the package starts nothing, reads no
environment variable and opens no connection. The heavy parts (``charts`` with Altair,
``run``/``compare`` with pandas) load on first use (PEP 562), so a pod process, which imports
``stampede.pod``, never pays for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from stampede.burst import Burst, cold_burst
from stampede.config import Fault, LabConfig, LoadConfig, StrategyConfig
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
    StrategyUnavailable,
    WaitTimeout,
)
from stampede.lab import Lab
from stampede.registry import strategy_names

if TYPE_CHECKING:
    from stampede import charts, sim
    from stampede.runner import RunResult, compare, run

_LAZY = {"charts": "stampede.charts", "RunResult": "stampede.runner", "compare": "stampede.runner",
         "run": "stampede.runner", "sim": "stampede.sim"}  # fmt: skip
_MODULES = {"charts", "sim"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = module if name in _MODULES else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stampede' has no attribute {name!r}")


__all__ = [
    "Burst",
    "ConfigError",
    "Fault",
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
    "StrategyUnavailable",
    "WaitTimeout",
    "charts",
    "cold_burst",
    "compare",
    "run",
    "sim",
    "strategy_names",
]

__version__ = "0.1.0"
