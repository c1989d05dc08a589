"""Every key at once, one TTL cycle per numpy step: the engine for fleet scale.

At 10^6 req/s over 10^6 keys a minute is 6 x 10^7 requests, past any per-request loop in
Python. With Poisson arrivals at rate λ on a key, though, the first request after an expiry
comes Exp(λ) later and the number arriving in any window of length w is Poisson(λw), so a
cycle of *every* key is a handful of vector operations: draw each key's first request after
its expiry, its origin read's latency, the herd (or the waiters, or the stale answers) that
arrives before the value is back, the next expiry. Keys drop out as their next request falls
past the end; a minute at a 5-s TTL takes about a dozen steps. These are the same random
variables :mod:`~stampede.sim.keymodel` draws request by request (a test holds the two engines
together on a shared setting); what this engine returns is counts, not per-request records.

Strategies: naive (and any TTL jitter, through :func:`stampede.cache.jittered_ttl`),
local_lock, single_flight (poll or notify) and swr. Redis: keys are spread over ``shards``
single-threaded servers (``item % shards``); each shard's load is its commands a second times
``Timing.redis_service_s``, so a utilisation of 1 or more is one saturated core. With
``wait="notify"`` every refresh publishes one message that Redis delivers to every subscribed
pod (each pod subscribes to every item's ready channel): ``pods`` deliveries on the key's shard.

Not modelled here: latency percentiles (the per-key engine has them), xfetch and the other
early-refresh strategies (their decision is per request: use :func:`~stampede.sim.simulate`),
a saturated shard slowing its clients down (utilisation is reported, not fed back).
"""

from __future__ import annotations

import math
import random
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stampede.cache import jittered_ttl
from stampede.config import StrategyConfig, validated
from stampede.errors import ConfigError
from stampede.registry import strategy_class
from stampede.sim.timing import MEASURED, Array, Timing

__all__ = ["FLEET_STRATEGIES", "FleetResult", "fleet", "zipf_rates"]

FLEET_STRATEGIES = ("naive", "jitter", "local_lock", "single_flight", "swr")


@dataclass
class FleetResult:
    """Counts of one fleet simulation; ``backend`` is ``"sim"`` like a simulated lab run."""

    params: dict[str, Any]
    requests: int
    origin_reads: int
    reads_per_s: Array = field(repr=False)  # origin reads started in each 1-s bucket
    redis_commands: int
    shard_commands_per_s: Array = field(repr=False)
    pubsub_deliveries: int
    waiters: int  # requests that waited for another's refresh (single_flight)
    stale: int  # requests answered stale (swr)
    hits: int  # requests answered from a fresh value with one GET
    hot_reads_per_expiry: list[int] = field(repr=False)  # the most popular key's herds
    steps: int
    wall_s: float
    peak_rss_mib: float
    backend: str = "sim"

    @property
    def max_origin_per_s_steady(self) -> int:
        start = math.ceil(self.params["ttl_s"])
        steady = self.reads_per_s[start:]
        return int(steady.max()) if steady.size else 0

    @property
    def redis_busiest_utilisation(self) -> float:
        """The busiest shard's share of one core (>= 1: saturated)."""
        service = float(self.params["timing"].redis_service_s)
        return float(self.shard_commands_per_s.max()) * service

    @property
    def requests_per_wall_s(self) -> float:
        return self.requests / self.wall_s if self.wall_s > 0 else math.inf

    def summary(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "requests": self.requests,
            "origin_reads": self.origin_reads,
            "max_origin_per_s_steady": self.max_origin_per_s_steady,
            "hit_rate": 1 - (self.origin_reads + self.waiters) / max(1, self.requests),
            "redis_commands": self.redis_commands,
            "redis_commands_per_request": self.redis_commands / max(1, self.requests),
            "redis_busiest_utilisation": self.redis_busiest_utilisation,
            "pubsub_deliveries": self.pubsub_deliveries,
            "hot_reads_per_expiry_mean": float(np.mean(self.hot_reads_per_expiry))
            if self.hot_reads_per_expiry
            else math.nan,
        }


def zipf_rates(rate: float, keys: int, alpha: float) -> Array:
    """Per-key request rates: ``rate`` split as k^-alpha over keys 1..keys (alpha 0: uniform)."""
    weights: Array = np.arange(1, keys + 1, dtype=float) ** -alpha
    rates: Array = rate * weights / weights.sum()
    return rates


def fleet(
    strategy: str = "naive",
    *,
    pods: int = 1000,
    rate: float = 1_000_000.0,
    keys: int = 1_000_000,
    alpha: float = 1.0,
    duration_s: float = 60.0,
    shards: int = 1,
    warm: bool = False,
    timing: Timing | None = None,
    seed: int = 0,
    **config: Any,
) -> FleetResult:
    """Simulate ``pods`` pods, ``rate`` req/s over Zipf(``alpha``) ``keys``, for ``duration_s``.

    ``config`` is :class:`~stampede.config.StrategyConfig`'s fields (``ttl_s``,
    ``origin_latency_ms``, ``wait``, ``poll_ms``, ``stale_s``, ``jitter``). ``warm``: every key
    was written at t = 0 (a bulk warm-up; its K reads are counted at t = 0).
    """
    cfg = validated(StrategyConfig, strategy=strategy, **config)
    if cfg.strategy not in FLEET_STRATEGIES:
        raise ConfigError(
            f"strategy {strategy!r} has no fleet model; valid: "
            f"{', '.join(FLEET_STRATEGIES)} (others: stampede.sim.simulate)"
        )
    for name, value in (("pods", pods), ("keys", keys), ("shards", shards)):
        if int(value) != value or value < 1:
            raise ConfigError(f"{name} must be a whole number >= 1 (got {value!r})")
    if not (rate > 0 and duration_s > 0 and alpha >= 0):
        raise ConfigError(
            f"need rate > 0, duration_s > 0, alpha >= 0 (got {rate}, {duration_s}, {alpha})"
        )
    timing = timing or MEASURED
    started = time.perf_counter()
    engine = _Engine(cfg, pods, keys, shards, duration_s, timing, seed)
    lam = zipf_rates(rate, keys, alpha)
    steps = engine.run(lam, warm)
    wall = time.perf_counter() - started
    params = {
        "strategy": cfg.strategy,
        "pods": pods,
        "rate": rate,
        "keys": keys,
        "alpha": alpha,
        "duration_s": duration_s,
        "shards": shards,
        "warm": warm,
        "seed": seed,
        "timing": timing,
        **cfg.model_dump(),
    }
    return FleetResult(
        params=params,
        requests=int(engine.requests),
        origin_reads=int(engine.reads),
        reads_per_s=engine.per_s,
        redis_commands=int(engine.trips),
        shard_commands_per_s=engine.shard_cmds / duration_s,
        pubsub_deliveries=int(engine.deliveries),
        waiters=int(engine.waiters),
        stale=int(engine.stale),
        hits=int(engine.hits),
        hot_reads_per_expiry=engine.hot,
        steps=steps,
        wall_s=wall,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


class _Engine:
    def __init__(
        self,
        cfg: StrategyConfig,
        pods: int,
        keys: int,
        shards: int,
        duration: float,
        timing: Timing,
        seed: int,
    ) -> None:
        self.cfg, self.pods, self.keys, self.duration, self.tm = cfg, pods, keys, duration, timing
        self.rng = np.random.default_rng(seed)
        self.pyrng = random.Random(seed)
        self.jitter = strategy_class(cfg.strategy)(_no_deps(self.pyrng), cfg).jitter
        self.shard = np.arange(keys) % shards
        self.shard_cmds = np.zeros(shards)
        self.per_s = np.zeros(max(1, math.ceil(duration)), np.int64)
        self.reads = self.trips = self.deliveries = self.waiters = self.stale = 0
        self.requests = self.hits = 0
        self.hot: list[int] = []
        self.neg = 1 if cfg.negative_ttl_s else 0
        self.rtt = timing.redis_rtt_s
        self.injected = cfg.origin_latency_ms / 1000

    def ttl(self, n: int) -> Array:
        """The TTLs of ``n`` writes: the package's ``jittered_ttl``, once per write."""
        base, spread = self.cfg.ttl_s, self.jitter
        if spread <= 0:
            return np.full(n, base)
        return np.fromiter((jittered_ttl(base, spread, self.pyrng) for _ in range(n)), float, n)

    def count_reads(self, starts: Array) -> None:
        inside = starts[(starts >= 0) & (starts < self.duration)]
        self.per_s += np.bincount(inside.astype(np.int64), minlength=len(self.per_s))
        self.reads += len(inside)

    def busy(self, idx: Array, requests: Array, trips: Array) -> None:
        """``requests`` of keys ``idx`` took ``trips`` round trips on their busy path."""
        self.requests += int(requests.sum())
        self.trips += int(trips.sum())
        self.shard_cmds += np.bincount(
            self.shard[idx], weights=trips, minlength=len(self.shard_cmds)
        )

    def deliver(self, idx: Array) -> None:
        """One ready message per refresh, delivered to every pod (costed as one command)."""
        self.deliveries += self.pods * idx.size
        weights = np.full(idx.size, float(self.pods))
        self.shard_cmds += np.bincount(
            self.shard[idx], weights=weights, minlength=len(self.shard_cmds)
        )

    def fresh(self, idx: Array, start: Array, end: Array, lam: Array) -> None:
        """The hits of keys ``idx`` while their value is fresh: one GET each."""
        span = np.clip(np.minimum(end, self.duration) - start, 0, None)
        hits = self.rng.poisson(lam[idx] * span)
        self.hits += int(hits.sum())
        self.busy(idx, hits, hits)

    def run(self, lam: Array, warm: bool) -> int:
        n, tm = self.keys, self.tm
        boundary = np.zeros(n)  # the value's soft expiry, or when the cache emptied
        has_value = np.zeros(n, bool)
        if warm:
            self.count_reads(np.zeros(n))
            delta = tm.origin_latency(self.injected, self.rng, n)
            boundary = delta + self.ttl(n)
            has_value[:] = True
            self.requests += n  # the warm-up's own requests
            self.fresh(np.arange(n), delta, boundary, lam)
        idx = np.arange(n)
        steps = 0
        while idx.size:
            steps += 1
            a = boundary[idx] + self.rng.exponential(1 / lam[idx])
            alive = a < self.duration
            idx, a, has = idx[alive], a[alive], has_value[idx[alive]]
            if not idx.size:
                break
            delta = tm.origin_latency(self.injected, self.rng, idx.size)
            name = self.cfg.strategy
            if name == "swr":
                refresh = has & (a < boundary[idx] + self.cfg.stale_s)
                new = np.empty(idx.size)
                new[refresh] = self.swr_refresh(idx[refresh], a[refresh], delta[refresh], lam)
                cold = ~refresh
                new[cold] = self.flight(idx[cold], a[cold], delta[cold], lam)
            elif name in ("single_flight",):
                new = self.flight(idx, a, delta, lam)
            else:
                new = self.herd(idx, a, delta, lam, per_pod=name == "local_lock")
            boundary[idx] = new
            has_value[idx] = True
        return steps

    def herd(self, idx: Array, a: Array, delta: Array, lam: Array, per_pod: bool) -> Array:
        rtt = self.rtt
        pre = (2 + self.neg if per_pod else 1 + self.neg) * rtt
        window = pre + delta + rtt  # arrivals before the first write miss too
        m = self.rng.poisson(lam[idx] * window)
        rep = np.repeat(np.arange(idx.size), m)
        offsets = self.rng.random(rep.size) * window[rep]
        if per_pod:
            pod_first = self.rng.integers(0, self.pods, idx.size)
            pod_other = self.rng.integers(0, self.pods, rep.size)
            combos = np.unique(
                np.r_[np.arange(idx.size) * self.pods + pod_first, rep * self.pods + pod_other]
            )
            readers = np.bincount(combos // self.pods, minlength=idx.size)
            # each other pod's first request reads: the earliest offset of each (key, pod)
            other = pod_other != pod_first[rep]
            code = rep[other] * self.pods + pod_other[other]
            order = np.lexsort((offsets[other], code))
            _, first = np.unique(code[order], return_index=True)
            pick = order[first]
            starts = np.r_[a + pre, a[rep[other][pick]] + offsets[other][pick] + pre]
            trips = (m + 1 - readers) * 2 + (3 + self.neg) * readers
        else:
            readers = 1 + m
            starts = np.r_[a + pre, a[rep] + offsets + pre]
            trips = readers * (2 + self.neg)
        self.count_reads(starts)
        self.busy(idx, 1 + m, trips)
        self.track_hot(idx, readers)
        # the last writer's entry is the one left: its read began at the latest offset
        last = np.zeros(idx.size)
        if rep.size:
            np.maximum.at(last, rep, offsets)
        created = a + last + pre + delta
        new = created + rtt + self.ttl(idx.size)
        self.fresh(idx, a + window, new, lam)
        return new

    def flight(self, idx: Array, a: Array, delta: Array, lam: Array) -> Array:
        rtt, cfg = self.rtt, self.cfg
        visible = 3 * rtt + delta  # after a: GET, claim, read, fill
        wait_window = visible - rtt  # a claim before the fill waits
        m = self.rng.poisson(lam[idx] * wait_window)
        self.count_reads(a + 2 * rtt)
        self.waiters += int(m.sum())
        if cfg.wait == "notify":
            trips = 3 + 2 * m
            self.deliver(idx[a + 2 * rtt < self.duration])  # the refreshes counted as reads
        else:
            rep = np.repeat(np.arange(idx.size), m)
            u = self.rng.random(rep.size) * wait_window[rep]
            poll = cfg.poll_ms / 1000
            first = u + 2 * rtt + poll
            k = 1 + np.maximum(0, np.ceil((visible[rep] - first) / (poll + 2 * rtt)))
            trips = 3 + np.bincount(rep, weights=2 * k + 1, minlength=idx.size)
        self.busy(idx, 1 + m, trips)
        self.track_hot(idx, np.ones(idx.size, int))
        new = a + visible + self.ttl(idx.size)
        self.fresh(idx, a + wait_window, new, lam)
        return new

    def swr_refresh(self, idx: Array, a: Array, delta: Array, lam: Array) -> Array:
        rtt = self.rtt
        visible = 4 * rtt + delta  # GET, SET NX, GET, read, fill
        m = self.rng.poisson(lam[idx] * visible)  # answered stale meanwhile
        self.count_reads(a + 3 * rtt)
        self.stale += int(idx.size + m.sum())
        self.busy(idx, 1 + m, 4 + 2 * m)
        self.track_hot(idx, np.ones(idx.size, int))
        if self.cfg.wait == "notify":  # the refresh's fill announces too
            self.deliver(idx[a + 3 * rtt < self.duration])
        new = a + visible + self.ttl(idx.size)
        self.fresh(idx, a + visible, new, lam)
        return new

    def track_hot(self, idx: Array, reads: Array) -> None:
        if idx.size and idx[0] == 0:
            self.hot.append(int(reads[0]))


def _no_deps(rng: random.Random) -> Any:
    from typing import cast

    from redis.asyncio import Redis

    from stampede.cache import CacheStore
    from stampede.strategies.base import Deps

    return Deps(redis=cast(Redis, None), store=cast(CacheStore, None), rng=rng)
