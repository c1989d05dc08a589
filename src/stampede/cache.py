"""The shared cache in Redis: value keys, lock keys, TTL policy and "value ready" signals.

Key layout (every pod agrees on it; this module is the one place that spells it):

- ``item:{<id>}``       the JSON :class:`~stampede.envelope.Entry`, with Redis' TTL as hard expiry
- ``lock:item:{<id>}``  the single-refresher lock (:class:`~stampede.lock.RedisLock`)
- ``missing:item:{<id>}`` a negative entry: the origin said 404 a moment ago (short TTL)
- channel ``ready:item:{<id>}``  ``"<id> <entry json>"`` when a refresh wrote a value,
  ``"<id>"`` when it failed: waiters take the value from the message, saving each a ``GET``

The braces are a Redis Cluster *hash tag*: only ``<id>`` is hashed, so an item's four names
live in one slot, and the scripts that touch several of them (claim, fill: lock, value,
negative entry, channel) run on one node instead of failing with ``CROSSSLOT``. A single
Redis ignores the braces. The pods subscribe to the pattern :data:`READY_PATTERN` once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from collections.abc import Callable
from typing import cast

from redis.asyncio import Redis

from stampede.envelope import MISS, Entry, Miss
from stampede.errors import CorruptEntry
from stampede.lock import Claim, RedisLock

__all__ = ["READY_PATTERN", "CacheStore", "ReadyNotifier", "Waiter", "jittered_ttl"]

log = logging.getLogger(__name__)

READY_PATTERN = "ready:item:*"  # every item's ready channel (CacheStore.ready_channel)


def jittered_ttl(base_s: float, spread: float, rng: random.Random) -> float:
    """``base * (1 + U(0, spread))``: desynchronises the expiry of keys written together.

    Helps when many keys are warmed at once (a deploy); does nothing for one hot key, which
    still has one expiry per cycle.
    """
    if spread <= 0:
        return base_s
    return base_s * (1.0 + rng.uniform(0.0, spread))


class CacheStore:
    """Reads and writes envelopes and hands out the per-item locks."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    @staticmethod
    def key(item: int) -> str:
        return f"item:{{{item}}}"

    @staticmethod
    def lock_key(item: int) -> str:
        return f"lock:item:{{{item}}}"

    @staticmethod
    def missing_key(item: int) -> str:
        return f"missing:item:{{{item}}}"

    @staticmethod
    def ready_channel(item: int) -> str:
        return f"ready:item:{{{item}}}"

    @staticmethod
    def item_of(name: str | bytes) -> int:
        """The item id in any of the names above (its hash tag): ``item:{7}`` -> 7."""
        text = name.decode() if isinstance(name, bytes) else name
        return int(text[text.index("{") + 1 : text.index("}")])

    async def is_missing(self, item: int) -> bool:
        """Did the origin answer 404 for ``item`` within the negative TTL?"""
        return bool(await self.redis.exists(self.missing_key(item)))

    async def mark_missing(self, item: int, ttl_s: float) -> None:
        """Remember a 404 for ``ttl_s``: a flood of unknown ids reads the origin once each."""
        await self.redis.set(self.missing_key(item), b"1", px=max(1, round(ttl_s * 1000)))

    def lock(self, item: int, lease_ms: int) -> RedisLock:
        return RedisLock(self.redis, self.lock_key(item), lease_ms)

    async def get(self, item: int) -> Entry | Miss:  # the hit path's one round trip
        raw = cast("bytes | None", await self.redis.get(self.key(item)))  # no decode_responses
        return MISS if raw is None else Entry.loads(raw)

    async def put(self, item: int, entry: Entry, hard_ttl_s: float, lock: RedisLock | None) -> bool:
        """Write ``entry``; through ``lock``'s fence when a lock guards the refresh."""
        ttl_ms = max(1, round(hard_ttl_s * 1000))
        if lock is not None:
            return await lock.fenced_set(self.key(item), entry.dumps(), ttl_ms)
        await self.redis.set(self.key(item), entry.dumps(), px=ttl_ms)
        return True

    async def claim(self, item: int, lock: RedisLock) -> Entry | Claim:
        """The cold path's one round trip: take ``lock``, or learn the value or the 404.

        Returns the entry if one appeared since the caller's miss, else :attr:`Claim.WON`
        (``lock`` is held: read the origin), :attr:`Claim.HELD` (wait) or
        :attr:`Claim.MISSING` (a remembered 404).
        """
        found, raw = await lock.claim(self.key(item), self.missing_key(item))
        return Entry.loads(raw) if raw is not None else found

    async def fill(
        self, item: int, entry: Entry, hard_ttl_s: float, lock: RedisLock, *, announce: bool
    ) -> bool:
        """The refresh's one round trip: fenced write, the ready message, release.

        Returns ``False`` when the fence refused the write (the lock was no longer ours).
        """
        body = entry.dumps()
        channel, message = ("", b"")
        if announce:
            channel, message = self.ready_channel(item), b"%d %b" % (item, body)
        return await lock.fill(
            self.key(item), body, max(1, round(hard_ttl_s * 1000)), channel, message
        )

    async def announce(self, item: int, entry: Entry | None) -> None:
        """Tell waiters on every pod that the refresh of ``item`` ended, with its value."""
        message = b"%d" % item if entry is None else b"%d %b" % (item, entry.dumps())
        await self.redis.publish(self.ready_channel(item), message)


class Waiter:
    """One request waiting for a refresh: woken with the new entry, or ``None`` on failure."""

    __slots__ = ("entry", "event")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.entry: Entry | None = None

    def wake(self, entry: Entry | None) -> None:
        self.entry = entry
        self.event.set()


class ReadyNotifier:
    """One pub/sub subscription per pod, fanned out to the local waiters of each item.

    A waiter registers *before* it re-reads the cache, so a value written after that read is
    always announced to it: no lost wake-up. Waits are bounded by the caller's timeout, so a
    message lost to a Redis restart costs one timeout slice, not a hung request.

    Waiters wake in arrival order: a pod answers its ~25 waiters one after another (a few
    hundred microseconds each), so the one that has waited longest goes first and the tail
    latency is its wait plus one response, not plus the whole queue.
    """

    def __init__(self, redis_factory: Callable[[], Redis]) -> None:
        self._redis_factory = redis_factory
        # per item, an insertion-ordered set: dict keys keep arrival order
        self._waiters: defaultdict[int, dict[Waiter, None]] = defaultdict(dict)
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="ready-notifier")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # bounded: redis-py can swallow a cancel that lands inside a command
            await asyncio.wait([self._task], timeout=2)
            self._task = None

    def register(self, item: int) -> Waiter:
        waiter = Waiter()
        self._waiters[item][waiter] = None
        return waiter

    def unregister(self, item: int, waiter: Waiter) -> None:
        waiters = self._waiters.get(item)
        if waiters is not None:
            waiters.pop(waiter, None)
            if not waiters:
                del self._waiters[item]

    async def _listen(self) -> None:
        while True:
            redis = self._redis_factory()
            try:
                async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.psubscribe(READY_PATTERN)
                    self._subscribed.set()
                    async for message in pubsub.listen():
                        self._on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("ready-notifier lost Redis; resubscribing", exc_info=True)
                self._wake_all()  # waiters re-check rather than sleep through an outage
                await asyncio.sleep(0.1)
            finally:
                await redis.aclose()

    def _on_message(self, data: bytes) -> None:
        """``b"<id> <entry>"`` wakes that item's waiters with the value, ``b"<id>"`` without.

        Anything else is logged and dropped: a stray publish on the channel must neither
        wake every waiter nor cost the subscription.
        """
        head, _, raw = data.partition(b" ")
        try:
            item = int(head)
            entry = Entry.loads(raw) if raw else None
        except (ValueError, CorruptEntry):
            log.warning("ignored a non-ready message on %s: %r", READY_PATTERN, data[:60])
            return
        self._wake(item, entry)

    def _wake(self, item: int, entry: Entry | None) -> None:
        for waiter in self._waiters.get(item, ()):
            waiter.wake(entry)

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.wake(None)
