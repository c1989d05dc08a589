"""XFetch: refresh before expiry, with a probability that rises as expiry nears.

Each request that finds a fresh value draws ``U ~ (0, 1]`` and refreshes early when
``now - delta * beta * ln(U) >= expiry`` (Vattani, Chierichetti and Lowenstein, "Optimal
Probabilistic Cache Stampede Prevention", VLDB 2015). ``delta`` is the measured recompute time
stored in the envelope, so slow values start earlier; ``beta`` > 1 favours earlier refreshes,
``beta = 0`` never refreshes early. The refresh runs in the background under the single-flight
lock (the template in :mod:`~stampede.strategies.early`), so the caller still gets the cached
value (``early_refresh``), and the cold path is single-flight: without it XFetch's first miss
is a full stampede.

Fixes: the expiry cliff, by refreshing while the value is still there. Costs: more origin reads
than SWR (refreshes come before expiry). Does not fix: keys nobody reads near their expiry.
"""

from __future__ import annotations

import math
import random

from stampede.envelope import Entry
from stampede.registry import register
from stampede.strategies.early import EarlyRefresh

__all__ = ["XFetch", "should_refresh_early"]


def should_refresh_early(entry: Entry, now: float, beta: float, rng: random.Random) -> bool:
    """XFetch's decision for one request; pure, so a seeded ``rng`` makes it testable."""
    if beta <= 0:
        return False
    u = 1.0 - rng.random()  # in (0, 1]: ln(0) is undefined
    return now - entry.delta * beta * math.log(u) >= entry.soft_expiry


@register
class XFetch(EarlyRefresh):
    name = "xfetch"

    def should_refresh(self, entry: Entry, now: float) -> bool:
        return should_refresh_early(entry, now, self.config.beta, self.deps.rng)
