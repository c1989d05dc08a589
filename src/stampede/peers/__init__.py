"""The libraries people would pick instead, as strategies: the optional ``peers`` extra.

Each adapter uses its library the way the library's documentation says, points it at the
pod's Redis with the run's TTL, creates the library's client lazily in the pod's process and
closes it in ``close()``; a library is imported on a pod's first request, not here. Importing
this package registers ``cashews_lock``, ``cashews_early``, ``dogpile`` and ``aiocache``; it
raises ImportError when a library of the extra is missing (``pip install -e '.[peers]'``).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from stampede.config import StrategyConfig
from stampede.peers import aiocache_redlock, cashews_early, cashews_lock, dogpile_redis
from stampede.peers.burst import Burst, cold_burst

for _library in ("cashews", "dogpile", "aiocache"):  # loaded lazily by the pods: check here
    if importlib.util.find_spec(_library) is None:
        raise ImportError(f"{_library} is not installed: pip install -e '.[peers]'")

__all__ = [
    "PEERS",
    "Burst",
    "aiocache_redlock",
    "cashews_early",
    "cashews_lock",
    "cold_burst",
    "dogpile_redis",
    "library_settings",
]

PEERS = ("cashews_lock", "cashews_early", "dogpile", "aiocache")

_Peer = (
    type[cashews_lock.CashewsLock]
    | type[cashews_early.CashewsEarly]
    | type[dogpile_redis.DogpileRedis]
    | type[aiocache_redlock.AiocacheRedLock]
)
_CLASSES: dict[str, _Peer] = {
    "cashews_lock": cashews_lock.CashewsLock,
    "cashews_early": cashews_early.CashewsEarly,
    "dogpile": dogpile_redis.DogpileRedis,
    "aiocache": aiocache_redlock.AiocacheRedLock,
}


def library_settings(name: str, config: StrategyConfig | None = None) -> dict[str, Any]:
    """What the adapter ``name`` sets on its library for ``config`` (no connection is made)."""
    return _CLASSES[name].library_settings(config or StrategyConfig(strategy=name))
