"""Fixed cut-off: refresh in the background once a value's age passes ``cutoff * ttl``.

The obvious alternative to XFetch, kept to test the write-up's argument against it: every
request after the cut-off asks for the refresh at once, a mini-cliff of lock attempts
(``early_attempts``) at the same moment each cycle, where XFetch's draws spread them out. The
lock still lets only one of them read the origin.
"""

from __future__ import annotations

from stampede.envelope import MISS, Fetched
from stampede.outcomes import Outcome
from stampede.registry import register
from stampede.strategies.base import Loader
from stampede.strategies.single_flight import SingleFlight

__all__ = ["FixedCutoff"]


@register
class FixedCutoff(SingleFlight):
    name = "fixed_cutoff"

    async def get(self, item: int, load: Loader) -> Fetched:
        entry = await self.store.get(item)
        if entry is MISS:
            return await self.load_once(item, load)
        lifetime = entry.soft_expiry - entry.created_at
        if entry.age(self.deps.clock()) >= self.config.cutoff * lifetime:
            self.counters["early_attempts"] += 1
            if await self.refresh_in_background(item, load, entry):
                return Fetched(entry.value, Outcome.EARLY_REFRESH)
        return Fetched(entry.value, Outcome.HIT)
