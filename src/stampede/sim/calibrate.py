"""``stampede sim calibrate``: measure this machine's constants on a short live naive run.

The run is a load test (it takes the machine-wide run lock like every lab run); the constants
are read off its records and origin log (:func:`~stampede.sim.timing.calibrate`). Redis' cost
per command is its process's CPU seconds over the run (``/proc``, :class:`stampede.cpu.CpuMeter`)
over the round trips the pods sent: what one single-threaded shard spends per command, its
network I/O included (``INFO commandstats``' ``usec_per_call`` leaves that out and would
put the saturation point several times too high). Stored where ``stored_timing`` finds them.
"""

from __future__ import annotations

from pathlib import Path

from stampede.config import LabConfig
from stampede.cpu import CpuMeter
from stampede.lab import Lab
from stampede.sim.timing import Timing, calibrate, save_timing

__all__ = ["measure"]


def measure(duration_s: float = 20.0) -> tuple[Timing, Path]:
    """Run naive at the lab defaults for ``duration_s`` on a fresh embedded lab; store."""
    from stampede.runner import run

    lab = Lab.embedded(LabConfig())
    try:
        with CpuMeter({"redis": lab.pids[:1]}) as meter:
            result = run("naive", lab=lab, fresh=True, progress=False, duration_s=duration_s)
    finally:
        lab.stop()
    trips = result.counters.get("redis_round_trips") or result.summary["redis_commands"]
    service = meter.delta()["redis"] / max(1, trips)
    timing = calibrate(result, redis_service_s=round(service, 7))
    return timing, save_timing(timing)
