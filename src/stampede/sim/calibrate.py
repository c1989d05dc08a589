"""``stampede sim calibrate``: measure this machine's constants on a short live naive run.

The run is a load test (it takes the machine-wide run lock like every lab run); the constants
are read off its records and origin log (:func:`~stampede.sim.timing.calibrate`), Redis' service
time from ``INFO commandstats`` on the same lab, then stored where :func:`stored_timing` finds
them.
"""

from __future__ import annotations

from pathlib import Path

from stampede.config import LabConfig
from stampede.lab import Lab
from stampede.sim.timing import Timing, calibrate, save_timing

__all__ = ["measure", "redis_service_s"]


def redis_service_s(lab: Lab) -> float:
    """Redis' own time per GET on ``lab`` (``usec_per_call``), s."""
    with lab.redis() as client:
        stats = client.info("commandstats")
    get = stats.get("cmdstat_get", {})
    return float(get.get("usec_per_call", 0.0)) / 1e6


def measure(duration_s: float = 20.0) -> tuple[Timing, Path]:
    """Run naive at the lab defaults for ``duration_s`` on a fresh embedded lab; store."""
    from stampede.runner import run

    lab = Lab.embedded(LabConfig())
    try:
        result = run("naive", lab=lab, fresh=True, progress=False, duration_s=duration_s)
        service = redis_service_s(lab)
    finally:
        lab.stop()
    timing = calibrate(result, redis_service_s=round(service, 7))
    return timing, save_timing(timing)
