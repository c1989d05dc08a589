"""What every peer adapter shares: where the pod's Redis is, and whether *this* request read.

The libraries return a value and nothing else: none says whether the caller waited for another
caller's refresh or got a stale value. The one fact an adapter can observe exactly is whether
this request's own load function ran: a peer reports ``miss`` when it ran to completion
before the library answered, ``early_refresh`` when the library started it in the background
and answered with the cached value, and ``hit`` otherwise. ``wait_hit`` and ``stale`` are not
observable through these libraries: a waiter and a stale read both count as ``hit``.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from stampede.strategies.base import Loader, Strategy

__all__ = ["Traced", "redis_url"]


def redis_url(redis: Redis) -> str:
    """The URL of the Redis the pod talks to, for a library that builds its own client."""
    kwargs = redis.connection_pool.connection_kwargs
    host = kwargs.get("host", "127.0.0.1")
    port = kwargs.get("port", 6379)
    db = kwargs.get("db", 0)
    return f"redis://{host}:{port}/{db}"


class Traced:
    """One request's loader: reads the origin through ``load`` and remembers that it did."""

    __slots__ = ("_load", "_strategy", "called", "finished")

    def __init__(self, strategy: Strategy, load: Loader) -> None:
        self._strategy = strategy
        self._load = load
        self.called = False
        self.finished = False

    async def __call__(self) -> dict[str, Any]:
        self.called = True
        self._strategy.counters["origin_calls"] += 1
        value = await self._load()
        self.finished = True
        return value

    @property
    def outcome(self) -> str:
        """Read it as soon as the library answers, before the next ``await``."""
        if self.finished:
            return "miss"
        return "early_refresh" if self.called else "hit"
