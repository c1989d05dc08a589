"""Naive cache-aside: the stampede baseline.

GET; on a miss read the origin and ``SET ... PX ttl``. Every request that misses reads the
origin itself, so when the hot key expires every request in flight during the ~200 ms re-read
joins the herd: the "needles" of chapter 1. Fixes nothing; every other strategy is measured
against it.
"""

from __future__ import annotations

from stampede.envelope import MISS, Fetched
from stampede.outcomes import Outcome
from stampede.registry import register
from stampede.strategies.base import Loader, Strategy

__all__ = ["Naive", "NaiveJitter"]


@register
class Naive(Strategy):
    name = "naive"

    async def get(self, item: int, load: Loader) -> Fetched:
        entry = await self.store.get(item)
        if entry is not MISS:
            return Fetched(entry.value, Outcome.HIT)
        entry = await self.read_origin(item, load)
        await self.store.put(item, entry, self.hard_ttl_s(entry), lock=None)
        return Fetched(entry.value, Outcome.MISS)


@register
class NaiveJitter(Naive):
    """The write-up's ``jitter`` run: naive cache-aside with TTL x (1 + U(0, 0.2)) on writes.

    Jitter is a TTL policy (``--jitter`` composes it with any strategy); this name is a preset
    for the comparison tables, not a coordination strategy.
    """

    name = "jitter"
    default_jitter = 0.2
