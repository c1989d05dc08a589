"""The machine's constants the simulator needs: what a Redis round trip, a pod and the origin cost.

Measured, not assumed: :data:`MEASURED` holds the values measured on the lab's reference
machine (2 cores) by :func:`calibrate` from a live naive run at the lab defaults::

    flock /tmp/stampede-heavy.lock stampede sim calibrate

runs that measurement on this machine, stores the constants (:func:`stored_timing`) and prints
them; :func:`calibrate` reads them off the run's records and origin log, and Redis' CPU over
the run per round trip gives its service time per command (:mod:`stampede.sim.calibrate`).
``bench/sim_vs_lab.py`` simulates with the stored constants when there are some.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from stampede.runner import RunResult

__all__ = [
    "MEASURED",
    "ZERO",
    "Array",
    "Timing",
    "calibrate",
    "save_timing",
    "stored_path",
    "stored_timing",
]


Array = NDArray[Any]
"""Any numpy array: the simulator's arrays of times, counts and codes."""


@dataclass(frozen=True)
class Timing:
    """Constants of one machine, seconds; the simulator adds them up per request.

    A request's latency is ``base_s`` + one ``redis_rtt_s`` per round trip it makes + the
    origin reads and waits it sits through. ``redis_service_s`` is Redis' own CPU per command:
    it sets where one shard (one core) saturates, ``1 / redis_service_s`` commands a second.
    An origin read lasts the injected latency + ``origin_extra_s`` x Gamma(4)/4 (mean
    ``origin_extra_s``): SQLite and the event loop's own delay.
    """

    base_s: float = 0.0
    redis_rtt_s: float = 0.0
    redis_service_s: float = 0.0
    pod_wake_s: float = 0.0  # a pod answers the waiters one refresh woke one after another
    origin_extra_s: float = 0.0

    def origin_latency(self, injected_s: float, rng: np.random.Generator, size: int) -> Array:
        """``size`` origin read durations for an injected latency, s."""
        if self.origin_extra_s <= 0:
            return np.full(size, injected_s)
        return injected_s + self.origin_extra_s * rng.gamma(4.0, 0.25, size)

    def with_(self, **changes: float) -> Timing:
        return replace(self, **changes)


ZERO = Timing()
"""No overheads: only the origin's injected latency takes time (the closed forms' setting)."""

# Measured 2026-12-02 01:43 UTC on the reference machine (2 cores, shared), lab defaults, naive:
#   flock /tmp/stampede-heavy.lock stampede sim calibrate --duration-s 20
# redis_service_s is Redis' CPU over the run divided by the pods' round trips: at the lab's
# ~400 commands/s its idle housekeeping is in it, so it overstates the cost of a command at
# load (an upper bound; saturation comes later than it says). pod_wake_s is NOT measured by
# it: assumed from the order of magnitude bench/waiters.py reports for a woken waiter.
MEASURED = Timing(
    base_s=0.000344,
    redis_rtt_s=0.00022,
    redis_service_s=0.0000384,
    pod_wake_s=0.0002,
    origin_extra_s=0.000512,
)
"""This machine's constants, measured by :func:`calibrate` (the command is in the source)."""


def calibrate(result: RunResult, *, redis_service_s: float) -> Timing:
    """This machine's constants from a live naive run (its records and origin log).

    A hit is ``base + rtt``; a miss is ``base + 3 rtt + read`` (GET, EXISTS, the read, SET),
    so the medians give the round trip as the pods' own client pays it, and the origin log
    gives the read's real duration. ``redis_service_s`` is Redis' ``usec_per_call`` for GET
    (``INFO commandstats``), measured on the same lab.
    """
    if result.strategy != "naive" or result.summary.get("backend") == "sim":
        raise ValueError(
            f"calibrate needs a live naive run (got {result.strategy!r}, "
            f"backend {result.summary.get('backend', 'lab')!r})"
        )
    records = result.records[result.records["status"] == 200]
    hits = records.loc[records["outcome"] == "hit", "latency_ms"] / 1000
    misses = records.loc[records["outcome"] == "miss", "latency_ms"] / 1000
    if hits.empty or misses.empty or result.reads.empty:
        raise ValueError("calibrate needs a run with hits, misses and origin reads")
    durations = result.reads["end"] - result.reads["start"]
    read = float(np.median(durations))
    rtt = max(0.0, (float(np.median(misses)) - float(np.median(hits)) - read) / 2)
    injected = result.params["origin_latency_ms"] / 1000
    return Timing(
        base_s=round(max(0.0, float(np.median(hits)) - rtt), 6),
        redis_rtt_s=round(rtt, 6),
        redis_service_s=redis_service_s,
        pod_wake_s=MEASURED.pod_wake_s,
        origin_extra_s=round(max(0.0, float(np.mean(durations)) - injected), 6),
    )


def stored_path() -> Path:
    from stampede import paths

    return paths.state_dir() / "sim-timing.json"


def save_timing(timing: Timing) -> Path:
    path = stored_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(timing), indent=1) + "\n", encoding="utf-8")
    return path


def stored_timing() -> Timing | None:
    """What ``stampede sim calibrate`` measured and stored on this machine, if it ran."""
    path = stored_path()
    if not path.exists():
        return None
    return Timing(**json.loads(path.read_text(encoding="utf-8")))
