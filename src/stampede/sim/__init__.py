"""The lab at fleet scale: a simulator of the same topology, proven against the lab and the math.

Two engines, one per question (the first also stepped online), both driven by a lab run's
parameters:

- **Per key, request by request around each expiry** (:mod:`~stampede.sim.keymodel`,
  :func:`simulate`, :func:`poisson_key`). Keys do not interact in the lab (the origin has no
  concurrency limit; a Redis shard far from saturation answers in one round trip), so each
  key's sorted arrival times are walked on their own: a run of hits between two expiries is
  one ``searchsorted``, and only the requests near an expiry (herd, waiters, stale answers,
  early refreshes) are decided one by one, with the strategy's own decision functions
  (``should_refresh``, ``jittered_ttl``, ``hard_ttl_s``, ``Entry.is_fresh``). It returns the
  lab's :class:`~stampede.runner.RunResult` (records, origin log, summary), so ``compare``,
  the charts and every chapter cell accept it; ``stampede.run(..., backend="sim")`` calls it.
- **Online, every key in global time order** (:mod:`~stampede.sim.online`): what couples the
  keys, closed-loop clients (``pacing="closed"``: each sends ``think_ms`` after its last
  answer) and an origin concurrency limit (``origin_limit``: reads beyond it queue FIFO),
  steps each key's same walk one request at a time, arrivals made as the answers come.
- **Per TTL cycle, every key at once** (:mod:`~stampede.sim.fleet`, :func:`fleet`): the scale
  target (1,000 pods, 10^6 req/s, Zipf(1.0) over 10^6 keys, 60 s: 6 x 10^7 requests) is past
  any per-request loop in Python. With Poisson arrivals the next request after an expiry is
  Exp(λ) away and the number in any window is Poisson, so one numpy step advances *every* key
  by one TTL cycle: about a dozen steps cover 60 s. Its counts are the same random variables
  the per-key engine draws request by request (a test holds the two together); it returns
  counts (origin reads per second, Redis commands per shard), not per-request records.

Why not a per-request event loop: SimPy runs about 250k events/s, four minutes for one scale
run; a numba-compiled loop would be fast, but it cannot call the package's own decision
functions (Python objects with a ``random.Random``), which the models must use rather than
restate, and it would add a compiler to the install (numba 0.68 is on PyPI; not needed).
"""

from __future__ import annotations

from stampede.sim.backend import BACKEND, KeyRun, arrivals, poisson_key, simulate, titled
from stampede.sim.fleet import FleetResult, fleet
from stampede.sim.keymodel import CODES, LAB_ONLY, MODELS, KeyTrace, Model, simulate_key
from stampede.sim.online import OriginQueue
from stampede.sim.timing import MEASURED, ZERO, Timing, calibrate, stored_timing
from stampede.sim.versus import Agreement, agreement

__all__ = [
    "BACKEND",
    "CODES",
    "LAB_ONLY",
    "MEASURED",
    "MODELS",
    "ZERO",
    "Agreement",
    "FleetResult",
    "KeyRun",
    "KeyTrace",
    "Model",
    "OriginQueue",
    "Timing",
    "agreement",
    "arrivals",
    "calibrate",
    "fleet",
    "poisson_key",
    "simulate",
    "simulate_key",
    "stored_timing",
    "titled",
]
