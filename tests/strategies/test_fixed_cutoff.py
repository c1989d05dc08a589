"""Fixed cut-off: refresh in the background once a value's age passes cutoff x TTL."""

from __future__ import annotations

import asyncio
from collections import Counter

from redis.asyncio import Redis

from stampede.envelope import Entry
from stampede.origin import Origin
from tests.helpers import Clock, MakeStrategy, eventually
from tests.strategies.contract import ITEM_KEY, StrategyContract, loader, refreshed


class TestFixedCutoffContract(StrategyContract):
    strategy = "fixed_cutoff"


async def test_before_the_cutoff_is_a_hit(
    make_strategy: MakeStrategy, origin: Origin, clock: Clock
) -> None:
    strategy = make_strategy("fixed_cutoff", ttl_s=5, cutoff=0.8)
    await strategy.get(1, loader(origin))
    clock.advance(3.5)
    assert (await strategy.get(1, loader(origin))).outcome == "hit"
    assert strategy.counters["early_attempts"] == 0


async def test_past_the_cutoff_everyone_asks_and_one_refreshes(
    make_strategy: MakeStrategy, origin: Origin, redis_client: Redis, clock: Clock
) -> None:
    strategy = make_strategy("fixed_cutoff", ttl_s=5, cutoff=0.8)
    first = await strategy.get(1, loader(origin))
    old = Entry.loads(await redis_client.get(ITEM_KEY))
    clock.advance(4.2)

    results = await asyncio.gather(*(strategy.get(1, loader(origin)) for _ in range(10)))
    assert Counter(r.outcome for r in results) == {"early_refresh": 1, "hit": 9}
    assert all(r.value == first.value for r in results)
    assert strategy.counters["early_attempts"] == 10  # the mini-cliff of attempts

    await eventually(lambda: refreshed(redis_client, old))
    assert len(origin.reads) == 2
    assert (await strategy.get(1, loader(origin))).outcome == "hit"  # the new value is young
