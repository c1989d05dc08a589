"""XFetch: refresh before expiry, with a probability that rises as expiry nears.

Each request that finds a fresh value draws ``U ~ (0, 1]`` and refreshes early when
``now - delta * beta * ln(U) >= expiry`` (Vattani, Chierichetti and Lowenstein, "Optimal
Probabilistic Cache Stampede Prevention", VLDB 2015). ``delta`` is the measured recompute time
stored in the envelope, so slow values start earlier; ``beta`` > 1 favours earlier refreshes,
``beta = 0`` never refreshes early. The refresh runs in the background under the single-flight
lock, so the caller still gets the cached value (``early_refresh``), and the cold path is
single-flight: without it XFetch's first miss is a full stampede.

Fixes: the expiry cliff, by refreshing while the value is still there. Costs: more origin reads
than SWR (refreshes come before expiry). Does not fix: keys nobody reads near their expiry.
"""

from __future__ import annotations

import math
import random

from stampede.envelope import MISS, Entry, Fetched
from stampede.outcomes import Outcome
from stampede.registry import register
from stampede.strategies.base import Loader
from stampede.strategies.single_flight import SingleFlight

__all__ = ["XFetch", "should_refresh_early"]


def should_refresh_early(entry: Entry, now: float, beta: float, rng: random.Random) -> bool:
    """XFetch's decision for one request; pure, so a seeded ``rng`` makes it testable."""
    if beta <= 0:
        return False
    u = 1.0 - rng.random()  # in (0, 1]: ln(0) is undefined
    return now - entry.delta * beta * math.log(u) >= entry.soft_expiry


@register
class XFetch(SingleFlight):
    name = "xfetch"

    async def get(self, item: int, load: Loader) -> Fetched:
        entry = await self.store.get(item)
        if entry is MISS:
            return await self.load_once(item, load)
        return await self.maybe_refresh_early(item, load, entry)

    async def maybe_refresh_early(self, item: int, load: Loader, entry: Entry) -> Fetched:
        """Serve ``entry``; start a background refresh if XFetch's draw says so."""
        if should_refresh_early(entry, self.deps.clock(), self.config.beta, self.deps.rng):
            self.counters["early_attempts"] += 1
            if await self.refresh_in_background(item, load, entry):
                return Fetched(entry.value, Outcome.EARLY_REFRESH)
        return Fetched(entry.value, Outcome.HIT)
