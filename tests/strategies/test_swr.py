"""Stale-while-revalidate: serve the old value at once while one refresh runs."""

from __future__ import annotations

import asyncio
from collections import Counter

from redis.asyncio import Redis

from stampede.envelope import Entry
from stampede.origin import Origin
from tests.helpers import Clock, MakeStrategy, eventually
from tests.strategies.contract import ITEM_KEY, LOCK_KEY, StrategyContract, loader, refreshed


class TestSwrContract(StrategyContract):
    strategy = "swr"


async def entry_in(redis: Redis) -> Entry:
    return Entry.loads(await redis.get(ITEM_KEY))


async def test_past_soft_expiry_serves_stale_with_one_background_refresh(
    make_strategy: MakeStrategy, origin: Origin, redis_client: Redis, clock: Clock
) -> None:
    swr = make_strategy("swr", ttl_s=5, stale_s=5)
    first = await swr.get(1, loader(origin))
    old = await entry_in(redis_client)
    clock.advance(6)  # soft expiry passed, still inside the stale window

    results = await asyncio.gather(*(swr.get(1, loader(origin)) for _ in range(10)))
    assert Counter(r.outcome for r in results) == {"stale": 10}
    assert all(r.value == first.value for r in results)

    await eventually(lambda: refreshed(redis_client, old))
    assert len(origin.reads) == 2  # the cold read and exactly one background refresh
    assert (await swr.get(1, loader(origin))).outcome == "hit"
    assert len(origin.reads) == 2


async def test_a_fresh_value_is_a_plain_hit(
    make_strategy: MakeStrategy, origin: Origin, clock: Clock
) -> None:
    swr = make_strategy("swr", ttl_s=5)
    await swr.get(1, loader(origin))
    clock.advance(4.0)
    assert (await swr.get(1, loader(origin))).outcome == "hit"
    assert len(origin.reads) == 1


async def test_the_hard_ttl_covers_the_stale_window(
    make_strategy: MakeStrategy, origin: Origin, redis_client: Redis
) -> None:
    swr = make_strategy("swr", ttl_s=5, stale_s=20)
    await swr.get(1, loader(origin))
    assert 20_000 < await redis_client.pttl(ITEM_KEY) <= 25_000


async def test_a_failed_refresh_keeps_serving_stale(
    make_strategy: MakeStrategy, origin: Origin, redis_client: Redis, clock: Clock
) -> None:
    swr = make_strategy("swr", ttl_s=5, stale_s=5)
    await swr.get(1, loader(origin))
    old = await entry_in(redis_client)
    clock.advance(6)
    origin.error_rate = 1.0
    assert (await swr.get(1, loader(origin))).outcome == "stale"

    async def refresh_failed() -> bool:
        return swr.counters["background_errors"] == 1

    await eventually(refresh_failed)
    assert await redis_client.exists(LOCK_KEY) == 0
    assert await entry_in(redis_client) == old  # stale-if-error: nothing overwritten
    again = await swr.get(1, loader(origin))
    assert again.outcome == "stale"  # and the next request may try again
