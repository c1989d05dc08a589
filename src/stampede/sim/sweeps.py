"""Chapter 9's experiments as functions: each sweep returns a tidy frame, the closed form beside.

Every row carries what the simulator measured and what the closed form predicts for it, so a
chapter asserts one against the other and a chart draws both. All of them take seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from stampede.sim.backend import poisson_key, simulate
from stampede.sim.fleet import fleet, zipf_rates
from stampede.sim.timing import MEASURED, ZERO, Timing

__all__ = [
    "EULER_GAMMA",
    "fleet_table",
    "herd_sweep",
    "jitter_sweep",
    "local_lock_sweep",
    "origin_limit_sweep",
    "redis_cost_sweep",
    "xfetch_head_start_sweep",
    "zipf_top_rate",
]

EULER_GAMMA = 0.5772156649015329  # E[-ln E] for E ~ Exp(1)


def zipf_top_rate(rate: float, keys: int, alpha: float) -> float:
    """The most popular key's requests/s under Zipf(``alpha``) over ``keys``."""
    return float(zipf_rates(rate, keys, alpha)[0])


def herd_sweep(
    rates: Iterable[float], latencies_s: Iterable[float], *, expiries: int = 200, ttl_s: float = 1.0
) -> pd.DataFrame:
    """Naive: mean origin reads per expiry for each (λ, L), beside 1 + λL."""
    rows = []
    for latency in latencies_s:
        for rate in rates:
            run = poisson_key(
                "naive",
                rate=rate,
                expiries=expiries,
                timing=ZERO,
                ttl_s=ttl_s,
                origin_latency_ms=latency * 1000,
            )
            rows.append(
                {
                    "rate": rate,
                    "latency_s": latency,
                    "reads_per_expiry": float(run.per_expiry.mean()),
                    "closed_form": 1 + rate * latency,
                }
            )
    return pd.DataFrame(rows)


def local_lock_sweep(
    pods: Iterable[int], *, rate: float, latency_s: float, expiries: int = 200
) -> pd.DataFrame:
    """local_lock: reads per expiry against the number of pods (P while λL >> P)."""
    rows = []
    for p in pods:
        run = poisson_key(
            "local_lock",
            rate=rate,
            expiries=expiries,
            pods=p,
            timing=ZERO,
            ttl_s=1.0,
            origin_latency_ms=latency_s * 1000,
        )
        rows.append(
            {
                "pods": p,
                "reads_per_expiry": float(run.per_expiry.mean()),
                "closed_form": float(min(p, 1 + rate * latency_s)),
            }
        )
    return pd.DataFrame(rows)


def redis_cost_sweep(
    rates: Iterable[float],
    *,
    pods: int = 1000,
    latency_s: float = 0.2,
    poll_ms: float = 50.0,
    expiries: int = 200,
    timing: Timing = MEASURED,
) -> pd.DataFrame:
    """single_flight on one hot key (its own shard): what coordinating the herd costs Redis.

    Per expiry about λL requests wait. Polling costs each about (L/2) / poll + 1 GET-and-claim
    pairs; a notification costs two trips per waiter and one delivery per pod (every pod
    subscribes to every ready channel). ``shard_utilisation`` is the shard's commands a
    second, hits and deliveries included, times Redis' service time: 1 is one core.
    """
    rows = []
    for rate in rates:
        for wait in ("poll", "notify"):
            run = fleet(
                "single_flight",
                pods=pods,
                rate=rate,
                keys=1,
                timing=timing,
                duration_s=expiries * (1.0 + latency_s),
                ttl_s=1.0,
                origin_latency_ms=latency_s * 1000,
                wait=wait,
                poll_ms=poll_ms,
            )
            n = max(1, run.origin_reads)
            rows.append(
                {
                    "rate": rate,
                    "wait": wait,
                    "waiters_per_expiry": run.waiters / n,
                    "redis_per_expiry": (run.redis_commands - run.hits + run.pubsub_deliveries) / n,
                    "shard_utilisation": run.redis_busiest_utilisation,
                }
            )
    return pd.DataFrame(rows)


def xfetch_head_start_sweep(
    betas: Iterable[float], rates: Iterable[float], *, delta_s: float = 0.1, expiries: int = 300
) -> pd.DataFrame:
    """XFetch: how long before expiry the first early refresh starts, against β and λ.

    Closed form (Poisson arrivals): the first refresh comes when the firing hazard's integral
    λδβ·e^(-s/δβ) reaches an Exp(1) draw E, at s = δβ·ln(λδβ/E): mean δβ·(ln(λδβ) + gamma). The
    TTL is long enough that it has not already come due when the value is written.
    """
    rows = []
    for beta in betas:
        for rate in rates:
            scale = delta_s * beta
            ttl = max(1.0, scale * (math.log(rate * scale) + 8))
            run = poisson_key(
                "xfetch",
                rate=rate,
                expiries=expiries,
                timing=ZERO,
                ttl_s=ttl,
                origin_latency_ms=delta_s * 1000,
                beta=beta,
            )
            heads = np.asarray(run.trace.head_starts[1:], float)
            rows.append(
                {
                    "beta": beta,
                    "rate": rate,
                    "head_start_s": float(heads.mean()),
                    "closed_form": scale * (math.log(rate * scale) + EULER_GAMMA),
                }
            )
    return pd.DataFrame(rows)


def jitter_sweep(
    jitters: Iterable[float],
    *,
    keys: int = 1_000_000,
    rate: float = 10_000_000.0,
    ttl_s: float = 5.0,
    strategy: str = "single_flight",
) -> pd.DataFrame:
    """``keys`` written at t = 0, uniform traffic: the busiest second after the first TTL.

    Expiries spread uniformly over [T, T(1 + J)], so the re-reads come at about K / (T·J) a
    second; without jitter all K fall within a second or two. Single-flight by default, so
    each expiry is one read (naive would add its herd of λL per key on top).
    """
    rows = []
    for jitter in jitters:
        duration = ttl_s * (1 + jitter) + 2
        run = fleet(
            strategy,
            pods=1000,
            rate=rate,
            keys=keys,
            alpha=0.0,
            duration_s=duration,
            warm=True,
            ttl_s=ttl_s,
            jitter=jitter,
        )
        rows.append(
            {
                "jitter": jitter,
                "peak_reads_per_s": run.max_origin_per_s_steady,
                "closed_form": keys / (ttl_s * jitter) if jitter else float(keys),
                "wall_s": run.wall_s,
            }
        )
    return pd.DataFrame(rows)


def fleet_table(strategies: Iterable[tuple[str, dict[str, Any]]], **scale: Any) -> pd.DataFrame:
    """One fleet simulation per (strategy, options): its counts, one row each."""
    rows = []
    for name, options in strategies:
        result = fleet(name, **scale, **options)
        label = name + (f" ({options['wait']})" if "wait" in options else "")
        rows.append(
            {
                "strategy": label,
                **result.summary(),
                "requests_per_wall_s": result.requests_per_wall_s,
            }
        )
    return pd.DataFrame(rows).set_index("strategy")


def origin_limit_sweep(
    strategies: Iterable[str],
    limits: Iterable[int | None],
    *,
    clients: int,
    think_ms: float,
    **params: Any,
) -> pd.DataFrame:
    """Each strategy against an origin limited to N reads at once, open and closed loop.

    One simulated lab run (``params``: the lab's) per strategy, limit (None: no limit, the
    lab's origin) and pacing: the open loop at ``params``' rate, the closed loop with
    ``clients`` clients thinking ``think_ms``. A row: what was sent, read and waited for, the
    mean answer and the client's timeouts (the generator's ``request_timeout_s``).
    """
    rows = []
    for name in strategies:
        for limit in limits:
            for pacing in ("open", "closed"):
                loop: dict[str, Any] = {}  # the open loop: params' rate
                if pacing == "closed":
                    loop = {"pacing": "closed", "clients": clients, "think_ms": think_ms}
                result = simulate(name, origin_limit=limit, **params, **loop)
                s, records = result.summary, result.records
                answered = records[records["status"] > 0]
                rows.append(
                    {
                        "strategy": name,
                        "pacing": pacing,
                        "origin_limit": limit,
                        "rps": s["rps"],
                        "origin_reads": s["origin_reads"],
                        "hot_reads_per_window_mean": s["hot_reads_per_window_mean"],
                        "origin_wait_ms_mean": s["sim"].get("origin_wait_ms_mean", 0.0),
                        "mean_answer_ms": float(answered["latency_ms"].mean()),
                        "timeouts": s["accounting"]["timeouts"],
                    }
                )
    return pd.DataFrame(rows)
