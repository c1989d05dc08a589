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
from typing import Any

from _common import duration_of, emit, fmt, machine_facts, measure, one_lab, parser

from stampede import metrics
from stampede.peers import PEERS
from stampede.runner import RunResult

RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "single_flight notify": ("single_flight", {"wait": "notify"}),
    "swr": ("swr", {}),
    **{name: (name, {}) for name in PEERS},
}

COLUMNS = (
    "hot_reads_per_window_mean",
    "max_origin_per_s_steady",
    "reads_over_bound",
    "hot_latency_p50_ms",
    "hot_latency_p99_ms",
    "hot_latency_steady_p50_ms",
    "hot_latency_steady_p99_ms",
    "n_wait_hit",
    "n_stale",
    "redis_commands_per_request",
)


def errors(r: RunResult) -> int:
    return int(r.summary["outcomes"].get("error", 0) + r.summary["lost"])


def cell(values: list[float]) -> str:
    """Median with min-max, e.g. ``1.00 (1.00-1.05)``; one value alone is printed as is."""
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})"


def row(label: str, results: list[RunResult]) -> dict[str, Any]:
    values = [metrics.row(r.summary, COLUMNS) for r in results]
    cells = {name: cell([v[name] for v in values]) for name in COLUMNS}
    return {"run": label, **cells, "errors": cell([errors(r) for r in results])}


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
        "hot_reads_per_window_mean = mean hot-key origin reads per TTL window; steady = t >= TTL",
        "peers cannot report wait_hit or stale (their libraries do not say): 0 by construction",
        "Redis commands per request, by command:",
        *(f"  {commands_note(label, rs)}" for label, rs in results.items()),
        machine_facts(),
    ]
    emit("ours beside the libraries", rows, args, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
