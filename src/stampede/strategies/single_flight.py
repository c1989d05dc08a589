"""Single-flight: one refresher per key across every pod, through a Redis lock.

The first request to miss takes ``lock:item:{id}`` (token, ``SET NX PX``), re-checks the cache,
reads the origin once and writes the value through the lock's fence; everyone else waits for
it. Waiters learn the value is there either by **polling** (``GET`` every ``poll_ms``, as in
the write-up: up to one interval of extra latency per waiter) or by **notification** (one
pub/sub message per refresh carrying the value, fanned out inside each pod). A waiter
whose holder failed takes the lock itself; one that waits past ``wait_timeout_s`` gets
:class:`WaitTimeout` (503).

Fixes: the origin sees one read per expiry, whatever the number of pods and clients.
Does not fix: every waiter still blocks for about one origin read at each expiry (see
``swr``). The lock's lease bounds how long a crashed refresher blocks the key; a refresh that
outlives its lease is renewed by a watchdog and fenced on write (:mod:`stampede.lock`).
"""

from __future__ import annotations

import asyncio
import contextlib

from redis.exceptions import RedisError

from stampede.cache import Waiter
from stampede.config import StrategyConfig
from stampede.envelope import MISS, Entry, Fetched, Miss
from stampede.errors import WaitTimeout
from stampede.lock import Claim, RedisLock
from stampede.outcomes import Outcome
from stampede.registry import register
from stampede.strategies.base import Deps, Loader, Strategy

__all__ = ["SingleFlight"]

NOTIFY_RECHECK_S = 1.0


@register
class SingleFlight(Strategy):
    name = "single_flight"

    def __init__(self, deps: Deps, config: StrategyConfig) -> None:
        super().__init__(deps, config)
        self._refreshing: set[int] = set()  # items this pod refreshes in the background now

    async def get(self, item: int, load: Loader) -> Fetched:
        entry = await self.store.get(item)
        if entry is not MISS:
            return Fetched(entry.value, Outcome.HIT)
        return await self.load_once(item, load)

    async def load_once(self, item: int, load: Loader) -> Fetched:
        """The cold path: become the one refresher, or wait for it.

        One round trip decides (:meth:`CacheStore.claim`): the lock is ours, someone else's,
        or the value (or a remembered 404) turned up since our miss.
        """
        deadline = self.deps.monotonic() + self.config.wait_timeout_s
        waited = False
        while True:
            waiter = await self._register(item)
            try:
                lock = self.store.lock(item, self.config.lease_ms)
                claimed = await self.store.claim(item, lock)
                if claimed is Claim.WON:
                    return await self._refresh_as_winner(item, load, lock)
                if claimed is Claim.MISSING:
                    raise self.remembered_missing(item)
                if isinstance(claimed, Entry):  # filled between our miss and our claim
                    return Fetched(claimed.value, Outcome.WAIT_HIT if waited else Outcome.HIT)
                waited = True
                self.counters["waits"] += 1
                entry = await self._wait(item, waiter, deadline)
            finally:
                self._unregister(item, waiter)
            if entry is not MISS:
                return Fetched(entry.value, Outcome.WAIT_HIT)
            # no value yet: the holder may have failed or lost Redis; try the lock again

    async def refresh_in_background(self, item: int, load: Loader, seen: Entry) -> bool:
        """Start one background refresh of ``item`` unless another caller already runs one.

        Returns whether this call started it. ``seen`` is the entry the caller decided on: if
        the cache already holds a newer one, a refresh has just finished and none starts.
        """
        if item in self._refreshing:  # this pod already runs one: spare Redis the lock attempt
            return False
        lock = self.store.lock(item, self.config.lease_ms)
        if not await lock.acquire():
            return False
        try:
            current = await self.store.get(item)
            if isinstance(current, Entry) and current.created_at > seen.created_at:
                await lock.release()
                return False
            self._refreshing.add(item)
            self.spawn(self._refresh_held(item, load, lock), name=f"refresh:{item}")
        except BaseException:
            # a cancel or a Redis error between the acquire and the spawn: no orphan lock
            self._refreshing.discard(item)
            await asyncio.shield(_release_quietly(lock))
            raise
        return True

    async def _refresh_as_winner(self, item: int, load: Loader, lock: RedisLock) -> Fetched:
        entry = await self._refresh_then_release(item, load, lock)
        return Fetched(entry.value, Outcome.MISS)

    async def _refresh_held(self, item: int, load: Loader, lock: RedisLock) -> None:
        try:
            await self._refresh_then_release(item, load, lock)
        finally:
            self._refreshing.discard(item)

    async def _refresh_then_release(self, item: int, load: Loader, lock: RedisLock) -> Entry:
        """Refresh while holding ``lock`` (its lease renewed), then release it.

        A failed (or cancelled) refresh is announced after the release: the waiters it wakes
        try the lock again and must find it free.
        """
        try:
            async with lock.hold(renew=self.config.renew):
                return await self._refresh(item, load, lock)
        except BaseException:
            await self._announce(item, None)
            raise

    async def _refresh(self, item: int, load: Loader, lock: RedisLock) -> Entry:
        """Read the origin; then write through the fence, announce, release: one round trip.

        The caller's claim already checked the negative cache (or a value was there).
        Announcing before the release takes one Redis round trip off every waiter's wait:
        they take the value from the message and never need the lock.
        """
        entry = await self.read_origin(item, load, negatives_checked=True)
        notify = self.config.wait == "notify"
        if not await self.store.fill(item, entry, self.hard_ttl_s(entry), lock, announce=notify):
            self.counters["fence_refused"] += 1  # a newer holder writes; our value is still fresh
        return entry

    async def _announce(self, item: int, entry: Entry | None) -> None:
        """Publish the refresh's end (notify mode); a lost message costs one re-check slice."""
        if self.config.wait == "notify":
            with contextlib.suppress(RedisError):
                await self.store.announce(item, entry)

    async def _register(self, item: int) -> Waiter | None:
        """Register for ``item``'s ready message, subscribed before the caller's claim."""
        notifier = self.deps.notifier
        if self.config.wait != "notify" or notifier is None:
            return None
        waiter = notifier.register(item)
        try:
            await notifier.watch(item)
        except BaseException:
            notifier.unregister(item, waiter)
            raise
        return waiter

    def _unregister(self, item: int, waiter: Waiter | None) -> None:
        if waiter is not None and self.deps.notifier is not None:
            self.deps.notifier.unregister(item, waiter)

    async def _wait(self, item: int, waiter: Waiter | None, deadline: float) -> Entry | Miss:
        remaining = deadline - self.deps.monotonic()
        if remaining <= 0:
            self.counters["wait_timeouts"] += 1
            raise WaitTimeout(
                f"item {item}: no value after {self.config.wait_timeout_s:g} s of waiting"
            )
        if waiter is None:
            await asyncio.sleep(min(self.config.poll_ms / 1000, remaining))
        else:
            # re-check at least every second: a message lost to a reconnect costs <= 1 s
            slice_s = min(remaining, self.config.lease_ms / 1000, NOTIFY_RECHECK_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(slice_s):  # no extra task per waiter, unlike wait_for
                    await waiter.event.wait()
            if waiter.entry is not None:
                return waiter.entry  # the value came with the message: no GET
        return await self.store.get(item)


async def _release_quietly(lock: RedisLock) -> None:
    with contextlib.suppress(RedisError):
        await lock.release()
