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
import logging
import secrets
from collections.abc import AsyncIterator

from redis.asyncio import Redis

__all__ = ["RedisLock"]

log = logging.getLogger(__name__)

# KEYS[1] lock key
# ARGV[1] token of this acquisition
# return  1 if this token held the lock and deleted it, 0 otherwise
RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

# KEYS[1] lock key
# ARGV[1] token of this acquisition, ARGV[2] new lease in ms
# return  1 if this token still held the lock and its lease was reset, 0 otherwise
RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] lock key, KEYS[2] value key
# ARGV[1] token of this acquisition, ARGV[2] value, ARGV[3] value TTL in ms
# return  1 if the token still held the lock and the value was written, 0 otherwise
FENCED_SET = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    redis.call('set', KEYS[2], ARGV[2], 'PX', ARGV[3])
    return 1
end
return 0
"""


class RedisLock:
    """One acquisition of the lock on ``key``; ``lease_ms`` bounds a dead holder's grip."""

    def __init__(self, redis: Redis, key: str, lease_ms: int) -> None:
        self.redis = redis
        self.key = key
        self.lease_ms = lease_ms
        self.token: str | None = None
        self.lost = False  # set when a renewal found another holder

    @property
    def held(self) -> bool:
        return self.token is not None

    async def acquire(self) -> bool:
        """Try once, without blocking: waiting is the strategy's business."""
        if self.token is not None:
            raise RuntimeError(f"lock {self.key} is already held by this object")
        token = secrets.token_hex(16)
        if await self.redis.set(self.key, token, nx=True, px=self.lease_ms):
            self.token = token
            return True
        return False

    async def release(self) -> bool:
        """Delete the lock if this acquisition still holds it; ``False`` if it had expired."""
        if self.token is None:
            return False
        released = bool(await self.redis.eval(RELEASE, 1, self.key, self.token))
        self.token = None  # only after Redis answered: a failed call leaves us able to retry
        if not released:
            log.debug("lock %s had expired before release", self.key)
        return released

    async def renew(self) -> bool:
        """Reset the lease; ``False`` (and :attr:`lost`) if another caller holds the lock."""
        if self.token is None:
            return False
        ok = bool(await self.redis.eval(RENEW, 1, self.key, self.token, self.lease_ms))
        if not ok:
            self.lost = True
            log.warning("lock %s lost its lease during a refresh", self.key)
        return ok

    async def fenced_set(self, key: str, value: str, ttl_ms: int) -> bool:
        """Write ``value`` only while this acquisition still holds the lock."""
        if self.token is None:
            return False
        args = (self.token, value, max(1, ttl_ms))
        ok = bool(await self.redis.eval(FENCED_SET, 2, self.key, key, *args))
        if not ok:
            self.lost = True
            log.warning("fenced write of %s refused: lock %s no longer ours", key, self.key)
        return ok

    @contextlib.asynccontextmanager
    async def hold(self, renew: bool = True) -> AsyncIterator[RedisLock]:
        """Keep the lease alive (every third of it) while the body runs; release after.

        The release runs in ``finally``, so a cancelled refresh never leaves its lock behind.
        """
        watchdog = asyncio.create_task(self._renew_forever()) if renew else None
        try:
            yield self
        finally:
            try:
                if watchdog is not None:
                    watchdog.cancel()
                    await asyncio.wait([watchdog])  # never re-raises the watchdog's cancel
            finally:
                await asyncio.shield(self.release())

    async def _renew_forever(self) -> None:
        while self.token is not None and not self.lost:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                if not await self.renew():
                    return
            except Exception:  # a lost renewal is reported by the fence, not by a crash
                log.warning("renewing lock %s failed", self.key, exc_info=True)
