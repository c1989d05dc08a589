"""The recommended stack: single-flight cold path, XFetch when fresh, SWR when stale, jitter."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from stampede.origin import Origin
from tests.helpers import Clock, MakeStrategy, eventually
from tests.strategies.contract import LOCK_KEY, StrategyContract, loader


class TestRecommendedContract(StrategyContract):
    strategy = "recommended"


async def settled(redis: Redis, origin: Origin, reads: int) -> None:
    async def done() -> bool:
        return len(origin.reads) >= reads and not await redis.exists(LOCK_KEY)

    await eventually(done)


async def test_fresh_value_near_expiry_refreshes_early(
    make_strategy: MakeStrategy, origin: Origin, redis_client: Redis, clock: Clock
) -> None:
    strategy = make_strategy("recommended", ttl_s=5, beta=100, jitter=0)
    await strategy.get(1, loader(origin))
    clock.advance(4.5)  # fresh; the seeded draw fires for any gap under ~1.7 s
    assert (await strategy.get(1, loader(origin))).outcome == "early_refresh"
    await settled(redis_client, origin, 2)
    assert len(origin.reads) == 2


async def test_stale_value_is_served_while_one_refresh_runs(
    make_strategy: MakeStrategy, origin: Origin, redis_client: Redis, clock: Clock
) -> None:
    strategy = make_strategy("recommended", ttl_s=5, stale_s=5)
    await strategy.get(1, loader(origin))
    clock.advance(6.5)  # past any jittered soft expiry (at most 6 s)
    results = await asyncio.gather(*(strategy.get(1, loader(origin)) for _ in range(10)))
    assert {r.outcome for r in results} == {"stale"}
    await settled(redis_client, origin, 2)
    assert len(origin.reads) == 2


def test_jitter_is_on_by_default(make_strategy: MakeStrategy) -> None:
    assert make_strategy("recommended").jitter == 0.2
    assert make_strategy("recommended", jitter=0).jitter == 0
