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
from stampede.peers._common import CashewsPeer
from stampede.registry import register

__all__ = ["CashewsEarly"]


@register
class CashewsEarly(CashewsPeer):
    """``@cache.early(ttl, key)``: a background refresh once a value is past ``early_ttl``;
    a cold key has no lock at all.
    """

    name = "cashews_early"
    early = True

    @classmethod
    def decorator_settings(cls, config: StrategyConfig) -> dict[str, Any]:
        early_ttl = round(0.33 * config.ttl_s, 3)  # the library's default: 0.33 * ttl
        return {
            "decorator": f"@cache.early(ttl={config.ttl_s:g}, key='item:{{item}}')",
            "early_ttl (s)": early_ttl,
            "refresh lock TTL (s)": early_ttl,
            "background": True,
            "protected": True,
        }
