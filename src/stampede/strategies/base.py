"""The one interface every strategy implements, and what they share.

A strategy answers ``get(item, load)`` with a :class:`~stampede.envelope.Fetched`: the value and
the truthful outcome for *this* request (``hit``, ``miss``, ``wait_hit``, ``stale``,
``early_refresh``). ``load`` reads the origin; a strategy decides when to call it and who waits.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar

from stampede.cache import CacheStore, ReadyNotifier, jittered_ttl
from stampede.config import StrategyConfig
from stampede.envelope import Entry, Fetched
from stampede.errors import ItemNotFound, RememberedMissing
from stampede.lock import RedisClient

__all__ = ["Deps", "Loader", "Strategy"]

log = logging.getLogger(__name__)

Loader = Callable[[], Awaitable[bytes]]  # the item's JSON, from the origin


@dataclass
class Deps:
    """What a strategy may touch: injected, so tests control the clock and the randomness."""

    redis: RedisClient
    store: CacheStore
    notifier: ReadyNotifier | None = None
    clock: Callable[[], float] = time.time  # epoch: entries' times are shared by every pod
    monotonic: Callable[[], float] = time.monotonic  # durations: waiters' deadlines
    rng: random.Random = field(default_factory=random.Random)


class Strategy(ABC):
    """Base class: configuration in ``__init__``, one abstract coroutine, background tasks."""

    name: ClassVar[str]
    default_jitter: ClassVar[float] = 0.0  # TTL spread when the config does not set one
    own_redis_client: ClassVar[bool] = False  # a library with its own client: uncounted

    def __init__(self, deps: Deps, config: StrategyConfig) -> None:
        self.deps = deps
        self.config = config
        self.store = deps.store
        self.jitter = self.default_jitter if config.jitter is None else config.jitter
        self.counters: Counter[str] = Counter()
        self._background: set[asyncio.Task[Any]] = set()

    @abstractmethod
    async def get(self, item: int, load: Loader) -> Fetched:
        """Return the value of ``item``, reading the origin through ``load`` when needed."""

    def stale_window_s(self) -> float:
        """How long past its soft expiry a value may still be served (0: never)."""
        return 0.0

    async def read_origin(
        self, item: int, load: Loader, *, negatives_checked: bool = False
    ) -> Entry:
        """Call the origin once and wrap the value with its recompute time and soft expiry.

        The read sits behind the negative cache of 404s (:meth:`check_missing`);
        ``negatives_checked`` skips its lookup when the caller's lock claim already made it.
        """
        if not negatives_checked:
            await self.check_missing(item)
        started = self.deps.monotonic()  # a duration: a wall-clock step must not skew it
        value = await self.load_remembering_404(item, load)
        delta = self.deps.monotonic() - started
        now = self.deps.clock()  # epoch: every pod compares it with its own clock
        soft_ttl = jittered_ttl(self.config.ttl_s, self.jitter, self.deps.rng)
        self.counters["origin_calls"] += 1
        return Entry(value=value, created_at=now, delta=delta, soft_expiry=now + soft_ttl)

    async def check_missing(self, item: int) -> None:
        """Raise :class:`RememberedMissing` if the origin said 404 within the negative TTL."""
        if self.config.negative_ttl_s and await self.store.is_missing(item):
            raise self.remembered_missing(item)

    def remembered_missing(self, item: int) -> RememberedMissing:
        ttl = self.config.negative_ttl_s
        return RememberedMissing(f"item {item} does not exist (remembered for {ttl:g} s)")

    async def load_remembering_404(self, item: int, load: Loader) -> bytes:
        """``load()``; a 404 is remembered for ``negative_ttl_s`` (``missing:item:{id}``).

        With :meth:`check_missing` before it, a flood of unknown ids reads the origin once
        per id and TTL, not once per request, under every strategy (the peers' loaders too).
        """
        try:
            return await load()
        except ItemNotFound:
            if ttl := self.config.negative_ttl_s:
                await self.store.mark_missing(item, ttl)
            raise

    def hard_ttl_s(self, entry: Entry) -> float:
        """Redis' TTL for ``entry``: its soft lifetime plus the stale window."""
        return entry.soft_expiry - entry.created_at + self.stale_window_s()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``coro`` in the background with a strong reference (RUF006); never raise."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.counters["background_errors"] += 1
            log.warning("background task %s failed: %r", task.get_name(), exc)

    async def close(self) -> None:
        """Cancel background refreshes; each releases its lock in ``finally``."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: redis-py can swallow a cancel that lands inside a command
            await asyncio.wait(tasks, timeout=2)
