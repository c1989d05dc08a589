"""The contract every registered strategy passes, run by subclassing (dogpile.cache style).

A strategy's test module declares ``class TestXContract(StrategyContract): strategy = "x"``;
``test_registry.py`` fails when a registered name has no such subclass, so a new strategy
cannot skip the contract. Everything runs in-process against a real Redis and a real SQLite
origin (50 ms latency); the pod is one process, so "once per pod" means once here.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, ClassVar

import pytest
from redis.asyncio import Redis

from stampede.cache import CacheStore
from stampede.envelope import Entry
from stampede.errors import ItemNotFound, OriginError
from stampede.origin import Origin
from stampede.strategies import Loader, Strategy
from tests.helpers import MakeStrategy, eventually, outside_redis

CALLERS = 20
ITEM_KEY = CacheStore.key(1)
LOCK_KEY = CacheStore.lock_key(1)


def loader(origin: Origin, item: int = 1) -> Loader:
    return lambda: origin.read(item)


async def refreshed(redis: Redis, old: Entry) -> bool:
    """A newer entry than ``old`` is cached and its refresher has released the lock."""
    raw = await redis.get(ITEM_KEY)
    newer = raw is not None and Entry.loads(raw).created_at > old.created_at
    return newer and not await redis.exists(LOCK_KEY)


class StrategyContract:
    """Behaviour every strategy owes the pods; subclasses set :attr:`strategy`."""

    strategy: ClassVar[str]
    config: ClassVar[dict[str, Any]] = {}
    #: one origin read per cold key per pod (False: naive-like, one per caller at most)
    coalesces: ClassVar[bool] = True
    #: the refresher holds a lock in Redis while it reads (any key name)
    redis_lock: ClassVar[bool] = True
    #: the value is stored as a :class:`~stampede.envelope.Entry` under ``CacheStore.key(id)``
    envelope: ClassVar[bool] = True

    @pytest.fixture
    def subject(self, make_strategy: MakeStrategy) -> Strategy:
        return make_strategy(self.strategy, **self.config)

    async def test_registered_under_its_name(self, subject: Strategy) -> None:
        assert subject.name == self.strategy

    async def test_first_call_is_a_miss_and_the_second_a_hit(
        self, subject: Strategy, origin: Origin
    ) -> None:
        first = await subject.get(1, loader(origin))
        second = await subject.get(1, loader(origin))
        assert first.outcome == "miss"
        assert second.outcome == "hit"
        assert first.data()["id"] == 1
        assert second.value == first.value
        assert len(origin.reads) == 1

    async def test_concurrent_cold_miss_reads_the_origin_at_most_once_per_pod(
        self, subject: Strategy, origin: Origin, redis_client: Redis
    ) -> None:
        results = await asyncio.gather(*(subject.get(1, loader(origin)) for _ in range(CALLERS)))
        reads = len(origin.reads)
        outcomes = Counter(r.outcome for r in results)
        assert all(r.value == results[0].value for r in results)
        assert results[0].data()["id"] == 1
        if not self.coalesces:
            assert 1 <= reads <= CALLERS
            assert outcomes["miss"] == reads  # truthful: one "miss" per origin read
        else:
            assert reads == 1
            assert outcomes["miss"] == 1
            assert set(outcomes) - {"miss"} <= {"wait_hit", "hit"}
        assert subject.counters["origin_calls"] == reads
        assert await redis_client.exists(LOCK_KEY) == 0

    async def test_concurrent_cold_miss_leaves_only_the_value(
        self, subject: Strategy, origin: Origin, redis_client: Redis
    ) -> None:
        await asyncio.gather(*(subject.get(1, loader(origin)) for _ in range(CALLERS)))
        if self.envelope:
            assert await redis_client.keys("*") == [ITEM_KEY.encode()]

    async def test_a_hit_never_calls_the_origin(self, subject: Strategy, origin: Origin) -> None:
        await subject.get(1, loader(origin))
        assert len(origin.reads) == 1

        async def must_not_load() -> dict[str, Any]:
            raise AssertionError("a hit called the origin")

        results = await asyncio.gather(*(subject.get(1, must_not_load) for _ in range(CALLERS)))
        assert {r.outcome for r in results} == {"hit"}
        assert len(origin.reads) == 1

    async def test_the_value_is_cached_in_one_envelope_with_a_hard_ttl(
        self, subject: Strategy, origin: Origin, redis_client: Redis
    ) -> None:
        if not self.envelope:
            pytest.skip(f"{self.strategy} stores its library's own format")
        await subject.get(1, loader(origin))
        entry = Entry.loads(await redis_client.get(ITEM_KEY))
        lifetime = entry.soft_expiry - entry.created_at
        ttl = subject.config.ttl_s
        assert ttl <= lifetime <= ttl * (1 + subject.jitter) + 1e-6
        assert entry.delta >= origin.latency_s * 0.9  # the measured recompute time
        hard_ms = await redis_client.pttl(ITEM_KEY)
        hard_s = lifetime + subject.stale_window_s()  # Redis' TTL: soft lifetime + stale window
        assert 0 < hard_ms <= hard_s * 1000 + 1  # +1: the write rounds to whole ms
        assert hard_ms > hard_s * 1000 - 2000

    async def test_origin_error_surfaces_and_caches_nothing(
        self, subject: Strategy, origin: Origin, redis_client: Redis
    ) -> None:
        origin.error_rate = 1.0
        with pytest.raises(OriginError):
            await subject.get(1, loader(origin))
        assert await redis_client.keys("*") == []  # no value, no lock, whatever their names
        origin.error_rate = 0.0
        recovered = await subject.get(1, loader(origin))  # nothing left blocks the next caller
        assert recovered.outcome == "miss"

    async def test_unknown_item_is_not_found_and_caches_nothing(
        self, subject: Strategy, origin: Origin, redis_client: Redis
    ) -> None:
        with pytest.raises(ItemNotFound):
            await subject.get(999_999, loader(origin, 999_999))
        # no value and no lock: only the negative entry, for ``negative_ttl_s``
        missing = CacheStore.missing_key(999_999)
        assert await redis_client.keys("*") == [missing.encode()]
        ttl_ms = await redis_client.pttl(missing)
        assert 0 < ttl_ms <= subject.config.negative_ttl_s * 1000
        with pytest.raises(ItemNotFound):  # remembered: the origin is not asked again
            await subject.get(999_999, loader(origin, 999_999))
        assert [r.item for r in origin.reads].count(999_999) == 1

    async def test_concurrent_origin_errors_reach_every_caller(
        self, subject: Strategy, origin: Origin, redis_client: Redis
    ) -> None:
        origin.error_rate = 1.0
        results = await asyncio.gather(
            *(subject.get(1, loader(origin)) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, OriginError) for r in results), results
        assert await redis_client.keys("*") == []

    async def test_cancelling_a_get_in_flight_leaves_no_lock_behind(
        self, subject: Strategy, origin: Origin, redis_client: Redis
    ) -> None:
        reading = asyncio.Event()

        async def slow_load() -> dict[str, Any]:
            reading.set()
            return await origin.read(1)

        task = asyncio.create_task(subject.get(1, slow_load))
        await asyncio.wait_for(reading.wait(), 5)
        await eventually(outside_redis([task]))
        if self.redis_lock:
            assert await redis_client.dbsize() >= 1  # the refresher holds its lock now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await redis_client.keys("*") == []  # no lock left, whatever its name
        after = await subject.get(1, loader(origin))  # not blocked by a leftover lock
        assert after.outcome == "miss"

    async def test_cancelling_waiters_does_not_stop_the_refresher(
        self, subject: Strategy, origin: Origin
    ) -> None:
        started, gate = asyncio.Event(), asyncio.Event()

        async def gated_load() -> dict[str, Any]:
            started.set()
            await gate.wait()  # the refresher's read lasts until the waiters are cancelled
            return await origin.read(1)

        first = asyncio.create_task(subject.get(1, gated_load))
        await asyncio.wait_for(started.wait(), 5)
        others = [asyncio.create_task(subject.get(1, gated_load)) for _ in range(5)]
        await asyncio.sleep(0.1)  # each makes its GET and lock attempt, then waits
        await eventually(outside_redis(others))
        for task in others:
            task.cancel()
        await asyncio.sleep(0)  # the cancels land
        gate.set()  # before gathering: a cancel redis-py swallowed would wait on it forever
        fetched = await asyncio.wait_for(first, 5)
        await asyncio.wait_for(asyncio.gather(*others, return_exceptions=True), 5)
        assert fetched.data()["id"] == 1
        assert fetched.outcome == "miss"
        again = await subject.get(1, loader(origin))
        assert again.outcome == "hit"

    async def test_items_are_cached_independently(self, subject: Strategy, origin: Origin) -> None:
        a, b = await asyncio.gather(
            subject.get(1, loader(origin)), subject.get(2, loader(origin, 2))
        )
        assert (a.outcome, b.outcome) == ("miss", "miss")
        assert (a.data()["id"], b.data()["id"]) == (1, 2)
        assert sorted(r.item for r in origin.reads) == [1, 2]
