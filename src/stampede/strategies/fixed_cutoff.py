"""Fixed cut-off: refresh in the background once a value's age passes ``cutoff * ttl``.

The obvious alternative to XFetch, kept to test the write-up's argument against it: every
request after the cut-off asks for the refresh at once, a mini-cliff of lock attempts
(``early_attempts``) at the same moment each cycle, where XFetch's draws spread them out. The
lock still lets only one of them read the origin.
"""

from __future__ import annotations

from stampede.envelope import Entry
from stampede.registry import register
from stampede.strategies.early import EarlyRefresh

__all__ = ["FixedCutoff"]


@register
class FixedCutoff(EarlyRefresh):
    name = "fixed_cutoff"

    def should_refresh(self, entry: Entry, now: float) -> bool:
        lifetime = entry.soft_expiry - entry.created_at
        return entry.age(now) >= self.config.cutoff * lifetime
