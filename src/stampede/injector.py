"""Faults applied to a running embedded lab, on a schedule, from a background thread.

:class:`FaultInjector` takes the run's :class:`~stampede.config.Fault` schedule and acts on
the PIDs an *embedded* :class:`~stampede.lab.Lab` started:

- ``redis_restart``: SIGTERM the ``redis-server`` PID, wait ``down_s``, start it again on the
  same port (empty: the lab keeps no persistence). Pods fail open or answer 503, see
  :mod:`stampede.pod`; the load keeps running.
- ``pod_kill``: SIGKILL one pod (``pod`` is its index, 0-based). Its in-flight requests end as
  connection errors, its origin log dies with it (those reads are not counted), any lock it
  held lives until its lease runs out. With ``down_s`` set the pod is started again after that
  long (same port, the run's configuration); with ``down_s=None`` it stays dead.

Every action lands in a timeline of events (seconds since the run start), which the runner
stores in ``result.summary["faults"]`` beside :func:`stampede.fault_report.fault_report`'s
figures. Faults run one after another: one that is due while the previous one is still being
applied starts as soon as that one ends.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from stampede.config import Fault
from stampede.lab import Lab

__all__ = ["FaultInjector"]

log = logging.getLogger(__name__)


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
