"""The simulator beside the live lab: one table, the same parameters, the issue's tolerances.

For each configuration (lab defaults: 3 pods, 380 req/s, 95% on one key, 200 ms origin, 5 s
TTL) one live run and one simulated run, then per metric the two values and whether they agree:

- hot reads per TTL window, median: naive within 25%; coalescing strategies the same count;
- reads over the lower bound: within 5%;
- the busiest second after the first TTL (``max_origin_per_s_steady``): within 20%;
- wait_hit and stale answers: within 25% (both under 20: within 5 answers);
- single_flight's steady hot-key p99: within 15%.

``--other`` adds naive and single_flight at another rate (200 req/s) and another origin latency
(100 ms). Live runs are load tests: run this under the machine's heavy lock.

    flock /tmp/stampede-heavy.lock python bench/sim_vs_lab.py [--duration 20] [--other] [--json]
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

from _common import duration_of, emit, machine_facts, measure, one_lab, parser

from stampede import sim
from stampede.runner import RunResult

COALESCING = {"local_lock", "single_flight", "swr", "xfetch"}
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "naive": ("naive", {}),
    "local_lock": ("local_lock", {}),
    "single_flight poll": ("single_flight", {"wait": "poll"}),
    "single_flight notify": ("single_flight", {"wait": "notify"}),
    "swr": ("swr", {}),
    "xfetch": ("xfetch", {}),
    "bulk warm, jitter 0": ("naive", {"scenario": "bulk_warm", "jitter": 0.0}),
    "bulk warm, jitter 1.0": ("naive", {"scenario": "bulk_warm", "jitter": 1.0}),
}
OTHER: dict[str, tuple[str, dict[str, Any]]] = {
    "naive @200 req/s": ("naive", {"rate": 200.0}),
    "single_flight @200 req/s": ("single_flight", {"rate": 200.0}),
    "naive @100 ms": ("naive", {"origin_latency_ms": 100.0}),
    "single_flight @100 ms": ("single_flight", {"origin_latency_ms": 100.0}),
}


def close(a: float, b: float, rel: float, floor: float = 0.0) -> bool:
    return abs(a - b) <= max(rel * max(abs(a), abs(b)), floor)


def compare_one(
    name: str, strategy: str, lab: RunResult, simulated: RunResult
) -> list[dict[str, Any]]:
    ls, ss = lab.summary, simulated.summary
    rows = []

    def add(metric: str, a: float, b: float, ok: bool, rule: str) -> None:
        rows.append({"case": name, "metric": metric, "lab": a, "sim": b, "agree": ok, "rule": rule})

    if ls["hot_reads_per_window"] and ss["hot_reads_per_window"] and "bulk" not in name:
        a = float(statistics.median(ls["hot_reads_per_window"]))
        b = float(statistics.median(ss["hot_reads_per_window"]))
        if strategy in COALESCING:
            add("hot reads/window (median)", a, b, a == b, "equal")
        else:
            add("hot reads/window (median)", a, b, close(a, b, 0.25), "25%")
    add(
        "reads / lower bound",
        ls["reads_over_bound"],
        ss["reads_over_bound"],
        close(ls["reads_over_bound"], ss["reads_over_bound"], 0.05),
        "5%",
    )
    a, b = ls["max_origin_per_s_steady"], ss["max_origin_per_s_steady"]
    add("busiest second after TTL", a, b, close(a, b, 0.20, 1), "20%")
    for outcome in ("wait_hit", "stale"):
        a, b = ls["outcomes"].get(outcome, 0), ss["outcomes"].get(outcome, 0)
        if a or b:
            add(f"{outcome} answers", a, b, close(a, b, 0.25, 5), "25%")
    if strategy == "single_flight":
        a = ls["hot_latency_ms_steady"]["p99"]
        b = ss["hot_latency_ms_steady"]["p99"]
        add("hot p99 steady (ms)", a, b, close(a, b, 0.15), "15%")
    return rows


def main() -> None:
    p = parser(__doc__, duration=20.0, quick=8.0)
    p.add_argument("--other", action="store_true", help="also another rate and origin latency")
    args = p.parse_args()
    duration = duration_of(args)
    cases = {**CASES, **(OTHER if args.other else {})}
    rows: list[dict[str, Any]] = []
    with one_lab() as lab:
        for name, (strategy, params) in cases.items():
            live = measure(lab, name, strategy, duration_s=duration, **params)
            simulated = sim.simulate(strategy, duration_s=duration, **params)
            rows.extend(compare_one(name, strategy, live, simulated))
    agree = sum(r["agree"] for r in rows)
    notes = [
        f"{agree} of {len(rows)} comparisons agree; {duration:g} s per run; "
        f"sim constants: {sim.MEASURED}",
        machine_facts(),
    ]
    emit("simulator (sim) vs live lab (lab), lab defaults", rows, args, notes)
    sys.exit(0)


if __name__ == "__main__":
    main()
