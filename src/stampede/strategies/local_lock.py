"""One asyncio lock per key inside each pod: the counter-example.

It coalesces the herd *within* one process, so each pod sends one origin read per expiry. With
three pods behind round-robin that is still three reads, because an in-process mutex cannot
see the other pods: coordination has to live in the shared store (see ``single_flight``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from stampede.config import StrategyConfig
from stampede.envelope import MISS, Fetched
from stampede.outcomes import Outcome
from stampede.registry import register
from stampede.strategies.base import Deps, Loader, Strategy

__all__ = ["LocalLock"]


@register
class LocalLock(Strategy):
    name = "local_lock"

    def __init__(self, deps: Deps, config: StrategyConfig) -> None:
        super().__init__(deps, config)
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def get(self, item: int, load: Loader) -> Fetched:
        entry = await self.store.get(item)
        if entry is not MISS:
            return Fetched(entry.value, Outcome.HIT)
        lock = self._locks[item]
        waited = lock.locked()
        async with lock:
            entry = await self.store.get(item)  # another task of this pod may have filled it
            if entry is not MISS:
                return Fetched(entry.value, Outcome.WAIT_HIT if waited else Outcome.HIT)
            entry = await self.read_origin(item, load)
            await self.store.put(item, entry, self.hard_ttl_s(entry), lock=None)
        return Fetched(entry.value, Outcome.MISS)
