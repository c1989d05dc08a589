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
Redis ignores the braces. On one Redis the pods subscribe to the pattern :data:`READY_PATTERN`
once; on a cluster the channel is a *shard* channel (``SPUBLISH``, Redis 7): only the nodes
of the item's slot carry its messages, where a plain ``PUBLISH`` crosses every node, and each
pod subscribes (``SSUBSCRIBE``) to an item's channel on its node when it first waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from collections.abc import Callable
from typing import cast

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import PubSub

from stampede.envelope import MISS, Entry, Miss
from stampede.errors import CorruptEntry
from stampede.lock import Claim, RedisClient, RedisLock

__all__ = ["READY_PATTERN", "CacheStore", "ReadyNotifier", "Waiter", "jittered_ttl"]

log = logging.getLogger(__name__)

READY_PATTERN = "ready:item:*"  # every item's ready channel (CacheStore.ready_channel)


SUBSCRIBE_TIMEOUT_S = 2.0  # how long watch() waits for a node to confirm an SSUBSCRIBE


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

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis
        self.publish = "spublish" if isinstance(redis, RedisCluster) else "publish"

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
            self.key(item), body, max(1, round(hard_ttl_s * 1000)), channel, message, self.publish
        )

    async def announce(self, item: int, entry: Entry | None) -> None:
        """Tell waiters on every pod that the refresh of ``item`` ended, with its value."""
        message = b"%d" % item if entry is None else b"%d %b" % (item, entry.dumps())
        channel = self.ready_channel(item)
        if isinstance(self.redis, RedisCluster):
            await self.redis.spublish(channel, message)
        else:
            await self.redis.publish(channel, message)


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

    A waiter registers, and awaits :meth:`watch`, *before* it re-reads the cache, so a value
    written after that read is always announced to it: no lost wake-up. Waits are bounded by
    the caller's timeout, so a message lost to a Redis restart costs one timeout slice, not a
    hung request.

    Waiters wake in arrival order: a pod answers its ~25 waiters one after another (a few
    hundred microseconds each), so the one that has waited longest goes first and the tail
    latency is its wait plus one response, not plus the whole queue.

    On a Redis Cluster (the factory makes a ``RedisCluster``) there is no pattern for shard
    channels, so :meth:`watch` subscribes to an item's channel the first time this pod waits
    for it, on a plain connection to the node that owns the channel's slot (redis-py's
    cluster pub/sub polls its nodes one after another, each with its own timeout, which
    delays a message by up to that timeout per node), and keeps it: a hot key costs one
    ``SSUBSCRIBE`` per pod, not one per wait. A node's connection that breaks (failover) or
    answers ``MOVED`` (resharding) is dropped with its channels; their waiters are woken to
    re-check, and their next wait subscribes again on the slot's owner as the refreshed
    topology names it. Not for an unbounded set of cold keys: subscriptions are never
    dropped while the pod runs (one per item that ever had a waiter here).
    """

    def __init__(self, redis_factory: Callable[[], RedisClient]) -> None:
        self._redis_factory = redis_factory
        # per item, an insertion-ordered set: dict keys keep arrival order
        self._waiters: defaultdict[int, dict[Waiter, None]] = defaultdict(dict)
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._cluster: RedisCluster | None = None  # sharded mode
        self._shards: dict[str, _Shard] = {}  # node name -> its subscriptions
        self._watched: dict[int, _Shard] = {}  # item -> the shard that carries its channel
        self._watching: dict[int, asyncio.Future[None]] = {}  # subscriptions in flight
        self._stale_topology = False

    async def start(self) -> None:
        if self._task is not None or self._cluster is not None:
            return
        client = self._redis_factory()
        if isinstance(client, RedisCluster):
            self._cluster = client  # sharded: subscriptions are made by watch()
            return
        await client.aclose()
        self._task = asyncio.create_task(self._listen(), name="ready-notifier")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5)

    async def stop(self) -> None:
        tasks = [t for t in [self._task, *(s.task for s in self._shards.values())] if t]
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: redis-py can swallow a cancel that lands inside a command
            await asyncio.wait(tasks, timeout=2)
        self._task = None
        for shard in list(self._shards.values()):
            await shard.close()
        self._shards.clear()
        self._watched.clear()
        if self._cluster is not None:
            await self._cluster.aclose()
            self._cluster = None

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

    async def watch(self, item: int) -> None:
        """Be subscribed to ``item``'s ready channel before returning (at once on one Redis).

        A subscription that fails or is not confirmed within :data:`SUBSCRIBE_TIMEOUT_S`
        is logged and left to the next wait: the waiter then learns of the value by its
        re-check slice, as after a lost message.
        """
        if self._cluster is None or item in self._watched:
            return
        pending = self._watching.get(item)
        if pending is None:
            pending = asyncio.ensure_future(self._ssubscribe(self._cluster, item))
            self._watching[item] = pending
            pending.add_done_callback(lambda _: self._watching.pop(item, None))
        try:
            await asyncio.shield(pending)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("subscribing to %s failed", CacheStore.ready_channel(item), exc_info=True)

    async def _ssubscribe(self, cluster: RedisCluster, item: int) -> None:
        if self._stale_topology:  # a node went away: ask the cluster who owns what now
            self._stale_topology = False
            await cluster.nodes_manager.initialize()
        await cluster.initialize()  # once: the slot map, before the first lookup
        channel = CacheStore.ready_channel(item)
        node = cluster.get_node_from_key(channel)
        if node is None:
            raise ConnectionError(f"no node serves the slot of {channel} yet")
        shard = self._shards.get(node.name)
        if shard is None:
            password = node.connection_kwargs.get("password")
            client = Redis(host=node.host, port=int(node.port), password=password)
            shard = self._shards[node.name] = _Shard(node.name, client)
        confirmed = shard.confirmed.setdefault(channel.encode(), asyncio.Event())
        async with shard.lock:  # one connection per shard: no two tasks open it at once
            await shard.pubsub.ssubscribe(channel)
            if shard.task is None:
                shard.task = asyncio.create_task(self._listen_shard(shard), name=shard.name)
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
            await confirmed.wait()
        shard.items.add(item)
        self._watched[item] = shard

    async def _listen_shard(self, shard: _Shard) -> None:
        try:
            async for message in shard.pubsub.listen():
                kind = message["type"]
                if kind == "smessage":
                    self._on_message(message["data"])
                elif kind == "ssubscribe":
                    event = shard.confirmed.pop(message["channel"], None)
                    if event is not None:
                        event.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("ready-notifier lost %s; its items resubscribe", shard.name, exc_info=True)
        if self._shards.get(shard.name) is shard:
            del self._shards[shard.name]
        for item in shard.items:
            self._watched.pop(item, None)
            self._wake(item, None)  # its waiters re-check rather than sleep through a failover
        self._stale_topology = True
        await shard.close()

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


class _Shard:
    """One cluster node's shard subscriptions: a plain connection, its listener, its items."""

    def __init__(self, name: str, client: Redis) -> None:
        self.name = name
        self.client = client
        self.pubsub: PubSub = client.pubsub()
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None
        self.confirmed: dict[bytes, asyncio.Event] = {}  # channel -> set on its ssubscribe
        self.items: set[int] = set()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]
            await self.client.aclose()
