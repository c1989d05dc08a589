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
- ``primary_kill`` (a Redis Cluster with replicas): SIGKILL the primary that serves the hot
  key's slot, by the PID the lab started it with. With ``after_lock_s`` set, it first waits
  (from ``at_s``) until the hot key's lock is held on that primary, then that long: a kill
  mid-refresh. It then watches the live nodes until a replica serves the slot as primary
  (``primary_promoted``) and reads, there, what became of the lock: ``lock_pttl_ms`` -2 if
  the replica never got it (asynchronous replication lost it), else the lease it has left
  (an orphan: its holder's connection went with the dead primary). The dead node is not
  started again.

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

import redis

from stampede.cache import CacheStore
from stampede.config import Fault
from stampede.errors import LabError
from stampede.lab import Lab

__all__ = ["FaultInjector"]

log = logging.getLogger(__name__)

PROMOTION_TIMEOUT_S = 30.0  # no replica promoted by then: the run fails (LabError)
POLL_S = 0.01  # how often the lock and the slot's owner are looked at


class FaultInjector:
    """Applies a schedule of faults to an embedded lab on a background thread."""

    def __init__(
        self,
        lab: Lab,
        faults: Sequence[Fault],
        *,
        hot_item: int = 1,
        duration_s: float = 3600.0,
    ) -> None:
        self.lab = lab
        self.faults = sorted(faults, key=lambda f: f.at_s)
        self.hot_item = hot_item
        self.duration_s = duration_s  # a lock wait gives up when the load ends
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
                elif fault.kind == "primary_kill":
                    self._kill_primary(fault)
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

    def _kill_primary(self, fault: Fault) -> None:
        lock = CacheStore.lock_key(self.hot_item)
        primary = self.lab.primary_of(lock)
        if not primary:
            raise LabError(f"no live node serves {lock}'s slot at {fault.at_s:g} s")
        if fault.after_lock_s is not None:
            held = self._lock_taken(primary, lock)
            if held is None:
                return  # cancelled
            self._event(held, "hot_lock_held", node=primary, item=self.hot_item)
            if not self._sleep_until(held + fault.after_lock_s):
                return
        lease = self._pttl(primary, lock)
        killed = self.lab.kill_redis_node(primary)
        self._event(killed, "primary_killed", node=primary, item=self.hot_item, lock_pttl_ms=lease)
        deadline = killed + PROMOTION_TIMEOUT_S
        while not self._cancel.wait(POLL_S * 5):
            now = self.lab.primary_of(lock)
            if now and now != primary:
                at = time.time()
                self._event(at, "primary_promoted", node=now, lock_pttl_ms=self._pttl(now, lock))
                return
            if time.time() > deadline:
                raise LabError(
                    f"no replica took over {primary}'s slots {PROMOTION_TIMEOUT_S:g} s after "
                    "the kill (cluster-replica-validity-factor, votes?)"
                )

    def _lock_taken(self, node: str, lock: str) -> float | None:
        """Epoch second the hot key's lock was first seen held on ``node``; None: cancelled."""
        end = self._start + self.duration_s
        slot = redis.crc.key_slot(lock.encode())
        # CLUSTER GETKEYSINSLOT, not EXISTS: the runner leaves cluster|* out of the commands
        # it counts, so a hundred looks a second do not land in the hot shard's figures
        with self.lab.node_client(node) as client:
            while not self._cancel.is_set():
                if lock.encode() in client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 16):
                    return time.time()
                if time.time() > end:
                    raise LabError(f"{lock} was never held on {node} before the load ended")
                self._cancel.wait(POLL_S)
        return None

    def _pttl(self, node: str, key: str) -> int | None:
        """``key``'s remaining lease on ``node`` in ms (-2: not there); None: no answer."""
        with contextlib.suppress(Exception), self.lab.node_client(node) as client:
            return int(client.pttl(key))
        return None

    def _locks(self) -> dict[str, int]:
        """Every lock key and its remaining lease (ms) right after the kill: all must be > 0."""
        locks: dict[str, int] = {}
        with contextlib.suppress(Exception), self.lab.redis() as client:
            for key in client.scan_iter("lock:*"):
                ttl = int(client.pttl(key))
                if ttl != -2:  # -2: released between SCAN and PTTL; -1 would be a leak
                    locks[key.decode()] = ttl
        return locks
