"""aiocache ``cached_stampede``: a cache decorator that takes a ``RedLock`` on a miss.

Set-up as its docstring and docs show: ``cached_stampede(cache=Cache.REDIS, endpoint=...,
port=..., ttl=..., key_builder=...)``. The docs name ``ttl`` (default: never expire) and the
backend (default: in-process memory) as what a user sets; the rest is the library's default:
``lease=2`` s, ``JsonSerializer``, no namespace.

Mechanism (aiocache 0.12.3, ``decorators.py``, ``lock.py``): on a miss, ``RedLock`` tries
``SET NX EX lease``; the winner reads and writes the value and releases with a Lua
compare-and-delete (``EVAL``). A loser waits on an ``asyncio.Event`` kept in a class-level dict
**of its own process**, set when the winner releases, for at most ``lease``. In another pod that
dict has no entry for the key, the ``KeyError`` is caught as "lock was released", and the loser
goes straight on to read the origin itself: across processes, waiters do not wait at all.
Nobody polls. The lock lives ``lease`` (2 s), shorter than the TTL.
"""

from __future__ import annotations

from typing import Any

from stampede.config import StrategyConfig
from stampede.peers._common import (
    Close,
    DecoratedPeer,
    Fetch,
    Traced,
    fetch_through,
    redis_kwargs,
)
from stampede.registry import register

__all__ = ["AiocacheRedLock"]


def _key(func: object, item: int, load: Traced) -> str:
    return f"item:{item}"


@register
class AiocacheRedLock(DecoratedPeer):
    name = "aiocache"

    library = "aiocache 0.12.3"

    @classmethod
    def settings(cls, config: StrategyConfig) -> dict[str, Any]:
        return {
            "decorator": (
                f"@cached_stampede(ttl={config.ttl_s:g}, cache=Cache.REDIS, "
                "endpoint, port, db, password, key_builder=item:{item})"
            ),
            "lease (lock TTL, s)": 2,
            "serializer": "JsonSerializer",
            "pool_max_size": None,
        }

    def _build(self) -> tuple[Fetch, Close]:
        """Created on the first request, in the pod's own process and event loop."""
        from aiocache import Cache, cached_stampede  # late: the pod imports only what it runs

        kwargs = redis_kwargs(self.deps.redis)
        decorator = cached_stampede(
            ttl=self.config.ttl_s,
            key_builder=_key,
            cache=Cache.REDIS,
            endpoint=kwargs.get("host", "127.0.0.1"),
            port=kwargs.get("port", 6379),
            db=kwargs.get("db", 0),
            password=kwargs.get("password"),  # the lab's Redis requires the lab secret
        )
        wrapped: Fetch = decorator(fetch_through)
        return wrapped, decorator.cache.close
