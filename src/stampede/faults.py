"""Faults injected into a running lab, on a schedule, and what they did to the run.

A :class:`Fault` is a lab parameter (``run(..., faults=[Fault(kind="redis_restart", at_s=8)])``)
and part of the run's cache key. :class:`FaultInjector` applies the schedule on a background
thread while the load runs, against an *embedded* lab (it needs the PIDs):

- ``redis_restart``: SIGTERM the ``redis-server`` PID, wait ``down_s``, start it again on the
  same port (empty: the lab keeps no persistence). Pods fail open or answer 503, see
  :mod:`stampede.pod`; the load keeps running.
- ``pod_kill``: SIGKILL one pod (``pod`` is its index, 0-based). Its in-flight requests end as
  connection errors, its origin log dies with it (those reads are not counted), any lock it
  held lives until its lease runs out. With ``down_s`` set the pod is started again after that
  long (same port, the run's configuration); with ``down_s=None`` it stays dead.

Every action lands in a timeline of events (seconds since the run start), which the runner
stores in ``result.summary["faults"]`` together with :func:`fault_report`'s measured figures:
errors and fail-open answers during each outage, the origin's concurrency while Redis was
down, and the recovery time. Faults run one after another: one that is due while the previous
one is still being applied starts as soon as that one ends.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stampede.errors import ConfigError

if TYPE_CHECKING:  # pods import this module (through config): keep pandas out of their start
    import pandas as pd

    from stampede.lab import Lab

__all__ = [
    "DEGRADED_OUTCOMES",
    "Fault",
    "FaultInjector",
    "fault_report",
    "max_concurrency",
    "recovery_s",
]

log = logging.getLogger(__name__)

DEGRADED_OUTCOMES = {"error", "fail_open"}  # answers that did not come through the cache


class Fault(BaseModel):
    """One scheduled fault: what, when (s after the load starts), for how long, on which pod."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["redis_restart", "pod_kill"] = Field(description="what breaks")
    at_s: float = Field(gt=0, le=3600, description="when, s after the load starts")
    down_s: float | None = Field(
        1.0, ge=0, le=600, description="how long it stays down (pod_kill: None = for good)"
    )
    pod: int = Field(0, ge=0, le=15, description="pod_kill: which pod, 0-based")


def check_schedule(faults: Sequence[Fault], duration_s: float) -> None:
    """Refuse a fault that would start or end after the load: the run could not see it."""
    for fault in faults:
        if fault.kind == "redis_restart" and fault.down_s is None:
            raise ConfigError("redis_restart needs down_s (seconds Redis stays down)")
        end = fault.at_s + (fault.down_s or 0.0)
        if end >= duration_s:
            raise ConfigError(
                f"fault {fault.kind} at {fault.at_s:g} s + down {fault.down_s} s ends after the "
                f"load ({duration_s:g} s); valid: at_s + down_s < duration_s"
            )


class FaultInjector:
    """Applies a schedule of faults to an embedded lab on a background thread."""

    def __init__(self, lab: Lab, faults: Sequence[Fault]) -> None:
        self.lab = lab
        self.faults = sorted(faults, key=lambda f: f.at_s)
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._start = 0.0
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()

    def start(self, start: float) -> None:
        """Begin the schedule; ``start`` is the run's epoch start second."""
        self._start = start
        if self.faults:
            self._thread = threading.Thread(target=self._run, name="faults", daemon=True)
            self._thread.start()

    def join(self) -> list[dict[str, Any]]:
        """Wait for the schedule to finish (or cancel it); return the timeline."""
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise self.error
        return self.events

    def cancel(self) -> None:
        self._cancel.set()
        self.join()

    def _event(self, at: float, event: str, **extra: Any) -> None:
        self.events.append({"t": round(at - self._start, 4), "event": event, **extra})
        log.info("fault event %s at %.3f s %s", event, at - self._start, extra or "")

    def _sleep_until(self, epoch: float) -> bool:
        return not self._cancel.wait(max(0.0, epoch - time.time()))

    def _run(self) -> None:
        try:
            for fault in self.faults:
                if not self._sleep_until(self._start + fault.at_s):
                    return
                if fault.kind == "redis_restart":
                    self._restart_redis(fault)
                else:
                    self._kill_pod(fault)
        except BaseException as exc:  # reported by join(), in the runner's thread
            self.error = exc

    def _restart_redis(self, fault: Fault) -> None:
        down, up = self.lab.restart_redis(fault.down_s or 0.0)
        self._event(down, "redis_down")
        self._event(up, "redis_up")

    def _kill_pod(self, fault: Fault) -> None:
        killed = self.lab.kill_pod(fault.pod)
        self._event(killed, "pod_killed", pod=fault.pod, locks=self._locks())
        if fault.down_s is not None and self._sleep_until(killed + fault.down_s):
            self._event(self.lab.start_pod(fault.pod), "pod_up", pod=fault.pod)

    def _locks(self) -> dict[str, int]:
        """Every lock key and its remaining lease (ms) right after the kill: all must be > 0."""
        locks: dict[str, int] = {}
        with contextlib.suppress(Exception), self.lab.redis() as client:
            for key in client.scan_iter("lock:*"):
                ttl = int(client.pttl(key))
                if ttl != -2:  # -2: released between SCAN and PTTL; -1 would be a leak
                    locks[key.decode()] = ttl
        return locks


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
            "fail_open_during": int((during["outcome"] == "fail_open").sum()),
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
