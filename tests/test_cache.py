"""The cache layer: TTL jitter as a pure function, the key layout, the ready notifier."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis, RedisCluster
from redis.crc import key_slot

from stampede import lock as lock_module
from stampede.cache import CacheStore, ReadyNotifier, jittered_ttl
from stampede.envelope import MISS, Entry
from stampede.lab import Lab
from stampede.lock import Claim, LuaScript
from tests.helpers import cache_client, eventually

DRAWS = 10_000


@pytest.mark.parametrize(("base", "spread"), [(5.0, 0.2), (1.0, 1.0), (30.0, 0.05)])
def test_jittered_ttl_stays_within_base_and_base_times_one_plus_spread(
    base: float, spread: float
) -> None:
    rng = random.Random(3)
    ttls = [jittered_ttl(base, spread, rng) for _ in range(DRAWS)]
    assert all(base <= t <= base * (1 + spread) for t in ttls)
    assert min(ttls) < base * (1 + spread * 0.01)  # the whole range is used
    assert max(ttls) > base * (1 + spread * 0.99)


@pytest.mark.parametrize("spread", [0.0, -0.5])
def test_no_spread_returns_the_base_without_drawing(spread: float) -> None:
    rng = random.Random(3)
    state = rng.getstate()
    assert jittered_ttl(5.0, spread, rng) == 5.0
    assert rng.getstate() == state


def test_jittered_ttl_is_reproducible_with_a_seed() -> None:
    a, b = random.Random(11), random.Random(11)
    assert [jittered_ttl(5, 0.2, a) for _ in range(50)] == [
        jittered_ttl(5, 0.2, b) for _ in range(50)
    ]
    c = random.Random(12)
    assert jittered_ttl(5, 0.2, random.Random(11)) != jittered_ttl(5, 0.2, c)


def test_jittered_ttl_is_roughly_uniform() -> None:
    rng = random.Random(5)
    base, spread, bins = 5.0, 0.2, 10
    width = base * spread / bins
    counts = Counter(
        min(bins - 1, int((jittered_ttl(base, spread, rng) - base) / width)) for _ in range(DRAWS)
    )
    expected = DRAWS / bins
    assert all(abs(counts[b] - expected) < 0.15 * expected for b in range(bins)), counts
    mean = sum(jittered_ttl(base, spread, rng) for _ in range(DRAWS)) / DRAWS
    assert mean == pytest.approx(base * (1 + spread / 2), rel=0.005)


def test_key_layout_is_what_every_pod_agrees_on() -> None:
    assert CacheStore.key(7) == "item:{7}"
    assert CacheStore.lock_key(7) == "lock:item:{7}"
    assert CacheStore.missing_key(7) == "missing:item:{7}"
    assert CacheStore.ready_channel(7) == "ready:item:{7}"
    assert CacheStore.item_of(b"lock:item:{7}") == CacheStore.item_of("item:{7}") == 7


@pytest.mark.parametrize("item", [1, 7, 999_999])
def test_an_items_names_share_one_cluster_slot(item: int) -> None:
    """The hash tag: value, lock, negative entry and ready channel of an item, one slot."""
    names = [
        CacheStore.key(item), CacheStore.lock_key(item),
        CacheStore.missing_key(item), CacheStore.ready_channel(item),
    ]  # fmt: skip
    assert {key_slot(name.encode()) for name in names} == {key_slot(str(item).encode())}
    assert key_slot(CacheStore.key(1).encode()) != key_slot(CacheStore.key(2).encode())


async def test_every_script_touches_one_slot(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every Lua script, called the way the store calls it, declares keys of a single slot.

    A cluster refuses a script whose keys span slots (``CROSSSLOT``); this records the keys
    of each real call (the scripts still run on the test's Redis) and checks that each
    script of :mod:`stampede.lock` was called and never across slots.
    """
    calls: list[tuple[LuaScript, tuple[str, ...]]] = []
    run = LuaScript.__call__

    async def recording(script: LuaScript, redis: Redis, keys: Any, args: Any) -> Any:
        calls.append((script, tuple(keys)))
        return await run(script, redis, keys, args)

    monkeypatch.setattr(LuaScript, "__call__", recording)
    store = CacheStore(redis_client)
    entry = Entry(value=b'{"id":7}', created_at=1.0, delta=0.1, soft_expiry=6.0)
    lock = store.lock(7, 10_000)
    assert await store.claim(7, lock) is Claim.WON
    assert await lock.renew()
    assert await store.put(7, entry, 6.0, lock)  # fenced set
    assert await lock.release()
    lock = store.lock(7, 10_000)
    await redis_client.delete(store.key(7))
    assert await store.claim(7, lock) is Claim.WON
    assert await store.fill(7, entry, 6.0, lock, announce=True)
    scripts = {v for v in vars(lock_module).values() if isinstance(v, LuaScript)}
    assert {script for script, _ in calls} == scripts
    for script, keys in calls:
        slots = {key_slot(key.encode()) for key in keys}
        assert len(slots) == 1, (script.source.split(chr(10))[1], keys)


async def test_store_round_trips_an_entry_with_its_hard_ttl(redis_client: Redis) -> None:
    store = CacheStore(redis_client)
    assert await store.get(1) is MISS
    entry = Entry(value=b'{"id":1}', created_at=100.0, delta=0.2, soft_expiry=105.0)
    assert await store.put(1, entry, hard_ttl_s=7.5, lock=None)
    assert await store.get(1) == entry
    assert 7_000 < await redis_client.pttl(CacheStore.key(1)) <= 7_500


async def test_store_put_through_a_lost_lock_writes_nothing(redis_client: Redis) -> None:
    store = CacheStore(redis_client)
    lock = store.lock(1, lease_ms=10_000)
    assert await lock.acquire()
    await redis_client.delete(store.lock_key(1))  # the lease is gone: someone else may hold it
    entry = Entry(value=b'{"id":1}', created_at=1.0, delta=0.1, soft_expiry=6.0)
    assert not await store.put(1, entry, 5.0, lock)
    assert await store.get(1) is MISS


def test_miss_is_a_falsy_sentinel_not_none() -> None:
    assert MISS is not None
    assert not MISS
    assert repr(MISS) == "MISS"


async def test_notifier_wakes_local_waiters_with_the_announced_entry(
    redis_client: Redis, notifier: ReadyNotifier
) -> None:
    store = CacheStore(redis_client)
    one, other = notifier.register(1), notifier.register(2)
    await asyncio.gather(notifier.watch(1), notifier.watch(2))  # subscribed (a cluster's shards)
    entry = Entry(value=b'{"id":1}', created_at=1.0, delta=0.1, soft_expiry=6.0)
    await store.announce(1, entry)
    await asyncio.wait_for(one.event.wait(), 5)
    assert one.entry == entry
    assert not other.event.is_set()  # only waiters of that item
    await store.announce(2, None)  # a failed refresh wakes its waiters with nothing
    await asyncio.wait_for(other.event.wait(), 5)
    assert other.entry is None
    notifier.unregister(1, one)
    notifier.unregister(2, other)


async def test_notifier_wakes_waiters_in_arrival_order(
    redis_client: Redis, notifier: ReadyNotifier
) -> None:
    """The longest waiter is answered first: its wait is the tail of the latency."""
    waiters = [notifier.register(1) for _ in range(40)]
    await asyncio.gather(*(notifier.watch(1) for _ in waiters))  # one subscription for all
    woken: list[int] = []

    async def wait(n: int) -> None:
        await waiters[n].event.wait()
        woken.append(n)

    tasks = [asyncio.create_task(wait(n)) for n in range(len(waiters))]
    await asyncio.sleep(0)
    await CacheStore(redis_client).announce(1, None)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert woken == list(range(len(waiters)))
    for waiter in waiters:
        notifier.unregister(1, waiter)


async def test_a_stray_message_wakes_nobody_and_keeps_the_subscription(
    redis_client: Redis, notifier: ReadyNotifier
) -> None:
    """Junk on the channel is dropped: no mass wake-up, and real signals still arrive."""
    waiter = notifier.register(1)
    await notifier.watch(1)
    store = CacheStore(redis_client)
    for junk in (b"hello", b"1 not-an-envelope", b"x 1.0 0.1 6.0\n{}"):
        # the command the store announces with: PUBLISH, SPUBLISH on a cluster
        await redis_client.execute_command(store.publish.upper(), store.ready_channel(1), junk)
    entry = Entry(value=b'{"id":1}', created_at=1.0, delta=0.1, soft_expiry=6.0)
    await store.announce(1, entry)
    await asyncio.wait_for(waiter.event.wait(), 5)
    assert waiter.entry == entry  # the first thing that woke it was the real signal
    notifier.unregister(1, waiter)


async def test_claim_and_fill_take_one_round_trip_each(redis_client: Redis) -> None:
    """The cold path: claim (lock, or the value, or a remembered 404), then fill."""
    store = CacheStore(redis_client)
    lock = store.lock(1, 10_000)
    assert await store.claim(1, lock) is Claim.WON
    entry = Entry(value=b'{"id":1}', created_at=1.0, delta=0.1, soft_expiry=6.0)
    assert await store.fill(1, entry, 6.0, lock, announce=False)
    assert await redis_client.exists(store.lock_key(1)) == 0
    assert await store.get(1) == entry
    assert await store.claim(1, store.lock(1, 10_000)) == entry  # filled: no lock taken
    await store.mark_missing(2, 2.0)
    assert await store.claim(2, store.lock(2, 10_000)) is Claim.MISSING
    assert await redis_client.exists(store.lock_key(2)) == 0


async def test_a_dropped_shard_subscription_is_made_again(cluster_lab: Lab) -> None:
    """The node that carries an item's shard channel drops our connection: redis-py
    reconnects and subscribes again, and announcements are heard again.

    A message sent in the gap is lost; a waiter then learns of the value by its re-check
    slice (``NOTIFY_RECHECK_S``), as after any lost message.
    """
    client = cache_client(cluster_lab.redis_url)
    assert isinstance(client, RedisCluster)
    await client.initialize()  # the slot map, for get_node_from_key
    notifier = ReadyNotifier(lambda: cache_client(cluster_lab.redis_url))
    await notifier.start()
    try:
        waiter = notifier.register(1)
        await notifier.watch(1)
        node = client.get_node_from_key(CacheStore.ready_channel(1))
        assert node is not None
        killed = await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub", target_nodes=node)
        assert killed >= 1
        entry = Entry(value=b'{"id":1}', created_at=1.0, delta=0.1, soft_expiry=6.0)

        async def heard() -> bool:
            await CacheStore(client).announce(1, entry)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.event.wait(), 0.2)
            return waiter.event.is_set()

        await eventually(heard)
        assert waiter.entry == entry
        notifier.unregister(1, waiter)
    finally:
        await notifier.stop()
        await client.aclose()
