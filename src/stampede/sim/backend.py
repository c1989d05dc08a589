"""A lab run, simulated: the same parameters in, the same :class:`RunResult` out.

``stampede.run("naive", backend="sim")`` lands here. The traffic is the load generator's
(open-loop Poisson at ``rate``; ``hot_share`` on the hot item, the rest uniform; bulk warm
requests every warmed item once at t = 0), spread over the pods round robin in send order.
Each key is walked by :func:`~stampede.sim.keymodel.simulate_key`; the records and the origin
log are then the lab's own frames, so :func:`stampede.metrics.summarize`, ``compare`` and the
charts read them unchanged. ``summary["backend"]`` is ``"sim"``.

:func:`poisson_key` is the single-key experiment behind the closed-form tests and chapter 9's
sweeps: one key at rate λ, walked for a given number of expiries.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stampede.config import LoadConfig, StrategyConfig, check_schedule, validated
from stampede.errors import ConfigError
from stampede.lab import SINGLE_NODE
from stampede.load import RECORD_FIELDS, poisson_schedule
from stampede.metrics import RunShape, summarize, unexpected
from stampede.origin import READ_FIELDS, READ_TYPES
from stampede.runner import RunResult, split_params
from stampede.sim.keymodel import CODES, KeyTrace, decision_strategy, model_of, simulate_key
from stampede.sim.online import check_origin_limit, closed_loop, open_loop
from stampede.sim.timing import MEASURED, Array, Timing

__all__ = ["BACKEND", "KeyRun", "arrivals", "poisson_key", "simulate", "titled"]

BACKEND = "sim"
SIM_MARK = " (simulated)"


def titled(title: str, *results: RunResult) -> str:
    """``title``, marked ``(simulated)`` when any of ``results`` came from the simulator.

    Every chart and table of a simulation says so: chapter 9 passes its titles through this.
    """
    simulated = not results or any(r.summary.get("backend") == BACKEND for r in results)
    return title + SIM_MARK if simulated and not title.endswith(SIM_MARK) else title


def arrivals(load: LoadConfig, pods: int) -> tuple[Array, Array, Array]:
    """Send times (s), items and pods of the load generator's open-loop traffic.

    The times and items are the load generator's own schedule (:func:`stampede.load.
    poisson_schedule`, one seeded stream per client, merged in send order), not a redraw of
    it: a simulation and a lab run with the same ``seed`` get the very same requests, so a
    comparison of the two measures the model, not two samples of Poisson traffic. The pods
    are round robin in send order, as the generator's. Bulk warm sends every warmed item once
    at t = 0 first, as the generator's ``_warm`` does (its owners' order: item id).
    """
    schedules = [poisson_schedule(load, c, 0.0, load.duration_s) for c in range(load.clients)]
    sends = list(heapq.merge(*schedules, key=lambda send: send[0]))
    t = np.fromiter((due for due, _ in sends), float, len(sends))
    items = np.fromiter((item for _, item in sends), np.int64, len(sends))
    if load.scenario == "bulk_warm":
        t = np.r_[np.zeros(load.warm_items), t]
        items = np.r_[np.arange(1, load.warm_items + 1), items]
    return t, items.astype(np.int64), np.arange(len(t)) % pods


def simulate(
    strategy: str = "naive",
    *,
    timing: Timing | None = None,
    early_lock: bool = True,
    origin_limit: int | None = None,
    **params: Any,
) -> RunResult:
    """Simulate the lab run ``stampede.run(strategy, **params)`` would measure.

    ``origin_limit``: at most that many origin reads at once, the rest queue FIFO
    (:class:`~stampede.sim.online.OriginQueue`); None, the lab's origin, has no limit. A
    closed loop (``pacing="closed"``) or a limit is stepped online (:mod:`stampede.sim.
    online`); an open loop with no limit is the batch walk, key by key. Either way a client
    gives up after the generator's ``request_timeout_s`` (a ``timeout`` record); a closed-loop
    client then goes on, and resends a 503 ``retries`` times, as the generator does.

    Refused (:class:`ConfigError`): faults, ids the origin lacks, a closed-loop bulk warm, a
    bad ``origin_limit``, and the peer libraries (:data:`~stampede.sim.keymodel.LAB_ONLY`).
    """
    config, load, lab = split_params({"strategy": strategy, **params})
    check_schedule(lab.faults, load.duration_s)
    model_of(config.strategy)
    check_origin_limit(origin_limit)
    if load.pacing == "closed" and load.scenario == "bulk_warm":
        raise ConfigError(
            "a closed-loop bulk_warm is not simulated (its warm-up is an open burst); "
            "valid: pacing 'open' for bulk_warm, or scenario 'hot_key' for a closed loop"
        )
    if lab.faults:
        raise ConfigError(f"faults are not simulated (got {len(lab.faults)}); run them in the lab")
    top = load.warm_items if load.scenario == "bulk_warm" else load.items
    if top > lab.origin_items:
        raise ConfigError(
            f"ids above origin_items ({lab.origin_items}) are not simulated (got items up to {top})"
        )
    timing = timing or MEASURED
    all_params = {**config.model_dump(), **load.model_dump(), **lab.model_dump()}
    if load.pacing == "closed" or origin_limit is not None:
        return _online(config, all_params, load, lab.pods, timing, early_lock, origin_limit)
    due, items, pods = arrivals(load, lab.pods)
    t = due
    if load.scenario == "bulk_warm":
        # the generator awaits the warm-up's answers before its open loop starts: a send due
        # before the last of them leaves when it is in (and finds the warmed value)
        w = load.warm_items
        warm = _walk(config, t[:w], items[:w], pods[:w], lab.pods, timing, load.seed, early_lock)
        t = np.r_[t[:w], np.maximum(t[w:], float(warm.latency.max()))]
    walked = _walk(config, t, items, pods, lab.pods, timing, load.seed, early_lock)
    return _result(config, all_params, due, t, items, pods, walked, load)


def _online(
    config: StrategyConfig,
    params: dict[str, Any],
    load: LoadConfig,
    n_pods: int,
    timing: Timing,
    early_lock: bool,
    origin_limit: int | None,
) -> RunResult:
    """A closed loop or a limited origin: every key stepped online, in global time order."""
    if load.pacing == "closed":
        run = closed_loop(
            config, load, n_pods, timing=timing, early_lock=early_lock, origin_limit=origin_limit
        )
        due = run.t
    else:
        due, items, pods = arrivals(load, n_pods)
        t = due
        if load.scenario == "bulk_warm":  # as the batch walk: the loop waits for the warm-up
            w = load.warm_items
            warm = open_loop(
                config, t[:w], items[:w], pods[:w], n_pods, timing=timing, seed=load.seed,
                early_lock=early_lock, origin_limit=origin_limit,
            )  # fmt: skip
            t = np.r_[t[:w], np.maximum(t[w:], float(warm.latency.max()))]
        run = open_loop(
            config, t, items, pods, n_pods, timing=timing, seed=load.seed,
            early_lock=early_lock, origin_limit=origin_limit,
        )  # fmt: skip
        run.clients = np.arange(len(t)) % load.clients
    reads: list[Array] = []
    counts = {"trips": 0, "inner": 0, "messages": 0, "early_attempts": 0}
    for item, trace in run.traces.items():
        rows = trace.reads
        reads.append(np.column_stack([rows[:, :2], np.full(len(rows), item), rows[:, 2]]))
        for name in counts:
            counts[name] += getattr(trace, name)
    walked = _Walked(run.outcome, run.latency, reads, counts)
    result = _result(
        config, params, due, run.t, run.items, run.pods, walked, load, run.clients, run.attempts
    )
    waits = np.asarray(run.origin.waits if run.origin is not None else [], float)
    result.summary["sim"]["origin_limit"] = origin_limit
    result.summary["sim"]["origin_queued_reads"] = int((waits > 0).sum())
    result.summary["sim"]["origin_wait_ms_mean"] = float(waits.mean() * 1000) if len(waits) else 0.0
    return result


@dataclass
class _Walked:
    """Every key of a run walked: per request its outcome and latency, the origin's reads."""

    outcome: Array
    latency: Array
    reads: list[Array]
    counts: dict[str, int]


def _walk(
    config: StrategyConfig,
    t: Array,
    items: Array,
    pods: Array,
    n_pods: int,
    timing: Timing,
    seed: int,
    early_lock: bool,
) -> _Walked:
    """Walk each key's requests (:func:`simulate_key`) and gather them in send order."""
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed + 1)
    strat = decision_strategy(config, rng)
    order = np.argsort(items, kind="stable")
    bounds = np.flatnonzero(np.r_[True, items[order][1:] != items[order][:-1], True])
    outcome = np.zeros(len(t), np.int8)
    latency = np.zeros(len(t))
    reads: list[Array] = []
    counts = {"trips": 0, "inner": 0, "messages": 0, "early_attempts": 0}
    for lo, hi in itertools.pairwise(bounds):
        idx = order[lo:hi]
        item = int(items[idx[0]])
        trace = simulate_key(
            config,
            t[idx],
            pods[idx],
            n_pods=n_pods,
            timing=timing,
            rng=rng,
            nprng=nprng,
            early_lock=early_lock,
            strategy=strat,
        )
        outcome[idx], latency[idx] = trace.outcome, trace.latency_s
        rows = trace.reads
        reads.append(np.column_stack([rows[:, :2], np.full(len(rows), item), rows[:, 2]]))
        counts["trips"] += trace.trips
        counts["inner"] += trace.inner
        counts["messages"] += trace.messages
        counts["early_attempts"] += trace.early_attempts
    return _Walked(outcome, latency, reads, counts)


def _result(
    config: StrategyConfig,
    params: dict[str, Any],
    due: Array,
    t: Array,
    items: Array,
    pods: Array,
    walked: _Walked,
    load: LoadConfig,
    clients: Array | None = None,
    attempts: Array | None = None,
) -> RunResult:
    """The lab's records, origin log and summary from the walked requests.

    An answer slower than the generator's ``request_timeout_s`` is recorded as the lab
    records a client's timeout: status 0, outcome ``error``, error ``timeout``, the timeout as
    its latency (the pod's work, its origin read included, goes on and is counted).
    """
    outcome, latency, reads, counts = walked.outcome, walked.latency, walked.reads, walked.counts
    names = np.array([str(c) for c in CODES], dtype=object)
    timed_out = latency > load.request_timeout_s
    error = outcome == CODES.index("error")
    records = pd.DataFrame(
        {
            "client": np.arange(len(t)) % load.clients if clients is None else clients,
            "item": items,
            "pod": pods,
            "t_sched": due,
            "t_send": t,
            "latency_ms": latency * 1000,
            "status": np.where(error, 503, 200),
            "outcome": names[outcome],
            "error": "",
            "attempt": 0 if attempts is None else attempts,
            "server_ms": math.nan,
        }
    )[RECORD_FIELDS]
    if timed_out.any():  # as load.py's sweep records one
        cut = load.request_timeout_s * 1000
        records.loc[timed_out, ["latency_ms", "status", "outcome", "error"]] = (
            cut, 0, "error", "timeout"
        )  # fmt: skip
    records["t"] = records["t_send"]
    rows = np.concatenate(reads) if reads else np.empty((0, 4))
    frame = pd.DataFrame(rows, columns=["start", "end", "item", "pod"])
    frame = frame.assign(ok=True, fail_open=False)[READ_FIELDS]
    frame = frame.astype({**READ_TYPES, "pod": int})
    frame["t"] = frame["start"]
    frame = frame.sort_values("start", ignore_index=True)
    summary = summarize(records, frame, RunShape.of(params), sent=len(records))
    commands = counts["trips"] + counts["inner"]  # as INFO commandstats counts them
    summary["redis_commands"] = commands
    summary["redis_commands_per_request"] = commands / max(1, len(records))
    summary["redis_commands_by_shard"] = {SINGLE_NODE: commands}  # one modelled Redis
    summary["hot_shard_command_share"] = 1.0
    summary["redis_round_trips_per_request"] = counts["trips"] / max(1, len(records))
    summary["machine"] = {
        "machine_bound": False,
        "reasons": [],
        "advice": "",
        "send_lag_p99_ms": 0.0,
        "busy_share": math.nan,
        "cpus": 0,
    }
    summary["unexpected"] = unexpected(records, {}, injected=config.origin_error_rate > 0)
    summary["backend"] = BACKEND
    summary["sim"] = {"pubsub_deliveries": counts["messages"]}
    counters = {
        "origin_calls": len(frame),
        "early_attempts": counts["early_attempts"],
        "redis_round_trips": counts["trips"],
    }
    return RunResult(config.strategy, params, records, frame, summary, counters, {})


@dataclass
class KeyRun:
    """One key under Poisson traffic for a number of expiries (the closed forms' experiment)."""

    trace: KeyTrace
    times: Array
    config: StrategyConfig

    @property
    def per_expiry(self) -> Array:
        """Origin reads per refresh episode, the cold start left out."""
        return np.asarray(self.trace.episodes[1:], float)

    def outcomes(self) -> dict[str, int]:
        counts = np.bincount(self.trace.outcome, minlength=len(CODES))
        return {str(c): int(n) for c, n in zip(CODES, counts, strict=True)}


def poisson_key(
    strategy: str,
    *,
    rate: float,
    expiries: int,
    pods: int = 3,
    timing: Timing | None = None,
    seed: int = 0,
    early_lock: bool = True,
    **config: Any,
) -> KeyRun:
    """One key at ``rate`` req/s (Poisson) over ``pods`` round robin, for ``expiries`` cycles.

    ``config`` is :class:`~stampede.config.StrategyConfig`'s fields (``ttl_s``,
    ``origin_latency_ms``, ``beta``, ``wait``, ...); ``rate`` is not capped by the lab's
    limits. At least ``expiries`` refresh episodes follow the cold start (checked).
    """
    if rate <= 0 or expiries < 1 or pods < 1:
        raise ConfigError(
            f"need rate > 0, expiries >= 1, pods >= 1 (got {rate}, {expiries}, {pods})"
        )
    cfg = validated(StrategyConfig, strategy=strategy, **config)
    timing = timing or MEASURED
    # a cycle: the TTL, the gap to the next request, the herd's reads (the last one's write
    # sets the next expiry): at most TTL x (1 + jitter) + 2 reads + the gap, with margin
    cycle = cfg.ttl_s * (1 + (cfg.jitter or 0)) + 2 * cfg.origin_latency_ms / 1000 + 1 / rate
    duration = (expiries + 3) * cycle * 1.2 + 1
    nprng = np.random.default_rng(seed)
    n = int(rate * duration + 10 * math.sqrt(rate * duration) + 10)
    t = np.cumsum(nprng.exponential(1 / rate, n))
    t = t[t < duration]
    rng = random.Random(seed)
    trace = simulate_key(
        cfg,
        t,
        np.arange(len(t)) % pods,
        n_pods=pods,
        timing=timing,
        rng=rng,
        nprng=nprng,
        early_lock=early_lock,
    )
    run = KeyRun(trace, t, cfg)
    if len(run.per_expiry) < expiries:
        raise AssertionError(f"{len(run.per_expiry)} expiries simulated, {expiries} asked")
    run.trace.episodes = run.trace.episodes[: expiries + 1]
    return run
