"""The one value envelope every strategy stores, and the sentinel for a miss.

Like dogpile.cache's ``CachedValue``, the payload travels with the metadata that the smarter
strategies need: when it was computed (``created_at``), how long computing it took (``delta``,
XFetch's recompute time) and when it turns stale (``soft_expiry``). Redis' own TTL is the hard
expiry. Naive cache-aside ignores the metadata; SWR and XFetch decide on it.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Final

from stampede.errors import CorruptEntry
from stampede.outcomes import Outcome

__all__ = ["MISS", "Entry", "Fetched", "Miss", "json_bytes"]


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
    """A cached value with the facts needed to decide when to refresh it.

    ``value`` is the item's JSON document as the origin produced it, kept as bytes from the
    origin read to the HTTP response: a hit never parses or re-renders it.
    """

    value: bytes  # the item's JSON, answered as is
    created_at: float  # epoch seconds when the origin read finished
    delta: float  # seconds the origin read took (XFetch's recompute time)
    soft_expiry: float  # epoch seconds after which the value is stale

    def is_fresh(self, now: float) -> bool:
        return now < self.soft_expiry

    def age(self, now: float) -> float:
        return now - self.created_at

    def data(self) -> dict[str, Any]:
        """The value parsed: for tests and readers, never on the request path."""
        return _parse(self.value)

    def dumps(self) -> bytes:
        """``b"<created_at> <delta> <soft_expiry>\n<value>"``: a line of metadata, then the value.

        Reading it back parses three floats, not the value: the hit path's only decoding.
        """
        return b"%r %r %r\n%b" % (self.created_at, self.delta, self.soft_expiry, self.value)

    @classmethod
    def loads(cls, raw: bytes) -> Entry:
        """Parse :meth:`dumps`; anything else (foreign, truncated) is :class:`CorruptEntry`."""
        head, newline, value = raw.partition(b"\n")
        try:
            created_at, delta, soft_expiry = (float(x) for x in head.split(b" "))
        except ValueError:
            raise CorruptEntry(f"cache entry is not an envelope: {raw[:60]!r}") from None
        if not newline or not value:
            raise CorruptEntry(f"cache entry has no value: {raw[:60]!r}")
        return cls(value, created_at, delta, soft_expiry)


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a strategy hands back to the pod: the value (JSON bytes) and how it was obtained."""

    value: bytes
    outcome: Outcome

    def data(self) -> dict[str, Any]:
        """The value parsed: for tests and readers, never on the request path."""
        return _parse(self.value)


def json_bytes(content: Any) -> bytes:
    """JSON as the pods answer it (and Starlette's ``JSONResponse`` renders it): compact, UTF-8."""
    return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def _parse(value: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(value)
    return parsed
