"""A single-refresher lock in Redis, shaped like redis-py's ``redis/asyncio/lock.py``.

Each acquisition takes a fresh random token with ``SET key token NX PX lease``; release and
renewal are Lua compare-and-act scripts, so a caller whose lease already expired can never
delete or extend the lock of the next holder. Local state is cleared only after the release
succeeded (redis-py #3847), and one ``RedisLock`` object serves one acquisition: never share
it between tasks.

The lease bounds how long a crashed refresher can block a key. A refresh slower than the lease
is covered twice: :meth:`RedisLock.hold` renews the lease while the refresh runs (a watchdog),
and :meth:`RedisLock.fenced_set` writes the value only while the token still holds, so a
refresher that lost its lease cannot overwrite the newer holder's value unnoticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError

__all__ = ["CLAIM", "FILL", "WATCHDOG_STOP_S", "Claim", "LuaScript", "RedisClient", "RedisLock"]

# One Redis or a Redis Cluster (routed by slot: every script's keys share one, see cache.py)
RedisClient = Redis | RedisCluster

log = logging.getLogger(__name__)

WATCHDOG_STOP_S = 1.0  # how long hold() waits for a cancelled watchdog before releasing


class LuaScript:
    """A Lua script run by its SHA1 (``EVALSHA``); sent whole only when Redis lacks it.

    ``EVAL`` sends the whole body with every call, and Redis hashes it each time; by SHA the
    call is a few bytes. A server that does not know the script yet (new, restarted, or
    after ``SCRIPT FLUSH``) answers ``NOSCRIPT``, and the body goes once with ``EVAL``.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, redis: RedisClient, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await redis.eval(self.source, len(keys), *keys, *args)


# KEYS[1] lock key
# ARGV[1] token of this acquisition
# return  1 if this token held the lock and deleted it, 0 otherwise
RELEASE = LuaScript("""
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
""")

# KEYS[1] lock key
# ARGV[1] token of this acquisition, ARGV[2] new lease in ms
# return  1 if this token still held the lock and its lease was reset, 0 otherwise
RENEW = LuaScript("""
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
""")

# KEYS[1] lock key, KEYS[2] value key
# ARGV[1] token of this acquisition, ARGV[2] value, ARGV[3] value TTL in ms
# return  1 if the token still held the lock and the value was written, 0 otherwise
FENCED_SET = LuaScript("""
if redis.call('get', KEYS[1]) == ARGV[1] then
    redis.call('set', KEYS[2], ARGV[2], 'PX', ARGV[3])
    return 1
end
return 0
""")


# KEYS[1] lock key, KEYS[2] value key, KEYS[3] negative-entry key
# ARGV[1] token of this acquisition, ARGV[2] lease in ms
# (SET NX GET answers the holder's token: our own token means a retry of our own claim,
#  whose first reply was lost, so the lock is ours; Redis >= 7.0)
# return  {0} another caller holds the lock; {1} taken, and there is neither a value nor a
#         negative entry; {2, value} the value appeared meanwhile (lock not kept);
#         {3} a negative entry says the item does not exist (lock not kept)
CLAIM = LuaScript("""
local holder = redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2], 'GET')
if holder and holder ~= ARGV[1] then
    return {0}
end
local value = redis.call('get', KEYS[2])
if value then
    redis.call('del', KEYS[1])
    return {2, value}
end
if redis.call('exists', KEYS[3]) == 1 then
    redis.call('del', KEYS[1])
    return {3}
end
return {1}
""")

# KEYS[1] lock key, KEYS[2] value key, KEYS[3] the item's ready channel (absent: no message)
# ARGV[1] token of this acquisition, ARGV[2] value, ARGV[3] value TTL in ms, ARGV[4] message,
# ARGV[5] 'publish', or 'spublish' on a cluster (sharded: only the slot's shard delivers it)
# (the channel is declared as a key so that a cluster routes the script by all three names,
#  which share the item's hash tag: one slot, and SPUBLISH's channel must be in it)
# return  1 if the token held the lock: value written, message published, lock released;
#         0 if it did not: nothing written or released, the message published all the same
#         (the value is fresh; the newer holder writes its own)
FILL = LuaScript("""
local ours = redis.call('get', KEYS[1]) == ARGV[1]
if ours then
    redis.call('set', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
if KEYS[3] then
    redis.call(ARGV[5], KEYS[3], ARGV[4])
end
if ours then
    redis.call('del', KEYS[1])
    return 1
end
return 0
""")


class Claim(enum.Enum):
    """What :meth:`RedisLock.claim` found besides the lock."""

    HELD = 0  # another caller holds the lock: wait for it
    WON = 1  # this acquisition holds the lock: read the origin
    FILLED = 2  # the value appeared between the caller's miss and its claim
    MISSING = 3  # a negative entry: the origin said 404 a moment ago


class RedisLock:
    """One acquisition of the lock on ``key``; ``lease_ms`` bounds a dead holder's grip."""

    def __init__(self, redis: RedisClient, key: str, lease_ms: int) -> None:
        self.redis = redis
        self.key = key
        self.lease_ms = lease_ms
        self.token: str | None = None
        self.lost = False  # set when a renewal found another holder
        self._holding = False  # inside hold(): the watchdog may renew

    @property
    def held(self) -> bool:
        return self.token is not None

    async def acquire(self) -> bool:
        """Try once, without blocking: waiting is the strategy's business."""
        if self.token is not None:
            raise RuntimeError(f"lock {self.key} is already held by this object")
        token = secrets.token_hex(16)
        # GET answers the holder's token, None if the key was free: a retry that re-sends
        # this SET after its reply was lost finds its own token, and the lock is ours
        holder = await self.redis.set(self.key, token, nx=True, px=self.lease_ms, get=True)
        if holder is None or holder == token.encode():
            self.token = token
            return True
        return False

    async def claim(self, value_key: str, missing_key: str) -> tuple[Claim, bytes | None]:
        """Take the lock unless the value or a negative entry is there: one round trip.

        The cold path's first step. ``SET NX`` plus the re-check of the value plus the
        negative cache in one script, where :meth:`acquire` and two more reads took three
        round trips. Only a winner keeps the lock (:attr:`Claim.WON`); the value comes back
        with :attr:`Claim.FILLED`.
        """
        if self.token is not None:
            raise RuntimeError(f"lock {self.key} is already held by this object")
        token = secrets.token_hex(16)
        keys = (self.key, value_key, missing_key)
        reply = await CLAIM(self.redis, keys, (token, self.lease_ms))
        found = Claim(int(reply[0]))
        if found is Claim.WON:
            self.token = token
        return found, reply[1] if found is Claim.FILLED else None

    async def fill(
        self,
        key: str,
        value: str | bytes,
        ttl_ms: int,
        channel: str,
        message: bytes | str,
        publish: str = "publish",
    ) -> bool:
        """Write ``value`` through the fence, publish ``message``, release: one round trip.

        The refresh's last step (``channel`` ``""`` publishes nothing; ``publish`` is the
        command, ``"spublish"`` on a cluster). Returns whether the
        lock was still ours; if not, nothing was written or released (:attr:`lost`).
        """
        if self.token is None:
            return False
        keys = (self.key, key, channel) if channel else (self.key, key)
        args = (self.token, value, max(1, ttl_ms), message, publish)
        ok = bool(await FILL(self.redis, keys, args))
        self.token = None  # released, or no longer ours: either way nothing left to release
        if not ok:
            self.lost = True
            log.warning("fenced write of %s refused: lock %s no longer ours", key, self.key)
        return ok

    async def release(self) -> bool:
        """Delete the lock if this acquisition still holds it; ``False`` if it had expired."""
        if self.token is None:
            return False
        released = bool(await RELEASE(self.redis, (self.key,), (self.token,)))
        self.token = None  # only after Redis answered: a failed call leaves us able to retry
        if not released:
            log.debug("lock %s had expired before release", self.key)
        return released

    async def renew(self) -> bool:
        """Reset the lease; ``False`` (and :attr:`lost`) if another caller holds the lock."""
        if self.token is None:
            return False
        ok = bool(await RENEW(self.redis, (self.key,), (self.token, self.lease_ms)))
        if not ok:
            self.lost = True
            log.warning("lock %s lost its lease during a refresh", self.key)
        return ok

    async def fenced_set(self, key: str, value: str | bytes, ttl_ms: int) -> bool:
        """Write ``value`` only while this acquisition still holds the lock."""
        if self.token is None:
            return False
        args = (self.token, value, max(1, ttl_ms))
        ok = bool(await FENCED_SET(self.redis, (self.key, key), args))
        if not ok:
            self.lost = True
            log.warning("fenced write of %s refused: lock %s no longer ours", key, self.key)
        return ok

    @contextlib.asynccontextmanager
    async def hold(self, renew: bool = True) -> AsyncIterator[RedisLock]:
        """Keep the lease alive (every third of it) while the body runs; release after.

        The release runs in ``finally``, so a cancelled refresh never leaves its lock behind.
        Every wait here is bounded: redis-py can swallow a cancel that lands inside a command,
        so the watchdog is given :data:`WATCHDOG_STOP_S` to end, and it stops renewing at its
        next wake-up whatever happened (a lock whose release failed then lapses with its
        lease instead of being renewed forever).
        """
        self._holding = True
        watchdog = asyncio.create_task(self._renew_forever()) if renew else None
        try:
            yield self
        finally:
            self._holding = False
            try:
                if watchdog is not None:
                    watchdog.cancel()
                    await asyncio.wait([watchdog], timeout=WATCHDOG_STOP_S)
            finally:
                await asyncio.shield(self.release())

    async def _renew_forever(self) -> None:
        while self._holding and self.token is not None and not self.lost:
            await asyncio.sleep(self.lease_ms / 3000)
            if not self._holding:
                return
            try:
                if not await self.renew():
                    return
            except Exception:  # a lost renewal is reported by the fence, not by a crash
                log.warning("renewing lock %s failed", self.key, exc_info=True)
