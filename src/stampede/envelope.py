"""The one value envelope every strategy stores, and the sentinel for a miss.

Like dogpile.cache's ``CachedValue``, the payload travels with the metadata that the smarter
strategies need: when it was computed (``created_at``), how long computing it took (``delta``,
XFetch's recompute time) and when it turns stale (``soft_expiry``). Redis' own TTL is the hard
expiry. Naive cache-aside ignores the metadata; SWR and XFetch decide on it.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass
from typing import Any, Final

from stampede.outcomes import Outcome

__all__ = ["MISS", "Entry", "Fetched", "Miss"]


class Miss(enum.Enum):
    """A cache read that found nothing: a sentinel, never ``None``.

    A one-member enum, so ``entry is MISS`` narrows the type for mypy.
    """

    MISS = "MISS"

    def __repr__(self) -> str:
        return "MISS"

    def __bool__(self) -> bool:
        return False


MISS: Final = Miss.MISS


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached value with the facts needed to decide when to refresh it."""

    value: dict[str, Any]
    created_at: float  # epoch seconds when the origin read finished
    delta: float  # seconds the origin read took (XFetch's recompute time)
    soft_expiry: float  # epoch seconds after which the value is stale

    def is_fresh(self, now: float) -> bool:
        return now < self.soft_expiry

    def age(self, now: float) -> float:
        return now - self.created_at

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> Entry:
        return cls(**json.loads(raw))


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a strategy hands back to the pod: the value and how it was obtained."""

    value: dict[str, Any]
    outcome: Outcome
