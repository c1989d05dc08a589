"""How one request was answered: the one vocabulary of outcomes, everywhere.

A pod sends the outcome in the ``X-Cache`` header, the load generator records it per request,
the pods count it in ``/stats`` and the metrics tally it. A ``StrEnum``, so a member *is* its
string: it goes into a header, a JSON summary or a pandas column unchanged, and a value read
back from any of them compares equal to the member.

Adding an outcome is one member here; the metrics test fails until
:data:`stampede.metrics.SERVED_WITHOUT_ORIGIN` (or its complement) says how it counts.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Outcome"]


class Outcome(StrEnum):
    """One request's outcome; the ``X-Cache`` header's value."""

    HIT = "hit"  # a fresh value from the cache
    MISS = "miss"  # this request read the origin and wrote the cache
    WAIT_HIT = "wait_hit"  # waited for another request's refresh, then got its value
    STALE = "stale"  # a value past its soft expiry, served while one refresh runs
    EARLY_REFRESH = "early_refresh"  # a fresh value; this request started an early refresh
    FAIL_OPEN = "fail_open"  # Redis failed: read the origin directly, bounded per pod
    ERROR = "error"  # no value: a 503 from the pod, or no response at all
    NOT_FOUND = "not_found"  # a 404 (the pods' count; its X-Cache says hit or miss)
