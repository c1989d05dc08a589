"""Stale-while-revalidate: serve the old value at once while one pod refreshes it.

The envelope is fresh for ``ttl_s``; for ``stale_s`` after that it is served as ``stale`` and
the first request to see it stale starts one background refresh under the single-flight lock
(shared by every pod). Redis' hard TTL is soft + stale, so a key nobody asks for still
disappears. A refresh that fails leaves the stale value in place (stale-if-error) and caches
nothing; a cold miss takes the single-flight path.

Fixes: latency at expiry, since nobody waits for the refresher. Does not fix: origin load (the
same one read per cycle as single-flight) or a cold start. Semantics follow HTTP's
``Cache-Control: stale-while-revalidate`` (RFC 5861), implemented in Redis, not in headers.
"""

from __future__ import annotations

from stampede.envelope import MISS, Entry, Fetched
from stampede.outcomes import Outcome
from stampede.registry import register
from stampede.strategies.base import Loader
from stampede.strategies.single_flight import SingleFlight

__all__ = ["StaleWhileRevalidate"]


@register
class StaleWhileRevalidate(SingleFlight):
    name = "swr"

    def stale_window_s(self) -> float:
        return self.config.stale_s

    async def get(self, item: int, load: Loader) -> Fetched:
        entry = await self.store.get(item)
        if entry is MISS:
            return await self.load_once(item, load)
        if entry.is_fresh(self.deps.clock()):
            return await self.serve_fresh(item, load, entry)
        await self.refresh_in_background(item, load, entry)
        return Fetched(entry.value, Outcome.STALE)

    async def serve_fresh(self, item: int, load: Loader, entry: Entry) -> Fetched:
        """A fresh value is a plain hit here; ``recommended`` adds XFetch on this path."""
        return Fetched(entry.value, Outcome.HIT)
