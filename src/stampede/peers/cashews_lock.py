"""cashews ``@cache(ttl, lock=True)``: the library's answer to a stampede, used as documented.

Set-up as the README shows: ``Cache().setup(redis_url)`` and
``@cache(ttl=..., key=..., lock=True)``; every other argument is the library's default
(``protected=True``, the lock's ``check_interval=0``, ``suppress=True``, pickle serializer,
a pool of 10 connections).

Mechanism (cashews 7.6.0, ``wrapper/decorators.py``, ``backends/interface.py``): the lock wraps
the *whole* cache decorator, so every call, hit or miss, first takes ``lock:item:{id}``
(``SET NX PX`` for the cache TTL), then ``GET``s the value, then releases (Lua, ``EVALSHA``).
A caller that finds the lock taken retries at once: ``PING``, ``asyncio.sleep(0)``, ``SET NX``
again, as fast as Redis answers. Inside one pod, ``protected=True`` folds concurrent calls for a
key into one task, so each pod has at most one spinning caller per key. The lock lives as long
as the cache TTL. The docs: "This guarantees exactly one function call for given ttl."
"""

from __future__ import annotations

from typing import Any

from stampede.config import StrategyConfig
from stampede.peers._common import Close, DecoratedPeer, Fetch, Traced, redis_url
from stampede.registry import register

__all__ = ["CashewsLock"]


@register
class CashewsLock(DecoratedPeer):
    name = "cashews_lock"

    @classmethod
    def library_settings(cls, config: StrategyConfig) -> dict[str, Any]:
        """Every setting this adapter gives the library, and the defaults that matter."""
        return {
            "library": "cashews 7.6.0",
            "cache TTL (s)": config.ttl_s,
            "setup": "Cache().setup(redis_url)",
            "decorator": f"@cache(ttl={config.ttl_s:g}, key='item:{{item}}', lock=True)",
            "lock TTL (s)": config.ttl_s,
            "lock check_interval (s)": 0,
            "protected": True,
            "suppress": True,
            "max_connections": 10,
        }

    def _build(self) -> tuple[Fetch, Close]:
        """Created on the first request, in the pod's own process and event loop."""
        from cashews import Cache  # late: importing cashews costs ~0.3 s

        cache = Cache()
        cache.setup(redis_url(self.deps.redis))

        @cache(ttl=self.config.ttl_s, key="item:{item}", lock=True)
        async def fetch(item: int, load: Traced) -> dict[str, Any]:
            return await load()

        return fetch, cache.close
