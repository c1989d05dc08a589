"""The stack the write-up ends on, composed from the parts: nothing here is new logic.

- single-flight lock for every origin read (cold path and refreshes), shared by all pods;
- XFetch on fresh values of hot keys, so most refreshes happen before expiry;
- SWR once a value is past its soft expiry, so a key nobody refreshed early is served stale
  while one pod refreshes it, instead of blocking;
- TTL jitter on writes (spread 0.2 unless configured), so keys warmed together drift apart.
"""

from __future__ import annotations

from stampede.envelope import Entry, Fetched
from stampede.registry import register
from stampede.strategies.base import Loader
from stampede.strategies.swr import StaleWhileRevalidate
from stampede.strategies.xfetch import XFetch

__all__ = ["Recommended"]


@register
class Recommended(StaleWhileRevalidate, XFetch):
    """SWR's ``get`` (first in the MRO) with XFetch's early refresh on the fresh path.

    ``serve`` is the early-refresh template's (:class:`~stampede.strategies.early.EarlyRefresh`),
    deciding with XFetch's ``should_refresh``.
    """

    name = "recommended"
    default_jitter = 0.2

    async def serve_fresh(self, item: int, load: Loader, entry: Entry) -> Fetched:
        return await self.serve(item, load, entry)
