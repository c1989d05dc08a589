"""What every peer adapter shares: where the pod's Redis is, and whether *this* request read.

The libraries return a value and nothing else: none says whether the caller waited for another
caller's refresh or got a stale value. The one fact an adapter can observe exactly is whether
this request's own load function ran: a peer reports ``miss`` when it ran to completion
before the library answered, ``early_refresh`` when the library started it in the background
and answered with the cached value, and ``hit`` otherwise. ``wait_hit`` and ``stale`` are not
observable through these libraries: a waiter and a stale read both count as ``hit``.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from redis.asyncio import Redis

from stampede import auth
from stampede.config import StrategyConfig
from stampede.envelope import Fetched, json_bytes
from stampede.errors import ConfigError
from stampede.lock import RedisClient
from stampede.outcomes import Outcome
from stampede.strategies.base import Deps, Loader, Strategy

__all__ = [
    "CashewsPeer",
    "Close",
    "DecoratedPeer",
    "Fetch",
    "Peer",
    "Traced",
    "fetch_through",
    "redis_kwargs",
    "redis_url",
]

Fetch = Callable[[int, "Traced"], Awaitable[dict[str, Any]]]
Close = Callable[[], Awaitable[Any]]


def redis_kwargs(redis: RedisClient) -> dict[str, Any]:
    """Where the pod's single Redis is (host, port, db, password), for a library's own client.

    A Redis Cluster is refused: the libraries' clients are set up here for one server (the
    pod refuses a peer on a cluster before it gets this far).
    """
    if not isinstance(redis, Redis):
        raise ConfigError("a peer's own Redis client is set up for one Redis, not a cluster")
    return dict(redis.connection_pool.connection_kwargs)


def redis_url(redis: RedisClient) -> str:
    """The URL of the Redis the pod talks to, with its password, for a library's own client."""
    kwargs = redis_kwargs(redis)
    host = kwargs.get("host", "127.0.0.1")
    port = kwargs.get("port", 6379)
    db = kwargs.get("db", 0)
    return auth.redis_url(host, port, kwargs.get("password"), db)


class Traced:
    """One request's loader: reads the origin through ``load`` and remembers that it did."""

    __slots__ = ("_item", "_load", "_strategy", "called", "finished")

    def __init__(self, strategy: Strategy, item: int, load: Loader) -> None:
        self._strategy = strategy
        self._item = item
        self._load = load
        self.called = False
        self.finished = False

    async def __call__(self) -> dict[str, Any]:
        self.called = True
        await self._strategy.check_missing(self._item)  # the negative cache, as for ours
        self._strategy.counters["origin_calls"] += 1
        value = await self._strategy.load_remembering_404(self._item, self._load)
        self.finished = True
        parsed: dict[str, Any] = json.loads(value)  # the libraries store a dict
        return parsed

    @property
    def outcome(self) -> Outcome:
        """Read it as soon as the library answers, before the next ``await``."""
        if self.finished:
            return Outcome.MISS
        return Outcome.EARLY_REFRESH if self.called else Outcome.HIT


async def fetch_through(item: int, load: Traced) -> dict[str, Any]:
    """The function every decorating library wraps: the origin read, through ``load``."""
    return await load()


class Peer(Strategy):
    """A library used as a strategy: what it is and the settings it runs with."""

    library: ClassVar[str]  # name and pinned version, e.g. "cashews 7.6.0"
    own_redis_client = True  # its commands bypass the pod's counting client

    @classmethod
    def library_settings(cls, config: StrategyConfig) -> dict[str, Any]:
        """Every setting this adapter gives the library, and the defaults that matter."""
        return {"library": cls.library, "cache TTL (s)": config.ttl_s, **cls.settings(config)}

    @classmethod
    @abstractmethod
    def settings(cls, config: StrategyConfig) -> dict[str, Any]:
        """The adapter's own part of :meth:`library_settings`."""


class DecoratedPeer(Peer):
    """A library used as a decorator around ``fetch(item, load)``: what the adapters share.

    The decorated function is built on the first request, in the pod's own process and event
    loop (the libraries bind their clients to the loop that creates them), and the library's
    client is closed once with the strategy.
    """

    def __init__(self, deps: Deps, config: StrategyConfig) -> None:
        super().__init__(deps, config)
        self._fetch: Fetch | None = None
        self._close: Close | None = None

    @abstractmethod
    def _build(self) -> tuple[Fetch, Close]:
        """Set the library up; return the decorated fetch and how to close its client."""

    async def get(self, item: int, load: Loader) -> Fetched:
        if self._fetch is None:
            self._fetch, self._close = self._build()
        traced = Traced(self, item, load)
        value = await self._fetch(item, traced)
        return Fetched(json_bytes(value), traced.outcome)

    async def close(self) -> None:
        await super().close()
        if self._close is not None:
            await self._close()
            self._close = None


class CashewsPeer(DecoratedPeer):
    """cashews set up as its README shows, ``Cache().setup(redis_url)``; subclasses decorate."""

    library = "cashews 7.6.0"

    @classmethod
    def settings(cls, config: StrategyConfig) -> dict[str, Any]:
        common = {"setup": "Cache().setup(redis_url)"}
        return {**common, **cls.decorator_settings(config), "max_connections": 10}

    @classmethod
    @abstractmethod
    def decorator_settings(cls, config: StrategyConfig) -> dict[str, Any]:
        """The decorator's arguments and the library defaults that matter for it."""

    early: ClassVar[bool]  # @cache.early(ttl, key) if true, else @cache(ttl, key, lock=True)

    def decorator(self, cache: Any) -> Callable[[Fetch], Fetch]:
        """The cashews decorator this adapter wraps :func:`fetch_through` with."""
        ttl, key = self.config.ttl_s, "item:{item}"
        wrap: Callable[[Fetch], Fetch] = (
            cache.early(ttl=ttl, key=key) if self.early else cache(ttl=ttl, key=key, lock=True)
        )
        return wrap

    def _build(self) -> tuple[Fetch, Close]:
        """Created on the first request, in the pod's own process and event loop."""
        from cashews import Cache  # late: importing cashews costs ~0.3 s

        cache = Cache()
        cache.setup(redis_url(self.deps.redis))
        return self.decorator(cache)(fetch_through), cache.close
