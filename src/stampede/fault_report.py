"""What the faults of a run did to it: the figures :func:`fault_report` measures per outage.

Pure functions of the run's records and origin reads (seconds since the run start, like the
other metrics in :mod:`stampede.metrics`) and the injector's timeline of events: errors and
fail-open answers during each outage, the origin's concurrency while Redis was down, and the
recovery time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from stampede.outcomes import Outcome

__all__ = ["DEGRADED_OUTCOMES", "fault_report", "max_concurrency", "recovery_s"]

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


def fault_report(
    records: pd.DataFrame, reads: pd.DataFrame, events: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Measured figures for each outage in ``events`` (``t`` in s since the run start)."""
    report: list[dict[str, Any]] = []
    opened: dict[str, dict[str, Any]] = {}
    for event in events:
        name = event["event"]
        key = "redis" if name.startswith("redis") else f"pod {event.get('pod')}"
        if name in ("redis_down", "pod_killed"):
            opened[key] = event
            continue
        begin = opened.pop(key)
        t0, t1 = begin["t"], event["t"]
        during = records[(records["t"] >= t0) & (records["t"] < t1)]
        entry: dict[str, Any] = {
            "kind": "redis_restart" if name == "redis_up" else "pod_kill",
            "down_at_s": t0,
            "up_at_s": t1,
            "requests_during": len(during),
            "errors_during": int(((during["status"] == 0) | (during["status"] >= 500)).sum()),
            "fail_open_during": int((during["outcome"] == Outcome.FAIL_OPEN).sum()),
            "recovery_s": recovery_s(records, t1),
        }
        if name == "redis_up":
            started = reads[(reads["t"] >= t0) & (reads["t"] < t1)]
            spans = zip(started["start"], started["end"], strict=True)
            entry["origin_reads_during"] = len(started)
            entry["origin_concurrency_max"] = max_concurrency(spans)
        else:
            entry["pod"] = event["pod"]
            entry["connect_errors_during"] = int((during["error"] == "connect").sum())
            entry["locks_at_kill"] = begin.get("locks", {})
        report.append(entry)
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
