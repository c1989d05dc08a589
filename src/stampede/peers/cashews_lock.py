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
from stampede.peers._common import CashewsPeer
from stampede.registry import register

__all__ = ["CashewsLock"]


@register
class CashewsLock(CashewsPeer):
    """``@cache(ttl, key, lock=True)``: the lock wraps every call, hit or miss."""

    name = "cashews_lock"
    early = False

    @classmethod
    def decorator_settings(cls, config: StrategyConfig) -> dict[str, Any]:
        return {
            "decorator": f"@cache(ttl={config.ttl_s:g}, key='item:{{item}}', lock=True)",
            "lock TTL (s)": config.ttl_s,
            "lock check_interval (s)": 0,
            "protected": True,
            "suppress": True,
        }
