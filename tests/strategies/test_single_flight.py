"""Single-flight: one refresher per key across pods; waiters by polling or notification."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any, ClassVar

import pytest
from redis.asyncio import Redis

from stampede.cache import CacheStore
from stampede.envelope import Entry
from stampede.errors import OriginError, WaitTimeout
from stampede.origin import Origin
from stampede.strategies import Strategy
from tests.helpers import MakeStrategy
from tests.strategies.contract import LOCK_KEY, StrategyContract, loader


class TestSingleFlightNotifyContract(StrategyContract):
    strategy = "single_flight"
    config: ClassVar[dict[str, Any]] = {"wait": "notify"}


class TestSingleFlightPollContract(StrategyContract):
    strategy = "single_flight"
    config: ClassVar[dict[str, Any]] = {"wait": "poll", "poll_ms": 10}


@pytest.mark.parametrize("wait", ["poll", "notify"])
async def test_waiters_get_the_refreshers_value(
    make_strategy: MakeStrategy, origin: Origin, wait: str
) -> None:
    strategy = make_strategy("single_flight", wait=wait)
    results = await asyncio.gather(*(strategy.get(1, loader(origin)) for _ in range(20)))
    assert len(origin.reads) == 1
    outcomes = Counter(r.outcome for r in results)
    assert outcomes["miss"] == 1
    assert outcomes["wait_hit"] >= 1  # 20 callers inside one 50 ms read: someone waited
    assert strategy.counters["waits"] >= outcomes["wait_hit"]


@pytest.mark.parametrize("renew", [True, False])
async def test_a_refresh_slower_than_its_lease(
    make_strategy: MakeStrategy, origin_file: Any, renew: bool
) -> None:
    """Origin 400 ms, lease 150 ms: the watchdog keeps one reader; without it the fence works.

    The ``renew=False`` half proves the test can fail: the lease runs out, a second refresher
    gets in, and the first one's late write is refused by the fence.
    """
    slow = Origin(origin_file, latency_s=0.4)
    await slow.open()
    try:
        strategy = make_strategy("single_flight", lease_ms=150, renew=renew)
        results = await asyncio.gather(*(strategy.get(1, loader(slow)) for _ in range(10)))
    finally:
        await slow.close()
    assert all(r.data()["id"] == 1 for r in results)
    if renew:
        assert len(slow.reads) == 1
        assert strategy.counters["fence_refused"] == 0
    else:
        assert len(slow.reads) > 1
        assert strategy.counters["fence_refused"] >= 1


async def test_waiter_gives_up_after_wait_timeout(
    make_strategy: MakeStrategy, origin: Origin, redis_client: Redis
) -> None:
    """A holder that never writes (another pod, stuck) costs a waiter WaitTimeout, not a hang."""
    stuck = CacheStore(redis_client).lock(1, lease_ms=60_000)
    assert await stuck.acquire()
    strategy = make_strategy("single_flight", wait_timeout_s=0.3, lease_ms=100)
    with pytest.raises(WaitTimeout, match="item 1"):
        await strategy.get(1, loader(origin))
    assert strategy.counters["wait_timeouts"] == 1
    assert origin.reads == []
    assert (await redis_client.get(LOCK_KEY)).decode() == stuck.token


@pytest.mark.parametrize("wait", ["poll", "notify"])
async def test_a_failed_holder_hands_over_to_a_waiter(
    make_strategy: MakeStrategy, origin: Origin, wait: str
) -> None:
    calls = 0

    async def first_call_fails() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.05)
            raise OriginError("injected: first read fails")
        return await origin.read(1)

    strategy = make_strategy("single_flight", wait=wait, poll_ms=10)
    results = await asyncio.gather(
        *(strategy.get(1, first_call_fails) for _ in range(5)), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], OriginError)
    assert calls == 2  # the failure was followed by exactly one more read
    outcomes = Counter(r.outcome for r in results if not isinstance(r, BaseException))
    assert outcomes["miss"] == 1
    assert outcomes["miss"] + outcomes["wait_hit"] + outcomes["hit"] == 4


async def gets_for_ten_cold_callers(
    make_strategy: MakeStrategy, origin: Origin, redis: Redis, wait: str
) -> int:
    await redis.flushall()
    strategy = make_strategy("single_flight", wait=wait, poll_ms=10)
    await redis.config_resetstat()
    results = await asyncio.gather(*(strategy.get(1, loader(origin)) for _ in range(10)))
    assert Counter(r.outcome for r in results)["wait_hit"] >= 1
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


async def test_notify_waiters_take_the_value_from_the_message(
    make_strategy: MakeStrategy, origin: Origin, redis_client: Redis
) -> None:
    """Notified waiters are woken with the value: no GET per waiter after the wake.

    10 GETs on entry, 1 re-check by the winner, 2 inside the fence and release scripts; a
    polling waiter GETs again every ``poll_ms``, which is what makes the bound meaningful.
    """
    notify = await gets_for_ten_cold_callers(make_strategy, origin, redis_client, "notify")
    poll = await gets_for_ten_cold_callers(make_strategy, origin, redis_client, "poll")
    assert notify <= 13
    assert poll > notify + 9


async def announcements_with_lock_state(
    make_strategy: MakeStrategy,
    origin: Origin,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    strategy: Strategy | None = None,
) -> list[tuple[bool, bool]]:
    """One cold get in notify mode; per announcement: (carried a value, lock held at publish)."""
    strategy = strategy or make_strategy("single_flight", wait="notify")
    publish = strategy.store.announce
    seen: list[tuple[bool, bool]] = []

    async def spy(item: int, entry: Entry | None) -> None:
        seen.append((entry is not None, bool(await redis.exists(LOCK_KEY))))
        await publish(item, entry)

    monkeypatch.setattr(strategy.store, "announce", spy)
    with contextlib.suppress(OriginError):
        await strategy.get(1, loader(origin))
    return seen


async def test_notify_announces_the_value_before_releasing_the_lock(
    make_strategy: MakeStrategy,
    origin: Origin,
    redis_client: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Publishing inside the lock takes the release's round trip off every waiter's wait.

    The value's message goes out from the fill script, between its write and its release
    (the order is checked in ``tests/test_lock.py``), never as a separate announcement.
    """
    fills: list[bool] = []
    strategy = make_strategy("single_flight", wait="notify")
    fill = strategy.store.fill

    async def spy(*args: Any, announce: bool) -> bool:
        fills.append(announce)
        return await fill(*args, announce=announce)

    monkeypatch.setattr(strategy.store, "fill", spy)
    seen = await announcements_with_lock_state(
        make_strategy, origin, redis_client, monkeypatch, strategy
    )
    assert fills == [True]
    assert seen == []
    assert await redis_client.exists(LOCK_KEY) == 0


async def test_notify_announces_a_failure_after_releasing_the_lock(
    make_strategy: MakeStrategy,
    origin: Origin,
    redis_client: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Woken without a value, a waiter retries the lock: it must find the lock free."""
    origin.error_rate = 1.0
    seen = await announcements_with_lock_state(make_strategy, origin, redis_client, monkeypatch)
    assert seen == [(False, False)]


@pytest.mark.parametrize("wait", ["poll", "notify"])
async def test_a_wall_clock_step_does_not_time_the_waiters_out(
    make_strategy: MakeStrategy, origin_file: Any, clock: Any, wait: str
) -> None:
    """Waiters' deadlines are durations (monotonic): the wall clock jumping an hour mid-wait
    (NTP, a VM resumed) must not turn every waiter into a 503."""
    slow = Origin(origin_file, latency_s=0.3)
    await slow.open()
    try:
        strategy = make_strategy("single_flight", wait=wait, poll_ms=10)
        calls = [asyncio.ensure_future(strategy.get(1, loader(slow))) for _ in range(10)]
        await asyncio.sleep(0.1)  # the winner is reading, the others wait
        clock.advance(3600)
        results = await asyncio.gather(*calls)
    finally:
        await slow.close()
    outcomes = Counter(r.outcome for r in results)
    assert outcomes["miss"] == 1 and outcomes["wait_hit"] == 9


async def test_a_failure_between_acquire_and_spawn_leaves_no_lock(
    make_strategy: MakeStrategy,
    origin: Origin,
    redis_client: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Redis error (or a cancel) after the lock was taken and before the refresh was spawned
    must release it: otherwise the key has no refresher until the lease runs out."""
    strategy = make_strategy("single_flight")
    seen = Entry(b"{}", created_at=0.0, delta=0.1, soft_expiry=0.0)

    async def broken_get(item: int) -> Entry:
        assert await redis_client.exists(LOCK_KEY)  # the lock is held at this point
        raise ConnectionError("Redis went away after the acquire")

    monkeypatch.setattr(strategy.store, "get", broken_get)
    with pytest.raises(ConnectionError):
        await strategy.refresh_in_background(1, loader(origin), seen)
    assert not await redis_client.exists(LOCK_KEY)
    assert origin.reads == []
