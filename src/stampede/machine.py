"""Did a run measure the lab, or the machine it ran on?

The lab measures latency on the same machine that runs it, so a busy machine shows up in every
figure: a pod that waits for a CPU answers late, and a generator that waits for one sends late.
Two signals say so, and a run's summary records both (``machine``):

- **send lag**: the generator records when each request was due and when it went out. On a
  machine with CPU to spare the lag stays near a millisecond; when 1% of requests leave more
  than :attr:`MachineLimits.send_lag_p99_ms` late, the generator itself could not keep up;
- **CPU busy share**: how busy the CPUs this process may run on were during the run
  (``/proc/stat``, the lab and everything else on the machine together). Above
  :attr:`MachineLimits.busy_share` the run waited for CPUs, whoever used them.

Either one marks the run ``machine_bound``, with the reasons in plain words and what to do.
What it does not see: a CPU quota from a container's cgroup (a hub that gives one CPU out of
many through a quota, not through affinity) counts the host's CPUs; the send lag still shows it.
Linux only (``/proc/stat``); elsewhere the busy share is unknown (NaN) and only the lag counts.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = ["ADVICE", "MachineLimits", "MachineMeter", "cpu_ticks", "verdict"]

ADVICE = (
    "re-run it on a quieter machine (close other programs, let other runs finish) or with "
    "less load (a lower rate or fewer clients); the lesson's figures need CPU to spare"
)


@dataclass(frozen=True)
class MachineLimits:
    """Where a run stops measuring the lab and starts measuring the machine."""

    send_lag_p99_ms: float = 10.0
    busy_share: float = 0.90


def _allowed_cpus() -> set[int]:
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()


def cpu_ticks(cpus: set[int] | None = None) -> tuple[int, int]:
    """(busy, total) clock ticks of ``cpus`` (default: those this process may use) so far.

    Busy is everything but idle and iowait (proc(5)); ``(0, 0)`` where ``/proc/stat`` is not.
    """
    cpus = _allowed_cpus() if cpus is None else cpus
    busy = total = 0
    try:
        with open("/proc/stat") as fh:
            lines = fh.readlines()
    except OSError:
        return 0, 0
    for line in lines:
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
        idle = ticks[3] + ticks[4]
        total += sum(ticks)
        busy += sum(ticks) - idle
    return busy, total


@dataclass
class MachineMeter:
    """The CPU busy share of this process's CPUs over a ``with`` block."""

    cpus: set[int] = field(default_factory=_allowed_cpus)
    _start: tuple[int, int] = (0, 0)
    _end: tuple[int, int] | None = None

    def __enter__(self) -> MachineMeter:
        self._start, self._end = cpu_ticks(self.cpus), None
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._end = cpu_ticks(self.cpus)

    @property
    def busy_share(self) -> float:
        end = self._end or cpu_ticks(self.cpus)
        busy, total = end[0] - self._start[0], end[1] - self._start[1]
        return busy / total if total > 0 else math.nan


def verdict(
    send_lag_p99_ms: float, busy_share: float, cpus: int, limits: MachineLimits | None = None
) -> dict[str, Any]:
    """The summary's ``machine`` entry: the two signals, ``machine_bound`` and its reasons."""
    limits = limits or MachineLimits()
    reasons = []
    if send_lag_p99_ms > limits.send_lag_p99_ms:
        reasons.append(
            f"the load generator sent 1% of its requests more than {send_lag_p99_ms:.0f} ms "
            f"late (limit {limits.send_lag_p99_ms:g} ms): it could not keep its own schedule"
        )
    if busy_share > limits.busy_share:
        reasons.append(
            f"the {cpus} CPU(s) this run could use were {busy_share:.0%} busy (limit "
            f"{limits.busy_share:.0%}), the lab and everything else together: requests "
            "waited for a CPU"
        )
    return {
        "machine_bound": bool(reasons),
        "reasons": reasons,
        "advice": ADVICE if reasons else "",
        "send_lag_p99_ms": send_lag_p99_ms,
        "busy_share": busy_share,
        "cpus": cpus,
    }
