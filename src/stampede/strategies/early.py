"""The early-refresh template: serve a fresh value, refresh it in the background when told to.

``xfetch``, ``fixed_cutoff`` and ``recommended`` differ only in *when* a fresh value should be
refreshed early: each implements :meth:`EarlyRefresh.should_refresh` (a pure decision of the
entry and the clock), and this class does the rest. The refresh runs under the single-flight
lock, so only one request of all the pods reads the origin and the caller still gets the
cached value (``early_refresh``); a cold miss takes the single-flight path.
"""

from __future__ import annotations

from abc import abstractmethod

from stampede.envelope import MISS, Entry, Fetched
from stampede.outcomes import Outcome
from stampede.strategies.base import Loader
from stampede.strategies.single_flight import SingleFlight

__all__ = ["EarlyRefresh"]


class EarlyRefresh(SingleFlight):
    """Single-flight plus a background refresh of fresh values that ``should_refresh``."""

    @abstractmethod
    def should_refresh(self, entry: Entry, now: float) -> bool:
        """Whether this request should start a refresh of the fresh ``entry`` at ``now``."""

    async def get(self, item: int, load: Loader) -> Fetched:
        found = await self.store.get(item)
        return await (
            self.load_once(item, load) if found is MISS else self.serve(item, load, found)
        )

    async def serve(self, item: int, load: Loader, entry: Entry) -> Fetched:
        """Serve ``entry``; start one background refresh if ``should_refresh`` says so.

        ``early_attempts`` counts the requests that asked; ``early_refresh`` the ones whose ask
        started a refresh (the others found one running, or a newer value).
        """
        if self.should_refresh(entry, self.deps.clock()):
            self.counters["early_attempts"] += 1
            if await self.refresh_in_background(item, load, entry):
                return Fetched(entry.value, Outcome.EARLY_REFRESH)
        return Fetched(entry.value, Outcome.HIT)
