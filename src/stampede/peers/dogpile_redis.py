"""dogpile.cache's Redis backend with ``distributed_lock=True``, called from an async pod.

dogpile.cache is synchronous, so the adapter does what its users in an async app do: it calls
``region.get_or_create`` in a worker thread (``asyncio.to_thread``, the loop's default executor:
``min(32, cpus + 4)`` threads per pod), and the creator hands the origin read back to the pod's
event loop (``run_coroutine_threadsafe``) and blocks its thread until it is done.

Set-up as the backend's docstring shows: ``make_region().configure("dogpile.cache.redis",
expiration_time=ttl, arguments={url, distributed_lock: True, thread_local_lock: False,
redis_expiration_time})``. The docs tell users to set ``thread_local_lock=False`` with a
distributed lock, and a ``redis_expiration_time`` "larger than dogpile's cache expiration"
(default: none); we give it ``ttl + stale_s``, the same window ``swr`` serves stale in.
Everything else is the default: ``lock_timeout=None``, ``lock_sleep=0.1`` s, pickled values.

Mechanism (dogpile.cache 1.5.0, ``dogpile/lock.py``, ``backends/redis.py``): a value past
``expiration_time`` but still in Redis is served at once to everyone who cannot take the lock
(non-blocking ``SET NX``); the one caller that takes it recomputes *inline* and pays the origin
read. With no value at all, callers block on redis-py's lock, which polls ``SET NX`` every
``lock_sleep`` (100 ms), each in its own thread; each waiter then takes the lock in turn to
re-check. ``lock_timeout=None`` means the lock never expires: it lives until released.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

from stampede.config import StrategyConfig
from stampede.envelope import Fetched, json_bytes
from stampede.peers._common import Peer, Traced, redis_url
from stampede.registry import register
from stampede.strategies.base import Deps, Loader

if TYPE_CHECKING:
    from dogpile.cache import CacheRegion

__all__ = ["DogpileRedis"]


def _redis_expiration_s(config: StrategyConfig) -> int:
    return math.ceil(config.ttl_s + config.stale_s)


@register
class DogpileRedis(Peer):
    name = "dogpile"
    library = "dogpile.cache 1.5.0"

    def __init__(self, deps: Deps, config: StrategyConfig) -> None:
        super().__init__(deps, config)
        self._region: CacheRegion | None = None

    @classmethod
    def settings(cls, config: StrategyConfig) -> dict[str, Any]:
        return {
            "region": f"make_region().configure('dogpile.cache.redis', "
            f"expiration_time={config.ttl_s:g})",
            "distributed_lock": True,
            "thread_local_lock": False,
            "redis_expiration_time (s)": _redis_expiration_s(config),
            "lock_timeout (lock TTL)": None,
            "lock_sleep (poll, s)": 0.1,
            "called through": "asyncio.to_thread (default executor)",
        }

    def _build(self) -> CacheRegion:
        """Created on the first request, in the pod's own process."""
        from dogpile.cache import make_region  # late: the pod imports only what it runs

        return make_region().configure(
            "dogpile.cache.redis",
            expiration_time=self.config.ttl_s,
            arguments={
                "url": redis_url(self.deps.redis),
                "distributed_lock": True,
                "thread_local_lock": False,
                "redis_expiration_time": _redis_expiration_s(self.config),
            },
        )

    async def get(self, item: int, load: Loader) -> Fetched:
        if self._region is None:
            self._region = self._build()
        loop = asyncio.get_running_loop()
        traced = Traced(self, item, load)

        def creator() -> dict[str, Any]:  # runs in dogpile's thread; the read runs on our loop
            return asyncio.run_coroutine_threadsafe(traced(), loop).result()

        value = await asyncio.to_thread(self._region.get_or_create, f"item:{item}", creator)
        return Fetched(json_bytes(value), traced.outcome)

    async def close(self) -> None:
        await super().close()
        if self._region is not None:
            self._region.backend.writer_client.close()
            self._region = None
