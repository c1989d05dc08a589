"""The Redis lock against a real redis-server: tokens, leases, renewal, fencing, cancellation."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import redis
from redis.asyncio import Redis

from stampede.cache import CacheStore
from stampede.lock import CLAIM, WATCHDOG_STOP_S, Claim, RedisLock
from tests.helpers import eventually

KEY = CacheStore.lock_key(1)
ITEM = CacheStore.key(1)
MISSING = CacheStore.missing_key(1)
CHANNEL = CacheStore.ready_channel(1)


async def wait_until_gone(redis: Redis, key: str) -> None:
    """Poll PTTL until Redis has expired ``key`` (-2), instead of sleeping a fixed time."""

    async def gone() -> bool:
        return await redis.pttl(key) == -2

    await eventually(gone)


async def test_acquire_sets_a_token_with_a_lease(redis_client: Redis) -> None:
    lock = RedisLock(redis_client, KEY, lease_ms=10_000)
    assert await lock.acquire()
    assert lock.held
    assert (await redis_client.get(KEY)).decode() == lock.token
    assert 0 < await redis_client.pttl(KEY) <= 10_000


async def test_second_acquisition_is_refused_while_held(redis_client: Redis) -> None:
    first = RedisLock(redis_client, KEY, 10_000)
    second = RedisLock(redis_client, KEY, 10_000)
    assert await first.acquire()
    assert not await second.acquire()
    assert not second.held


async def test_tokens_differ_per_acquisition(redis_client: Redis) -> None:
    a = RedisLock(redis_client, KEY, 10_000)
    b = RedisLock(redis_client, CacheStore.lock_key(2), 10_000)
    assert await a.acquire() and await b.acquire()
    assert a.token != b.token


async def test_one_object_cannot_acquire_twice(redis_client: Redis) -> None:
    lock = RedisLock(redis_client, KEY, 10_000)
    assert await lock.acquire()
    with pytest.raises(RuntimeError, match="already held"):
        await lock.acquire()


async def test_release_deletes_own_lock_once(redis_client: Redis) -> None:
    lock = RedisLock(redis_client, KEY, 10_000)
    assert await lock.acquire()
    assert await lock.release()
    assert await redis_client.exists(KEY) == 0
    assert not lock.held
    assert not await lock.release()  # nothing left to release


async def test_expired_lease_lets_the_next_caller_in(redis_client: Redis) -> None:
    first = RedisLock(redis_client, KEY, lease_ms=50)
    assert await first.acquire()
    second = RedisLock(redis_client, KEY, lease_ms=10_000)
    assert not await second.acquire()
    await wait_until_gone(redis_client, KEY)
    assert await second.acquire()


async def test_release_never_deletes_another_holders_lock(redis_client: Redis) -> None:
    first = RedisLock(redis_client, KEY, lease_ms=50)
    assert await first.acquire()
    await wait_until_gone(redis_client, KEY)
    second = RedisLock(redis_client, KEY, lease_ms=10_000)
    assert await second.acquire()

    assert await first.release() is False
    assert (await redis_client.get(KEY)).decode() == second.token
    assert await redis_client.pttl(KEY) > 50


async def test_renew_resets_the_lease(redis_client: Redis) -> None:
    lock = RedisLock(redis_client, KEY, lease_ms=300)
    assert await lock.acquire()
    lock.lease_ms = 60_000  # the next renewal asks for a long lease: visible in PTTL
    assert await lock.renew()
    assert await redis_client.pttl(KEY) > 300
    await asyncio.sleep(0.4)  # past the original lease: still ours
    assert (await redis_client.get(KEY)).decode() == lock.token


async def test_renew_after_losing_the_lock_fails_and_marks_lost(redis_client: Redis) -> None:
    first = RedisLock(redis_client, KEY, lease_ms=50)
    assert await first.acquire()
    await wait_until_gone(redis_client, KEY)
    second = RedisLock(redis_client, KEY, lease_ms=10_000)
    assert await second.acquire()
    assert not await first.renew()
    assert first.lost
    assert (await redis_client.get(KEY)).decode() == second.token
    assert await redis_client.pttl(KEY) > 5_000  # the second holder's lease untouched


async def test_hold_watchdog_keeps_the_lock_past_its_lease(redis_client: Redis) -> None:
    lock = RedisLock(redis_client, KEY, lease_ms=150)
    assert await lock.acquire()
    token = lock.token
    async with lock.hold(renew=True):
        await asyncio.sleep(0.6)  # four leases long
        assert (await redis_client.get(KEY)).decode() == token
        assert not lock.lost
    assert await redis_client.exists(KEY) == 0


async def test_hold_without_renew_lets_the_lease_run_out(redis_client: Redis) -> None:
    lock = RedisLock(redis_client, KEY, lease_ms=50)
    assert await lock.acquire()
    async with lock.hold(renew=False):
        await wait_until_gone(redis_client, KEY)
        other = RedisLock(redis_client, KEY, 10_000)
        assert await other.acquire()
    assert (await redis_client.get(KEY)).decode() == other.token  # hold's release spared it


async def test_fenced_set_writes_while_held(redis_client: Redis) -> None:
    lock = RedisLock(redis_client, KEY, 10_000)
    assert await lock.acquire()
    assert await lock.fenced_set(ITEM, "value", 5_000)
    assert await redis_client.get(ITEM) == b"value"
    assert 0 < await redis_client.pttl(ITEM) <= 5_000


async def test_fenced_set_refuses_after_the_lock_was_lost(redis_client: Redis) -> None:
    lock = RedisLock(redis_client, KEY, lease_ms=50)
    assert await lock.acquire()
    await wait_until_gone(redis_client, KEY)
    assert not await lock.fenced_set(ITEM, "late", 5_000)
    assert lock.lost
    assert await redis_client.exists(ITEM) == 0

    second = RedisLock(redis_client, KEY, 10_000)
    assert await second.acquire()
    assert await second.fenced_set(ITEM, "new", 5_000)
    assert not await lock.fenced_set(ITEM, "late", 5_000)
    assert await redis_client.get(ITEM) == b"new"


async def test_fenced_set_without_acquiring_writes_nothing(redis_client: Redis) -> None:
    lock = RedisLock(redis_client, KEY, 10_000)
    assert not await lock.fenced_set(ITEM, "x", 5_000)
    assert await redis_client.exists(ITEM) == 0


async def test_hold_releases_on_cancellation(redis_client: Redis) -> None:
    lock = RedisLock(redis_client, KEY, lease_ms=10_000)
    assert await lock.acquire()
    inside = asyncio.Event()

    async def refresh() -> None:
        async with lock.hold():
            inside.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(refresh())
    await inside.wait()
    assert await redis_client.exists(KEY) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await redis_client.exists(KEY) == 0
    assert not lock.held


async def test_hold_releases_when_the_body_raises(redis_client: Redis) -> None:
    lock = RedisLock(redis_client, KEY, lease_ms=10_000)
    assert await lock.acquire()
    with pytest.raises(ZeroDivisionError):
        async with lock.hold():
            _ = 1 / 0
    assert await redis_client.exists(KEY) == 0


async def test_claim_takes_a_free_lock(redis_client: Redis) -> None:
    lock = RedisLock(redis_client, KEY, 10_000)
    assert await lock.claim(ITEM, MISSING) == (Claim.WON, None)
    assert lock.held
    assert (await redis_client.get(KEY)).decode() == lock.token


async def test_claim_of_a_held_lock_is_held_and_keeps_nothing(redis_client: Redis) -> None:
    holder = RedisLock(redis_client, KEY, 10_000)
    assert await holder.acquire()
    waiter = RedisLock(redis_client, KEY, 10_000)
    assert await waiter.claim(ITEM, MISSING) == (Claim.HELD, None)
    assert not waiter.held
    assert (await redis_client.get(KEY)).decode() == holder.token


async def test_claim_returns_a_value_that_appeared_and_leaves_no_lock(redis_client: Redis) -> None:
    await redis_client.set(ITEM, b"the value")
    lock = RedisLock(redis_client, KEY, 10_000)
    assert await lock.claim(ITEM, MISSING) == (Claim.FILLED, b"the value")
    assert not lock.held
    assert await redis_client.exists(KEY) == 0


async def test_claim_sees_a_remembered_404_and_leaves_no_lock(redis_client: Redis) -> None:
    await redis_client.set(MISSING, b"1")
    lock = RedisLock(redis_client, KEY, 10_000)
    assert await lock.claim(ITEM, MISSING) == (Claim.MISSING, None)
    assert not lock.held
    assert await redis_client.exists(KEY) == 0


def test_fill_writes_then_publishes_then_releases(redis_url: str) -> None:
    """The order that lets a woken waiter skip the lock: value, message, release.

    Read from ``MONITOR``, which lists the commands a script runs, in the order it runs them.
    """
    sync = redis.Redis.from_url(redis_url)

    async def fill() -> tuple[bool, RedisLock]:
        client = Redis.from_url(redis_url)
        try:
            lock = RedisLock(client, KEY, 10_000)
            assert await lock.acquire()
            return await lock.fill(ITEM, b"v", 5_000, CHANNEL, b"1 v"), lock
        finally:
            await client.aclose()

    with sync.monitor() as monitor:
        ok, lock = asyncio.run(fill())
        seen = []
        for _ in range(20):
            command = monitor.next_command()["command"].lower()
            if command.startswith((f"set {ITEM}", "publish", "del")):
                seen.append(command.split()[0])
            if command.startswith("del"):
                break
    assert ok and not lock.held
    assert seen == ["set", "publish", "del"]
    assert sync.get(ITEM) == b"v"
    assert sync.exists(KEY) == 0
    sync.flushall()
    sync.close()


async def test_fill_after_losing_the_lock_writes_nothing_but_publishes(
    redis_client: Redis,
) -> None:
    lock = RedisLock(redis_client, KEY, 10_000)
    assert await lock.acquire()
    await redis_client.set(KEY, "someone else")
    async with redis_client.pubsub() as pubsub:
        await pubsub.subscribe(CHANNEL)
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        assert not await lock.fill(ITEM, b"v", 5_000, CHANNEL, b"1 v")
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert message is not None and message["data"] == b"1 v"
    assert lock.lost and not lock.held
    assert await redis_client.exists(ITEM) == 0
    assert (await redis_client.get(KEY)) == b"someone else"


async def test_hold_is_bounded_when_renew_swallows_its_cancel(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py can swallow a cancel inside a command; hold() must still end and release."""
    lock = RedisLock(redis_client, KEY, lease_ms=300)
    renewing = asyncio.Event()

    async def stubborn_renew() -> bool:
        renewing.set()
        with contextlib.suppress(asyncio.CancelledError):  # swallowed, as redis-py can
            await asyncio.sleep(3600)
        await asyncio.sleep(60)
        return True

    monkeypatch.setattr(lock, "renew", stubborn_renew)
    assert await lock.acquire()
    async with asyncio.timeout(WATCHDOG_STOP_S + 5):  # a hang fails here, not at pytest's limit
        async with lock.hold(renew=True):
            await renewing.wait()
    assert await redis_client.exists(KEY) == 0
    assert not lock.held


async def test_a_resent_claim_with_our_own_token_is_ours(redis_client: Redis) -> None:
    """The pod's one retry re-sends a SET NX whose reply was lost: it must not wait on itself."""
    keys, args = (KEY, ITEM, MISSING), ("our-token", 10_000)
    assert (await CLAIM(redis_client, keys, args))[0] == Claim.WON.value
    assert (await CLAIM(redis_client, keys, args))[0] == Claim.WON.value  # the retry
    assert (await CLAIM(redis_client, keys, ("their-token", 10_000)))[0] == Claim.HELD.value


async def test_a_resent_acquire_with_our_own_token_is_ours(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = RedisLock(redis_client, KEY, 10_000)
    monkeypatch.setattr("stampede.lock.secrets.token_hex", lambda _: "our-token")
    await redis_client.set(KEY, "our-token", px=10_000)  # the first send landed, its reply did not
    assert await lock.acquire()
    assert lock.token == "our-token"
