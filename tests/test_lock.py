"""The Redis lock against a real redis-server: tokens, leases, renewal, fencing, cancellation."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from stampede.lock import RedisLock
from tests.helpers import eventually

KEY = "lock:item:1"


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
    b = RedisLock(redis_client, "lock:item:2", 10_000)
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
    assert await lock.fenced_set("item:1", "value", 5_000)
    assert await redis_client.get("item:1") == b"value"
    assert 0 < await redis_client.pttl("item:1") <= 5_000


async def test_fenced_set_refuses_after_the_lock_was_lost(redis_client: Redis) -> None:
    lock = RedisLock(redis_client, KEY, lease_ms=50)
    assert await lock.acquire()
    await wait_until_gone(redis_client, KEY)
    assert not await lock.fenced_set("item:1", "late", 5_000)
    assert lock.lost
    assert await redis_client.exists("item:1") == 0

    second = RedisLock(redis_client, KEY, 10_000)
    assert await second.acquire()
    assert await second.fenced_set("item:1", "new", 5_000)
    assert not await lock.fenced_set("item:1", "late", 5_000)
    assert await redis_client.get("item:1") == b"new"


async def test_fenced_set_without_acquiring_writes_nothing(redis_client: Redis) -> None:
    lock = RedisLock(redis_client, KEY, 10_000)
    assert not await lock.fenced_set("item:1", "x", 5_000)
    assert await redis_client.exists("item:1") == 0


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
