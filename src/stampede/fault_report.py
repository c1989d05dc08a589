"""What the faults of a run did to it: the figures :func:`fault_report` measures per outage.

Pure functions of the run's records and origin reads (seconds since the run start, like the
other metrics in :mod:`stampede.metrics`) and the injector's timeline of events: errors and
fail-open answers during each outage, the origin's concurrency while Redis was down (all reads,
and the fail-open ones the pods bound), and the recovery time. A ``primary_kill`` outage runs
from the kill to the replica's promotion; its entry (:func:`failover_entry`) adds what the hot
key paid for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from stampede.outcomes import Outcome

__all__ = [
    "DEGRADED_OUTCOMES",
    "failover_entry",
    "fault_report",
    "max_concurrency",
    "recovery_s",
]

CACHED_OUTCOMES = frozenset({Outcome.HIT, Outcome.WAIT_HIT, Outcome.STALE})

DEGRADED_OUTCOMES = frozenset({Outcome.ERROR, Outcome.FAIL_OPEN})  # not through the cache


def max_concurrency(intervals: Iterable[tuple[float, float]]) -> int:
    """Most intervals ``(start, end)`` open at one instant (ends sort before starts)."""
    spans = list(intervals)
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    best = current = 0
    for _, step in edges:
        current += step
        best = max(best, current)
    return best


def _spans(reads: pd.DataFrame) -> Iterable[tuple[float, float]]:
    return zip(reads["start"], reads["end"], strict=True)


def _degraded(records: pd.DataFrame) -> pd.Series:
    return (
        records["outcome"].isin(DEGRADED_OUTCOMES)
        | (records["status"] == 0)
        | (records["status"] >= 500)
    )


def recovery_s(records: pd.DataFrame, t_up: float) -> float:
    """Seconds from ``t_up`` to the send time of the last degraded answer sent after it.

    0 when every request sent after ``t_up`` came through the cache. ``records`` carry ``t``,
    seconds since the run start, like ``t_up``.
    """
    after = records[(records["t"] >= t_up) & _degraded(records)]
    return float(after["t"].max() - t_up) if len(after) else 0.0


def _outage(records: pd.DataFrame, t0: float, t1: float) -> dict[str, Any]:
    """The figures every outage entry has: its span, what was sent in it, the recovery after."""
    during = records[(records["t"] >= t0) & (records["t"] < t1)]
    return {
        "down_at_s": t0,
        "up_at_s": t1,
        "requests_during": len(during),
        "errors_during": int(((during["status"] == 0) | (during["status"] >= 500)).sum()),
        "fail_open_during": int((during["outcome"] == Outcome.FAIL_OPEN).sum()),
        "recovery_s": recovery_s(records, t1),
    }


def fault_report(
    records: pd.DataFrame, reads: pd.DataFrame, events: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Measured figures for each outage in ``events`` (``t`` in s since the run start)."""
    report: list[dict[str, Any]] = []
    opened: dict[str, dict[str, Any]] = {}
    lock_held: dict[str, Any] | None = None
    for event in events:
        name = event["event"]
        if name == "hot_lock_held":
            lock_held = event
            continue
        if name.startswith("primary"):
            if name == "primary_killed":
                opened["primary"] = event
            else:
                begin = opened.pop("primary")
                report.append(failover_entry(records, reads, begin, event, lock_held))
                lock_held = None
            continue
        key = "redis" if name.startswith("redis") else f"pod {event.get('pod')}"
        if name in ("redis_down", "pod_killed"):
            opened[key] = event
            continue
        begin = opened.pop(key)
        t0, t1 = begin["t"], event["t"]
        during = records[(records["t"] >= t0) & (records["t"] < t1)]
        entry: dict[str, Any] = {
            "kind": "redis_restart" if name == "redis_up" else "pod_kill",
            **_outage(records, t0, t1),
        }
        if name == "redis_up":
            # every read that started in the outage, and the fail-open ones alone: the bound
            # (fail_open_concurrency per pod) is on those. A pod that sees Redis back before
            # the injector does reads through its strategy again (Redis restarted empty, so
            # every key misses), and those reads start inside the span too.
            started = reads[(reads["t"] >= t0) & (reads["t"] < t1)]
            fail_open = started[started["fail_open"]]
            entry["origin_reads_during"] = len(started)
            entry["origin_concurrency_max"] = max_concurrency(_spans(started))
            entry["fail_open_reads_during"] = len(fail_open)
            entry["fail_open_concurrency_max"] = max_concurrency(_spans(fail_open))
        else:
            entry["pod"] = event["pod"]
            entry["connect_errors_during"] = int((during["error"] == "connect").sum())
            entry["locks_at_kill"] = begin.get("locks", {})
        report.append(entry)
    opened.pop("primary", None)  # no promotion: the injector raised, the run failed
    for begin in opened.values():  # a pod killed for good: no "up" event
        t0 = begin["t"]
        after = records[records["t"] >= t0]
        report.append(
            {
                "kind": "pod_kill",
                "pod": begin.get("pod"),
                "down_at_s": t0,
                "up_at_s": None,
                "requests_during": len(after),
                "errors_during": int(((after["status"] == 0) | (after["status"] >= 500)).sum()),
                "connect_errors_during": int((after["error"] == "connect").sum()),
                "locks_at_kill": begin.get("locks", {}),
            }
        )
    return report


def failover_entry(
    records: pd.DataFrame,
    reads: pd.DataFrame,
    killed: dict[str, Any],
    promoted: dict[str, Any],
    lock_held: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What killing the hot key's primary cost, from the kill to the replica's promotion.

    ``promotion_s``: kill to promotion (a replica serves the slot). ``hot_cached_again_s``:
    promotion to the end of the first answer for the hot item, sent after it, that came from
    the cache (``hit``, ``wait_hit`` or ``stale``); ``recovery_s``: promotion to the last degraded
    answer (:func:`recovery_s`). ``hot_origin_reads_failover`` counts the hot item's origin
    reads from the refresh the kill interrupted (the lock seen held, else the kill) until the
    hot item was served from the cache again: the interrupted refresh, the one after the
    promoted orphan lock lapsed, and any fail-open reads while the slot had no primary.
    ``lock_pttl_at_kill_ms`` and ``lock_pttl_promoted_ms`` (-2: the replica never had it)
    say what the replica promoted. The pods' ``fence_refused`` count is added by the runner.
    """
    t0, t1 = killed["t"], promoted["t"]
    item = killed["item"]
    during = records[(records["t"] >= t0) & (records["t"] < t1)]
    hot = records[records["item"] == item]
    # by the answer's time, not the send time: a request sent just after the promotion to a
    # pod whose client still waits on the dead node is answered from the cache seconds later
    cached = hot[(hot["t"] >= t1) & hot["outcome"].isin(CACHED_OUTCOMES)]
    answered = cached["t"] + cached["latency_ms"] / 1000
    back = float(answered.min()) if len(cached) else float("nan")
    began = lock_held["t"] if lock_held is not None else t0
    hot_reads = reads[reads["item"] == item]
    window = hot_reads[(hot_reads["t"] >= began - 1e-3) & ~(hot_reads["t"] > back)]
    return {
        "kind": "primary_kill",
        "node": killed["node"],
        "promoted": promoted["node"],
        "lock_held_at_s": None if lock_held is None else lock_held["t"],
        **_outage(records, t0, t1),
        "promotion_s": t1 - t0,
        "lock_pttl_at_kill_ms": killed.get("lock_pttl_ms"),
        "lock_pttl_promoted_ms": promoted.get("lock_pttl_ms"),
        "outcomes_during": {str(k): int(v) for k, v in during["outcome"].value_counts().items()},
        "origin_reads_during": int(((reads["t"] >= t0) & (reads["t"] < t1)).sum()),
        "hot_origin_reads_during": int(((hot_reads["t"] >= t0) & (hot_reads["t"] < t1)).sum()),
        "hot_origin_reads_failover": len(window),
        "hot_cached_again_s": back - t1,
    }
