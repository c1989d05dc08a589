"""Our single_flight (notify) and swr beside the libraries people would pick instead.

Every strategy at the default load (50 clients, open-loop 380 req/s, TTL 5 s, 95% hot) on one
lab, the whole set repeated ``--repeats`` times (round-robin, so a slow minute of the machine
hits every strategy alike). One table, each cell the median over the repeats with min-max:
hot-key origin reads per TTL window (mean over the run's windows), steady max origin reads/s,
origin reads / lower bound, hot-key p50/p99 (whole run and steady, ms), wait_hit and stale
counts, Redis commands per request (INFO commandstats delta / requests) and errors. Notes give
each strategy's Redis commands per request by command: polling shows up there.

Peers report ``miss`` when the request's own load ran and ``hit`` otherwise: their waiters and
stale reads are not observable, so their wait_hit and stale columns are 0 by construction.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from typing import Any

from _common import duration_of, emit, fmt, machine_facts, measure, one_lab, parser

from stampede.peers import PEERS
from stampede.runner import RunResult

RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "single_flight notify": ("single_flight", {"wait": "notify"}),
    "swr": ("swr", {}),
    **{name: (name, {}) for name in PEERS},
}

Metric = Callable[[RunResult], float]


def _window_mean(r: RunResult) -> float:
    counts = r.summary["hot_reads_per_window"]
    return statistics.fmean(counts) if counts else float("nan")


COLUMNS: dict[str, Metric] = {
    "hot/window": _window_mean,
    "max_origin/s_st": lambda r: r.summary["max_origin_per_s_steady"],
    "reads/bound": lambda r: r.summary["reads_over_bound"],
    "hot_p50": lambda r: r.summary["hot_latency_ms"]["p50"],
    "hot_p99": lambda r: r.summary["hot_latency_ms"]["p99"],
    "hot_p50_st": lambda r: r.summary["hot_latency_ms_steady"]["p50"],
    "hot_p99_st": lambda r: r.summary["hot_latency_ms_steady"]["p99"],
    "wait_hit": lambda r: r.summary["outcomes"].get("wait_hit", 0),
    "stale": lambda r: r.summary["outcomes"].get("stale", 0),
    "redis/req": lambda r: r.summary["redis_commands_per_request"],
    "errors": lambda r: r.summary["outcomes"].get("error", 0) + r.summary["lost"],
}


def cell(values: list[float]) -> str:
    """Median with min-max, e.g. ``1.00 (1.00-1.05)``; one value alone is printed as is."""
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})"


def row(label: str, results: list[RunResult]) -> dict[str, Any]:
    return {"run": label, **{k: cell([f(r) for r in results]) for k, f in COLUMNS.items()}}


def commands_note(label: str, results: list[RunResult]) -> str:
    """Redis commands per request by command (median over repeats), largest first."""
    names = {name for r in results for name in r.commands}
    per_req = {
        name: statistics.median(
            r.commands.get(name, 0) / max(1, r.summary["requests"]) for r in results
        )
        for name in names
    }
    top = sorted(per_req.items(), key=lambda kv: -kv[1])[:6]
    return f"{label}: " + ", ".join(f"{name} {value:.2f}" for name, value in top)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, duration=60, quick=20)
    p.add_argument("--repeats", type=int, default=3, help="runs of each strategy (3)")
    args = p.parse_args(argv)
    duration = duration_of(args)
    results: dict[str, list[RunResult]] = {label: [] for label in RUNS}
    with one_lab() as lab:
        for i in range(args.repeats):
            for label, (strategy, params) in RUNS.items():
                tag = f"{label} #{i + 1}"
                results[label].append(measure(lab, tag, strategy, duration_s=duration, **params))
    rows = [row(label, rs) for label, rs in results.items()]
    head = (
        f"default load (50 clients, 380 req/s open loop, TTL 5 s, 95% hot), {duration:g} s per "
        f"run, {args.repeats} repeat(s): median (min-max); latencies in ms, hot key only"
    )
    notes = [
        head,
        "hot/window = mean hot-key origin reads per TTL window; _st = steady (t >= TTL)",
        "peers cannot report wait_hit or stale (their libraries do not say): 0 by construction",
        "Redis commands per request, by command:",
        *(f"  {commands_note(label, rs)}" for label, rs in results.items()),
        machine_facts(),
    ]
    emit("ours beside the libraries", rows, args, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
