"""CPU seconds of processes, read from the kernel: what a run cost the machine.

``cpu_seconds(pid)`` is a process's user + system time from ``/proc/<pid>/stat`` (fields 14
and 15 of proc(5), in clock ticks); ``children_cpu_seconds()`` is the same for this process's
children that have exited and been waited for (``getrusage(RUSAGE_CHILDREN)``), which is how
the load workers' CPU is counted: they are gone by the time a run returns. :class:`CpuMeter`
takes both around a block, per named group of PIDs::

    with CpuMeter({"pods": pod_pids, "redis": [redis_pid]}, children="generator") as meter:
        run(...)
    meter.delta()  # {"pods": 6.1, "redis": 0.3, "generator": 2.4}, CPU seconds

What it does not do: sample while the block runs. A PID that exits during the block (a pod
killed by a fault) is not in the end snapshot, so its CPU since the start is lost; it is named
in :attr:`CpuMeter.gone` and counts 0. A child that is still running at the end is not in
``RUSAGE_CHILDREN`` yet (the kernel adds a child's time when it is reaped). Linux only.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType

__all__ = ["CpuMeter", "CpuSample", "children_cpu_seconds", "cpu_seconds"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used; ProcessLookupError once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessLookupError(f"no process {pid}") from None
    # the command name (field 2) is in parentheses and may contain spaces or ")"
    fields = stat.rsplit(b")", 1)[1].split()
    if fields[0] == b"Z":  # a zombie's counters are final, but it is no longer running
        raise ProcessLookupError(f"process {pid} has exited (zombie)")
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's children that have exited and been reaped."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class CpuSample:
    """One snapshot: monotonic wall time, CPU seconds per live PID, reaped children's CPU."""

    wall_s: float
    pids: dict[int, float]
    children_s: float

    @classmethod
    def take(cls, pids: Iterable[int]) -> CpuSample:
        found = {}
        for pid in pids:
            try:
                found[pid] = cpu_seconds(pid)
            except ProcessLookupError:
                continue
        return cls(time.monotonic(), found, children_cpu_seconds())


class CpuMeter:
    """CPU seconds per named group of PIDs between a start and an end snapshot.

    ``children`` names the extra group holding this process's reaped children (None: left
    out). :meth:`delta` before the end of the ``with`` block measures up to now.
    """

    def __init__(self, groups: Mapping[str, Iterable[int]], *, children: str | None = None) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items()}
        if children is not None and children in self.groups:
            raise ValueError(f"group name {children!r} is used twice")
        self.children = children
        self.start: CpuSample | None = None
        self.end: CpuSample | None = None

    def _pids(self) -> set[int]:
        return {pid for pids in self.groups.values() for pid in pids}

    def __enter__(self) -> CpuMeter:
        self.start = CpuSample.take(self._pids())
        self.end = None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end = CpuSample.take(self._pids())

    def _pair(self) -> tuple[CpuSample, CpuSample]:
        if self.start is None:
            raise RuntimeError("CpuMeter was never started: use it in a `with` block")
        return self.start, self.end or CpuSample.take(self._pids())

    def delta(self) -> dict[str, float]:
        """CPU seconds each group used between the snapshots (a gone PID counts 0)."""
        start, end = self._pair()
        both = start.pids.keys() & end.pids.keys()
        out = {
            name: sum(end.pids[p] - start.pids[p] for p in pids if p in both)
            for name, pids in self.groups.items()
        }
        if self.children is not None:
            out[self.children] = end.children_s - start.children_s
        return out

    @property
    def elapsed_s(self) -> float:
        """Wall seconds between the snapshots."""
        start, end = self._pair()
        return end.wall_s - start.wall_s

    @property
    def gone(self) -> set[int]:
        """PIDs seen at the start and missing at the end: their CPU is not in :meth:`delta`."""
        start, end = self._pair()
        return set(start.pids) - set(end.pids)
