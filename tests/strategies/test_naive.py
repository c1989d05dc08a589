"""Naive cache-aside and its ``jitter`` preset: the baseline the others are measured against."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from stampede.cache import CacheStore
from stampede.envelope import Entry
from stampede.origin import Origin
from tests.helpers import MakeStrategy
from tests.strategies.contract import StrategyContract, loader


class TestNaiveContract(StrategyContract):
    strategy = "naive"
    coalesces = False
    redis_lock = False


class TestJitterContract(StrategyContract):
    strategy = "jitter"
    coalesces = False
    redis_lock = False


async def test_naive_lets_the_herd_through(make_strategy: MakeStrategy, origin: Origin) -> None:
    """The stampede itself: concurrent cold callers each read the origin."""
    naive = make_strategy("naive")
    results = await asyncio.gather(*(naive.get(1, loader(origin)) for _ in range(20)))
    assert len(origin.reads) >= 15
    assert [r.outcome for r in results].count("miss") == len(origin.reads)


async def soft_lifetimes(strategy_name: str, make: MakeStrategy, origin: Origin, redis: Redis):
    strategy = make(strategy_name, ttl_s=5.0)
    await asyncio.gather(*(strategy.get(i, loader(origin, i)) for i in range(1, 31)))
    raws = await redis.mget([CacheStore.key(i) for i in range(1, 31)])
    return [round(e.soft_expiry - e.created_at, 6) for e in map(Entry.loads, raws)]


async def test_naive_writes_the_plain_ttl(
    make_strategy: MakeStrategy, origin: Origin, redis_client: Redis
) -> None:
    assert set(await soft_lifetimes("naive", make_strategy, origin, redis_client)) == {5.0}


async def test_jitter_spreads_ttls_over_twenty_percent(
    make_strategy: MakeStrategy, origin: Origin, redis_client: Redis
) -> None:
    lifetimes = await soft_lifetimes("jitter", make_strategy, origin, redis_client)
    assert all(5.0 <= t <= 6.0 for t in lifetimes)
    assert len(set(lifetimes)) > 25  # desynchronised, not one shared expiry
    assert max(lifetimes) - min(lifetimes) > 0.5
