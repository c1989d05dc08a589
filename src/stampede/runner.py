"""One run, end to end: configure the lab, send the load, collect, measure, cache.

``run("single_flight", duration_s=30)`` validates every parameter before anything starts,
puts the lab's pods on a fresh configuration over a flushed Redis, drives the load from worker
processes (so the generator has its own core and a notebook's event loop is not involved),
collects every pod's origin log and returns a :class:`RunResult`.

Runs are the expensive part of the book and chapters share them, so results are cached on
disk under a key made of every parameter and a hash of the package's source: any parameter
or code change makes a new key. ``fresh=True`` (or ``STAMPEDE_FRESH=1``) forces a new run.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from stampede import metrics, paths
from stampede.compose import launcher_name, start_lab
from stampede.config import Fault, LabConfig, LoadConfig, StrategyConfig, check_schedule, validated
from stampede.errors import ConfigError, LostRequests
from stampede.fault_report import fault_report
from stampede.injector import FaultInjector
from stampede.lab import Lab
from stampede.machine import MachineMeter, verdict
from stampede.metrics import RunShape, hot_windows, per_second, summarize
from stampede.registry import strategy_class
from stampede.workers import drive as _drive

__all__ = ["RunResult", "compare", "machine_exclusive", "run", "split_params"]

LAB_COMMANDS = frozenset({"info", "hello", "flushall", "select", "auth"})

_SETTLE_S = 0.5  # after the last response, background refreshes may still be reading


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
    **params: Any,
) -> RunResult:
    """Run ``strategy`` under the load described by ``params`` and measure it.

    Without ``lab``, attaches to the lab named by ``STAMPEDE_POD_URLS`` if set, else starts the
    lab ``STAMPEDE_LAB`` names (embedded by default) for this run and stops it after; ``lab`` may
    name one too: ``"embedded"``, ``"compose"``, ``"swarm"`` (:mod:`stampede.compose`).
    ``faults`` (a list of :class:`~stampede.config.Fault`) need an embedded lab; their timeline
    and measured effect land in ``summary["faults"]``. Every run checks that nothing was lost
    (sent = responses + errors + timeouts) and raises :class:`LostRequests` otherwise.
    """
    config, load, lab_config = split_params({"strategy": strategy, **params})
    launcher = None if isinstance(lab, Lab) else launcher_name(lab)  # a bad name fails here
    check_schedule(lab_config.faults, load.duration_s)
    all_params = {**config.model_dump(), **load.model_dump(), **lab_config.model_dump()}
    fresh = fresh if fresh is not None else os.environ.get("STAMPEDE_FRESH") == "1"
    cache_file = paths.runs_dir() / f"{_cache_key(all_params)}.json.gz"
    if not fresh and cache_file.exists():
        return _load(cache_file)
    if lab is None and os.environ.get("STAMPEDE_POD_URLS"):
        lab = Lab.from_env()  # `make lab`, compose: attach to the running lab
    if lab_config.faults and isinstance(lab, Lab) and not lab.processes:
        raise ConfigError("faults need an embedded lab (PIDs to signal); this one is attached")
    own_lab = not isinstance(lab, Lab)
    lab = lab if isinstance(lab, Lab) else start_lab(launcher, lab_config, config)
    try:
        with machine_exclusive():
            result = _measure(lab, config, load, all_params, progress, lab_config.faults)
    finally:
        if own_lab:
            lab.stop()
    _save(result, cache_file)
    return result


@contextlib.contextmanager
def machine_exclusive() -> Iterator[None]:
    """One load run at a time on this machine: two runs on 2 cores would measure each other."""
    path = Path(tempfile.gettempdir()) / "stampede-lab-load.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        # every user of the machine shares the lock: whoever creates it makes it writable for
        # all (the umask would leave it 0644, and every other user's run fails to open it)
        with contextlib.suppress(PermissionError):
            os.fchmod(fd, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


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
    before = lab.commandstats()
    injector = FaultInjector(lab, faults)
    try:
        with MachineMeter() as machine:
            records, sent, start = _drive(lab, load, progress, on_start=injector.start)
    except BaseException:
        injector.cancel()
        raise
    events = injector.join()
    time.sleep(_SETTLE_S)
    stats = lab.stats()
    after = lab.commandstats()
    reads = pd.DataFrame(
        [(*r, s["pod"]) for s in stats for r in s["reads"]],
        columns=["start", "end", "item", "ok", "pod"],
    ).astype({"start": float, "end": float, "item": int, "ok": bool})
    reads["t"] = reads["start"] - start
    records["t"] = records["t_send"] - start
    shape = RunShape.of(params)
    summary = summarize(records, reads, shape, sent=sent)
    if summary["lost"]:
        raise LostRequests(
            f"{summary['lost']} of {sent} requests were sent but neither answered, refused nor "
            f"timed out: {summary['accounting']}"
        )
    if faults:
        summary["faults"] = {"events": events, "report": fault_report(records, reads, events)}
    counters: dict[str, int] = {}
    for s in stats:
        for k, v in s["counters"].items():
            counters[k] = counters.get(k, 0) + v
    commands = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
    for name in [c for c in commands if c in LAB_COMMANDS or c.startswith("client|")]:
        del commands[name]  # the lab's own bookkeeping and connection set-up, not coordination
    summary["redis_commands"] = sum(commands.values())
    summary["redis_commands_per_request"] = summary["redis_commands"] / max(1, len(records))
    trips = counters.get("redis_round_trips")
    summary["redis_round_trips_per_request"] = (
        math.nan if trips is None else trips / max(1, len(records))
    )
    summary["machine"] = verdict(
        summary["send_lag_ms"]["p99"], machine.busy_share, len(machine.cpus)
    )
    return RunResult(config.strategy, params, records, reads, summary, counters, commands)


@lru_cache
def code_version() -> str:
    """Hash of the package's source: a code change invalidates every cached run."""
    digest = hashlib.sha256()
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _cache_key(params: dict[str, Any]) -> str:
    blob = json.dumps({"params": params, "code": code_version()}, sort_keys=True)
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
