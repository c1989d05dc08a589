"""cashews ``@cache.early(ttl)``: refresh a hot value in the background before it expires.

Set-up as the README shows: ``Cache().setup(redis_url)`` and ``@cache.early(ttl=..., key=...)``;
``early_ttl`` is left at the library's default, which is ``0.33 * ttl`` (not stated in the
README, whose example sets 7 min of 10), and ``background=True``, ``protected=True``.

Mechanism (cashews 7.6.0, ``decorators/cache/early.py``): the value is stored with an
"early expiry" ``early_ttl`` after it was computed and a Redis TTL of ``ttl``. The first call
past the early expiry takes ``...:lock`` (``SET NX``, expiring after ``early_ttl``) and
recomputes in a background task, while every caller keeps getting the old value. A cold key
has no lock at all: each pod's first caller computes it (``protected=True`` coalesces callers
inside a pod only); the docstring warns "Not good at cold cache". Nobody waits, nobody polls.
"""

from __future__ import annotations

from typing import Any

from stampede.config import StrategyConfig
from stampede.peers._common import Close, DecoratedPeer, Fetch, Traced, redis_url
from stampede.registry import register

__all__ = ["CashewsEarly"]


@register
class CashewsEarly(DecoratedPeer):
    name = "cashews_early"

    @classmethod
    def library_settings(cls, config: StrategyConfig) -> dict[str, Any]:
        """Every setting this adapter gives the library, and the defaults that matter."""
        return {
            "library": "cashews 7.6.0",
            "cache TTL (s)": config.ttl_s,
            "setup": "Cache().setup(redis_url)",
            "decorator": f"@cache.early(ttl={config.ttl_s:g}, key='item:{{item}}')",
            "early_ttl (s)": round(0.33 * config.ttl_s, 3),
            "refresh lock TTL (s)": round(0.33 * config.ttl_s, 3),
            "background": True,
            "protected": True,
            "max_connections": 10,
        }

    def _build(self) -> tuple[Fetch, Close]:
        """Created on the first request, in the pod's own process and event loop."""
        from cashews import Cache  # late: importing cashews costs ~0.3 s

        cache = Cache()
        cache.setup(redis_url(self.deps.redis))

        @cache.early(ttl=self.config.ttl_s, key="item:{item}")
        async def fetch(item: int, load: Traced) -> dict[str, Any]:
            return await load()

        return fetch, cache.close
