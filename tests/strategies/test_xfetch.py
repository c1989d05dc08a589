"""XFetch: the pure early-refresh decision, and the strategy built on it."""

from __future__ import annotations

import asyncio
import math
import random

import pytest
from redis.asyncio import Redis

from stampede.envelope import Entry
from stampede.origin import Origin
from stampede.strategies.xfetch import should_refresh_early
from tests.helpers import Clock, MakeStrategy, eventually
from tests.strategies.contract import ITEM_KEY, StrategyContract, loader, refreshed

DRAWS = 5000
ENTRY = Entry(value=b'{"id":1}', created_at=0.0, delta=1.0, soft_expiry=10.0)


class TestXFetchContract(StrategyContract):
    strategy = "xfetch"


def firing_rate(now: float, beta: float, entry: Entry = ENTRY, seed: int = 1) -> float:
    rng = random.Random(seed)
    return sum(should_refresh_early(entry, now, beta, rng) for _ in range(DRAWS)) / DRAWS


def test_probability_rises_toward_expiry() -> None:
    times = [0.0, 2.0, 4.0, 6.0, 8.0, 9.0, 9.5, 9.9]
    rates = [firing_rate(t, beta=1.0) for t in times]
    assert rates == sorted(rates)
    assert rates[0] < 0.01 and rates[-1] > 0.85


@pytest.mark.parametrize("now", [6.0, 8.0, 9.0, 9.5, 9.9])
def test_probability_matches_the_closed_form(now: float) -> None:
    """P(fire) = exp(-(expiry - now) / (delta * beta)) for U uniform on (0, 1]."""
    expected = math.exp(-(ENTRY.soft_expiry - now) / (ENTRY.delta * 1.0))
    assert firing_rate(now, beta=1.0) == pytest.approx(expected, abs=0.03)


def test_beta_zero_never_fires() -> None:
    assert firing_rate(9.999, beta=0.0) == 0.0


@pytest.mark.parametrize("now", [10.0, 10.5, 100.0])
def test_past_expiry_always_fires(now: float) -> None:
    assert firing_rate(now, beta=1.0) == 1.0
    assert firing_rate(now, beta=0.01) == 1.0


def test_larger_beta_fires_more() -> None:
    rates = [firing_rate(8.0, beta) for beta in (0.25, 0.5, 1.0, 2.0, 4.0)]
    assert rates == sorted(rates)
    assert rates[-1] - rates[0] > 0.5


def test_slower_values_start_earlier() -> None:
    quick = Entry(value=b"{}", created_at=0.0, delta=0.2, soft_expiry=10.0)
    slow = Entry(value=b"{}", created_at=0.0, delta=2.0, soft_expiry=10.0)
    assert firing_rate(8.0, 1.0, slow) > firing_rate(8.0, 1.0, quick) + 0.3


def test_a_seeded_rng_makes_the_decision_reproducible() -> None:
    a, b = random.Random(42), random.Random(42)
    draws_a = [should_refresh_early(ENTRY, 9.0, 1.0, a) for _ in range(200)]
    draws_b = [should_refresh_early(ENTRY, 9.0, 1.0, b) for _ in range(200)]
    assert draws_a == draws_b
    assert True in draws_a and False in draws_a


def test_u_of_zero_is_never_drawn() -> None:
    """``rng.random()`` may return 0.0; ln(0) must not be taken."""

    class Zero(random.Random):
        def random(self) -> float:
            return 0.0

    assert should_refresh_early(ENTRY, 0.0, 1.0, Zero()) is False  # u = 1: ln(1) = 0


async def test_near_expiry_with_large_beta_refreshes_early(
    make_strategy: MakeStrategy, origin: Origin, redis_client: Redis, clock: Clock
) -> None:
    xfetch = make_strategy("xfetch", ttl_s=5, beta=100)
    first = await xfetch.get(1, loader(origin))
    old = Entry.loads(await redis_client.get(ITEM_KEY))
    clock.advance(4.5)  # 0.5 s before expiry: delta x beta = 5 s makes a draw fire ~90%

    results = await asyncio.gather(*(xfetch.get(1, loader(origin)) for _ in range(10)))
    outcomes = [r.outcome for r in results]
    assert outcomes.count("early_refresh") == 1  # one background refresh, under the lock
    assert set(outcomes) <= {"early_refresh", "hit"}
    assert all(r.value == first.value for r in results)
    await eventually(lambda: refreshed(redis_client, old))
    assert len(origin.reads) == 2


async def test_beta_zero_never_refreshes_early(
    make_strategy: MakeStrategy, origin: Origin, clock: Clock
) -> None:
    xfetch = make_strategy("xfetch", ttl_s=5, beta=0)
    await xfetch.get(1, loader(origin))
    clock.advance(4.99)
    results = await asyncio.gather(*(xfetch.get(1, loader(origin)) for _ in range(10)))
    assert {r.outcome for r in results} == {"hit"}
    assert xfetch.counters["early_attempts"] == 0
    assert len(origin.reads) == 1
