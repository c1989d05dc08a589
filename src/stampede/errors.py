"""Every error Stampede Lab raises on purpose, in one small tree.

    StampedeError
    ├── ConfigError            a bad parameter, caught before anything starts
    │   └── StrategyUnavailable  a registered strategy whose optional library is missing
    ├── LabError               the lab could not start, or was lost
    │   ├── RedisNotFound      no ``redis-server`` on PATH
    │   ├── PortInUse          a port the lab wanted is taken
    │   ├── ProcessFailed      a pod or Redis died or never became ready
    │   └── CodeMismatch       the pods run other code than this process
    ├── OriginError            the origin could not answer (maps to 503)
    │   └── ItemNotFound       no such item (maps to 404)
    │       └── RememberedMissing  ... answered from the negative cache, no origin read
    ├── WaitTimeout            a waiter gave up on the refresher (maps to 503)
    ├── CorruptEntry           a cache entry that is not an envelope (maps to 503)
    └── LostRequests           a run could not account for every request it sent
        └── OutcomeMismatch    the pods counted other answers than the generator received

Messages name the bad value and what would be valid, so a reader can fix the call at once.
"""

from __future__ import annotations

__all__ = [
    "CodeMismatch",
    "ConfigError",
    "CorruptEntry",
    "ItemNotFound",
    "LabError",
    "LostRequests",
    "OriginError",
    "OutcomeMismatch",
    "PortInUse",
    "ProcessFailed",
    "RedisNotFound",
    "RememberedMissing",
    "StampedeError",
    "StrategyUnavailable",
    "WaitTimeout",
]


class StampedeError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(StampedeError, ValueError):
    """A lab, strategy or load parameter is out of range or unknown."""


class StrategyUnavailable(ConfigError):
    """A registered strategy needs a library that is not installed; the message says which."""


class LabError(StampedeError):
    """The lab could not be started, reached or stopped cleanly."""


class RedisNotFound(LabError):
    """``redis-server`` is not on PATH."""


class PortInUse(LabError):
    """A port the lab was asked to bind is already taken."""


class ProcessFailed(LabError):
    """A lab process exited early or never answered its health check."""


class CodeMismatch(LabError):
    """A pod reports a code hash (``/health``) other than this process's: restart the lab.

    A run measured on those pods would be stored under this code's cache key.
    """


class OriginError(StampedeError):
    """The origin failed or timed out; the pod answers 503 and caches nothing."""


class ItemNotFound(OriginError):
    """The origin has no row for this id; the pod answers 404."""


class RememberedMissing(ItemNotFound):
    """A 404 answered from the negative cache (``missing:item:{id}``), without the origin."""


class WaitTimeout(StampedeError):
    """A waiter gave up before the refresher published a value; the pod answers 503."""


class CorruptEntry(StampedeError):
    """A cache entry that is not an envelope; the pod answers 503 and leaves it to expire."""


class LostRequests(StampedeError):
    """Requests sent did not equal responses + errors + timeouts."""


class OutcomeMismatch(LostRequests):
    """The pods' own outcome counts (``/stats``) disagree with the answers the generator got."""
