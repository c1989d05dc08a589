"""One run, end to end: configure the lab, send the load, collect, measure, cache.

``run("single_flight", duration_s=30)`` validates every parameter before anything starts,
puts the lab's pods on a fresh configuration over a flushed Redis, drives the load from worker
processes (so the generator has its own core and a notebook's event loop is not involved),
collects every pod's origin log and returns a :class:`RunResult`.

Runs are the expensive part of the book and chapters share them, so results are cached on
disk under a key made of every parameter, the hash of the code a measurement depends on
(:func:`stampede.source.code_version`: not the charts or the command line) and the
redis-server version: any change that could change a measurement makes a new key, and an edit
that cannot keeps every stored run. Pods started from other code than this process's are
refused (:class:`CodeMismatch`), so an old lab cannot store its results under the new code's
key. ``fresh=True`` (or ``STAMPEDE_FRESH=1``) forces a new run.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import math
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from stampede import metrics, paths
from stampede.cache import CacheStore
from stampede.compose import attached_lab, check_shape, launcher_name, start_lab
from stampede.config import Fault, LabConfig, LoadConfig, StrategyConfig, check_schedule, validated
from stampede.errors import CodeMismatch, ConfigError, LabError, LostRequests, OutcomeMismatch
from stampede.fault_report import fault_report
from stampede.injector import FaultInjector
from stampede.lab import Lab, find_redis_server
from stampede.machine import MachineMeter, verdict
from stampede.metrics import (
    RunShape,
    hot_windows,
    outcome_mismatches,
    per_second,
    summarize,
    unexpected,
)
from stampede.origin import READ_FIELDS, READ_TYPES
from stampede.registry import strategy_class
from stampede.run_lock import START_STOP_S, Holder, run_lock
from stampede.source import code_version
from stampede.workers import drive as _drive

__all__ = [
    "RunResult",
    "check_code",
    "compare",
    "coordination",
    "machine_exclusive",
    "redis_version",
    "run",
    "settled_stats",
    "split_params",
]

LAB_COMMANDS = frozenset({"info", "hello", "flushall", "select", "auth", "command"})
# connection set-up (CLIENT SETINFO) and, on a cluster, the client's topology look-ups
# (CLUSTER SLOTS / NODES) and COMMAND's key specs: bookkeeping, not coordination
LAB_COMMAND_FAMILIES = ("client|", "cluster|", "command|")

_SETTLE_S = 0.5  # after the last response, background refreshes may still be reading
IN_FLIGHT_WAIT_S = 10.0  # at most this long for origin reads still in flight after that


@dataclass
class RunResult:
    """A finished run: its parameters, raw frames and the numbers computed from them."""

    strategy: str
    params: dict[str, Any]
    records: pd.DataFrame = field(repr=False)
    reads: pd.DataFrame = field(repr=False)
    summary: dict[str, Any]
    counters: dict[str, int] = field(default_factory=dict)
    commands: dict[str, int] = field(default_factory=dict)

    @property
    def shape(self) -> RunShape:
        return RunShape.of(self.params)

    @cached_property
    def frame(self) -> pd.DataFrame:
        """Per-second tidy frame (``second``, ``metric``, ``value``, ``strategy``)."""
        return per_second(self.records, self.reads, self.shape).assign(strategy=self.strategy)

    @property
    def expiries(self) -> list[float]:
        """When the hot key's cycles began (s since start): the chart's expiry marks."""
        return hot_windows(self.records, self.shape)[1:]

    def to_json(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "params": self.params, **self.summary}


def split_params(params: dict[str, Any]) -> tuple[StrategyConfig, LoadConfig, LabConfig]:
    """Sort keyword parameters into the three models; unknown names are a ConfigError.

    The strategy's class is looked up too, so a peer whose library is missing is refused here,
    with the package to install, before any process starts.
    """
    models = (StrategyConfig, LoadConfig, LabConfig)
    known = {name for m in models for name in m.model_fields}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown}; valid: {', '.join(sorted(known))}")
    picked = [{k: v for k, v in params.items() if k in m.model_fields} for m in models]
    config = validated(StrategyConfig, **picked[0])
    strategy_class(config.strategy)
    return config, validated(LoadConfig, **picked[1]), validated(LabConfig, **picked[2])


def run(
    strategy: str = "naive",
    *,
    lab: Lab | str | None = None,
    fresh: bool | None = None,
    progress: bool = True,
    backend: str = "lab",
    origin_limit: int | None = None,
    **params: Any,
) -> RunResult:
    """Run ``strategy`` under the load described by ``params`` and measure it.

    Without ``lab``, attaches to the lab named by ``STAMPEDE_POD_URLS`` if set, else starts the
    lab ``STAMPEDE_LAB`` names (embedded by default) for this run and stops it after; ``lab`` may
    name one too: ``"embedded"``, ``"compose"``, ``"swarm"`` (:mod:`stampede.compose`).
    ``faults`` (a list of :class:`~stampede.config.Fault`) need an embedded lab; their timeline
    and measured effect land in ``summary["faults"]``. Every run checks that nothing was lost
    (sent = responses + errors + timeouts) and raises :class:`LostRequests` otherwise, and that
    every pod counted the answers the generator got from it (:class:`OutcomeMismatch`
    otherwise). Pods that run other code than this process are refused before anything is sent
    (:class:`CodeMismatch`). ``summary["unexpected"]`` counts the run's ``fail_open`` answers,
    errors and Redis errors, and is ``marked`` when the run injected no fault but saw some. A
    run holds the run lock (:mod:`stampede.run_lock`) from before its lab starts until its
    result is saved; while another run holds it, this one waits, says for whom, and starts
    nothing. ``backend="sim"`` returns the simulator's :class:`RunResult` for the same
    parameters (:func:`stampede.sim.simulate`); ``origin_limit`` (at most that many origin
    reads at once, the rest queued) is the simulator's only: the lab's origin has no limit, so
    ``backend="lab"`` refuses one (:class:`ConfigError`) rather than measure without it.
    """
    if backend != "lab":
        if backend != "sim" or lab is not None:
            raise ConfigError(
                f"backend {backend!r} (lab given: {lab is not None}); valid: "
                "'lab', or 'sim' without a lab"
            )
        from stampede.sim import simulate

        return simulate(strategy, origin_limit=origin_limit, **params)
    if origin_limit is not None:
        raise ConfigError(
            f"origin_limit={origin_limit!r} is simulated only: the lab's origin has no "
            "concurrency limit (its pods read SQLite as fast as it answers); valid: "
            "backend='sim' (--backend sim), or no origin_limit"
        )
    config, load, lab_config = split_params({"strategy": strategy, **params})
    launcher = None if isinstance(lab, Lab) else launcher_name(lab)  # a bad name fails here
    if launcher is not None:
        check_shape(launcher, lab_config)  # pods=4 on compose fails here, not after a wait
    check_schedule(lab_config.faults, load.duration_s)
    all_params = {**config.model_dump(), **load.model_dump(), **lab_config.model_dump()}
    fresh = fresh if fresh is not None else os.environ.get("STAMPEDE_FRESH") == "1"
    # `make lab` (STAMPEDE_POD_URLS), a notebook in the compose JupyterLab service
    attached = lab if isinstance(lab, Lab) else attached_lab(lab)
    if lab_config.faults and attached is not None and not attached.processes:
        raise ConfigError("faults need an embedded lab (PIDs to signal); this one is attached")
    # which kind of lab measured it: an attached plain lab (`make lab`) is an embedded one
    kind = attached.kind if attached else launcher
    key = _cache_key({**all_params, "lab": kind}, code_version(), redis_version(attached))
    cache_file = paths.runs_dir() / f"{key}.json.gz"
    if not fresh and cache_file.exists():
        return _load(cache_file)
    own_lab = attached is None
    expected_s = load.duration_s + START_STOP_S
    # The lock comes before the lab: a run that waits for another has started nothing yet.
    with machine_exclusive(config.strategy, expected_s, progress=progress):
        if not fresh and cache_file.exists():  # the run it waited for may have made this one
            return _load(cache_file)
        lab = attached or start_lab(launcher, lab_config, config)
        try:
            check_code(lab)
            result = _measure(lab, config, load, all_params, progress, lab_config.faults)
        finally:
            if own_lab:
                lab.stop()
        _save(result, cache_file)
    return result


def machine_exclusive(
    strategy: str = "-", expected_s: float | None = None, *, progress: bool = False
) -> contextlib.AbstractContextManager[Holder]:
    """One load run at a time: two runs on 2 cores would measure each other.

    The run lock of :mod:`stampede.run_lock` (its scope, bound and messages are described
    there); ``strategy`` and ``expected_s`` are what a run waiting for this one is told.
    """
    return run_lock(strategy, expected_s, progress=progress)


def compare(results: Sequence[RunResult], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per run, columns from the metric table (:data:`stampede.metrics.COLUMNS`).

    Without ``columns``: :data:`~stampede.metrics.SUMMARY_COLUMNS`, then every latency's p50
    and p99 (``latency_p50_ms``, ``hot_latency_steady_p99_ms``, ...), then ``n_<outcome>``.
    Presets such as :data:`~stampede.metrics.HEADLINE` are tuples of column names.
    """
    names = list(columns) if columns is not None else _default_columns()
    rows = [{"strategy": r.strategy, **metrics.row(r.summary, names)} for r in results]
    return pd.DataFrame(rows, columns=["strategy", *names]).set_index("strategy")


def _default_columns() -> list[str]:
    latencies = [c.name for c in metrics.COLUMNS.values() if c.name.endswith("_ms")]
    outcomes = [c.name for c in metrics.COLUMNS.values() if c.metric == "outcomes"]
    return [*metrics.SUMMARY_COLUMNS, *latencies, *outcomes]


def _measure(
    lab: Lab,
    config: StrategyConfig,
    load: LoadConfig,
    params: dict[str, Any],
    progress: bool,
    faults: Sequence[Fault] = (),
) -> RunResult:
    lab.configure(config)
    hot_key = CacheStore.key(params["hot_item"])
    hot_node = lab.node_of(hot_key)
    # replicas too: one promoted during the run is a primary in `after` and needs its start
    failover = any(f.kind == "primary_kill" for f in faults)
    before = lab.commandstats_by_node(replicas=failover)
    primaries_before = set(lab.commandstats_by_node()) if failover else set(before)
    injector = FaultInjector(lab, faults, hot_item=params["hot_item"], duration_s=load.duration_s)
    try:
        with MachineMeter() as machine:
            records, sent, start = _drive(lab, load, progress, on_start=injector.start)
    except BaseException:
        injector.cancel()
        raise
    events = injector.join()
    time.sleep(_SETTLE_S)
    live = [i for i in range(len(lab.pods)) if i not in lab.dead]  # whose /stats answer
    stats = settled_stats(lab, config)
    after = lab.commandstats_by_node()
    reads = pd.DataFrame(
        [(*r, s["pod"]) for s in stats for r in s["reads"]],
        columns=READ_FIELDS,
    ).astype(READ_TYPES)
    reads["in_flight"] = reads["end"].isna()  # still reading after IN_FLIGHT_WAIT_S: kept
    reads["t"] = reads["start"] - start
    records["t"] = records["t_send"] - start
    shape = RunShape.of(params)
    summary = summarize(records, reads, shape, sent=sent)
    if summary["lost"]:
        raise LostRequests(
            f"{summary['lost']} of {sent} requests were sent but neither answered, refused nor "
            f"timed out: {summary['accounting']}"
        )
    killed = {f.pod for f in faults if f.kind == "pod_kill"}  # their counts died with them
    counted = {i: s["outcomes"] for i, s in zip(live, stats, strict=True) if i not in killed}
    if problems := outcome_mismatches(records, counted):
        raise OutcomeMismatch(
            "the pods' own outcome counts disagree with the answers the load generator got: "
            + "; ".join(problems)
        )
    counters: dict[str, int] = {}
    for s in stats:
        for k, v in s["counters"].items():
            counters[k] = counters.get(k, 0) + v
    if faults:
        report = fault_report(records, reads, events)
        for entry in report:
            if entry["kind"] == "primary_kill":  # the run's count: refusals come after, too
                entry["fence_refused"] = counters.get("fence_refused", 0)
        summary["faults"] = {"events": events, "report": report}
    injected = bool(faults) or config.origin_error_rate > 0 or config.origin_slow_rate > 0
    summary["unexpected"] = unexpected(records, counters, injected)
    by_node = {node: coordination(before.get(node, {}), now) for node, now in after.items()}
    # a killed primary's counts died with it; a promoted replica's include the writes it
    # applied from its primary's replication stream before the promotion
    summary["redis_shards_lost"] = sorted(lab.dead_redis)
    summary["redis_shards_promoted"] = sorted(n for n in after if n not in primaries_before)
    if hot_node in lab.dead_redis:
        hot_node = lab.primary_of(hot_key)  # the hot key's shard is the promoted one now
    commands = dict(sum(map(Counter, by_node.values()), Counter()))
    summary["redis_commands"] = sum(commands.values())
    summary["redis_commands_by_shard"] = {n: sum(c.values()) for n, c in by_node.items()}
    summary["hot_shard_command_share"] = summary["redis_commands_by_shard"].get(hot_node, 0) / max(
        1, summary["redis_commands"]
    )
    summary["redis_commands_per_request"] = summary["redis_commands"] / max(1, len(records))
    trips = counters.get("redis_round_trips")
    summary["redis_round_trips_per_request"] = (
        math.nan if trips is None else trips / max(1, len(records))
    )
    summary["machine"] = verdict(
        summary["send_lag_ms"]["p99"], machine.busy_share, len(machine.cpus)
    )
    return RunResult(config.strategy, params, records, reads, summary, counters, commands)


def coordination(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """One node's commands between two ``INFO commandstats``, the lab's bookkeeping removed."""
    return {
        name: calls - before.get(name, 0)
        for name, calls in after.items()
        if calls > before.get(name, 0)
        and name not in LAB_COMMANDS
        and not name.startswith(LAB_COMMAND_FAMILIES)
    }


def check_code(lab: Lab) -> None:
    """Refuse a lab whose pods run other code than this process (:class:`CodeMismatch`).

    Each pod reports the hash of the files it started from (``/health``, ``code``). A lab
    started before an edit (``stampede lab up``, compose) would otherwise store the old code's
    measurements under the new code's cache key.
    """
    ours = code_version()
    for i, url in enumerate(lab.pods):
        if i in lab.dead:
            continue
        try:
            theirs = httpx.get(f"{url}/health", timeout=10).json().get("code")
        except (httpx.HTTPError, ValueError) as exc:
            raise LabError(f"pod {url} did not answer /health: {exc}") from None
        if theirs != ours:
            raise CodeMismatch(
                f"pod {url} runs code {theirs or '(none reported: older than this check)'}, "
                f"this process runs code {ours}: restart the lab on this code "
                "(`stampede lab down` then `up`; compose: rebuild the image) or run without it"
            )


def redis_version(lab: Lab | None = None) -> str:
    """The redis-server version a run measures, part of its cache key.

    The lab's own (``INFO server``), or without a lab the one an embedded lab would start
    (``redis-server --version`` of :func:`~stampede.lab.find_redis_server`).
    """
    if lab is not None:
        with lab.redis() as client:
            return str(client.info("server")["redis_version"])
    return _binary_version(find_redis_server())


@lru_cache
def _binary_version(server: str) -> str:
    """``server --version``, once per binary: every ``run()``, a cached one too, asks for it."""
    out = subprocess.run([server, "--version"], capture_output=True, text=True, timeout=30)
    if found := re.search(r"\bv=(\S+)", out.stdout):
        return found[1]
    raise LabError(f"`{server} --version` printed no version: {out.stdout or out.stderr!r}")


def settled_stats(
    lab: Lab, config: StrategyConfig, limit_s: float = IN_FLIGHT_WAIT_S
) -> list[dict[str, Any]]:
    """The pods' ``/stats`` once no origin read is in flight, waiting at most ``limit_s``.

    A background refresh can still be reading when the last response came back. Its read is
    in the log from its start (``end`` None); this waits, for as long as the run's reads can
    take, for it to end, so its outcome is known. One still running after ``limit_s`` stays in
    the log, marked in flight.
    """
    deadline = time.time() + limit_s
    longest = config.origin_latency_ms + (config.origin_slow_ms if config.origin_slow_rate else 0)
    if config.origin_timeout_ms is not None:
        longest = min(longest, config.origin_timeout_ms)
    while True:
        stats = lab.stats()
        starts = [r[0] for s in stats for r in s["reads"] if r[1] is None]
        now = time.time()
        if not starts or now >= deadline:
            return stats
        time.sleep(min(deadline, max(max(starts) + longest / 1000, now) + 0.05) - now)


def _cache_key(params: dict[str, Any], code: str, redis: str) -> str:
    """Every parameter, the measured code's hash and the redis-server version."""
    blob = json.dumps({"params": params, "code": code, "redis": redis}, sort_keys=True)
    return f"{params['strategy']}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


def _save(result: RunResult, path: Path) -> None:
    payload = {
        "strategy": result.strategy,
        "params": result.params,
        "summary": result.summary,
        "counters": result.counters,
        "commands": result.commands,
        "records": result.records.to_dict(orient="split", index=False),
        "reads": result.reads.to_dict(orient="split", index=False),
    }
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with gzip.open(tmp, "wt") as fh:
        json.dump(payload, fh)
    tmp.replace(path)


def _load(path: Path) -> RunResult:
    with gzip.open(path, "rt") as fh:
        payload = json.load(fh)
    frames = {
        name: pd.DataFrame(payload[name]["data"], columns=payload[name]["columns"])
        for name in ("records", "reads")
    }
    return RunResult(
        payload["strategy"],
        payload["params"],
        frames["records"],
        frames["reads"],
        payload["summary"],
        payload["counters"],
        payload["commands"],
    )
