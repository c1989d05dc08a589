"""XFetch's beta sweep beside a fixed early-refresh cutoff, at the default load.

xfetch with beta in {0.5, 1, 2, 4} and fixed_cutoff at 0.8 and 0.9 of the TTL. Per run:
early_refresh responses (requests that started a refresh), early attempts (draws or cutoffs
that said "refresh now", counters["early_attempts"]), origin reads, reads / lower bound,
steady hot-key p99 and steady max origin reads/s.
"""

from __future__ import annotations

import sys
from typing import Any

from _common import duration_of, emit, machine_facts, measure, one_lab, parser

from stampede import metrics
from stampede.runner import RunResult

RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    **{f"xfetch beta={b:g}": ("xfetch", {"beta": b}) for b in (0.5, 1.0, 2.0, 4.0)},
    **{f"fixed_cutoff {c:g}": ("fixed_cutoff", {"cutoff": c}) for c in (0.8, 0.9)},
}

COLUMNS = (
    "origin_reads",
    "origin_reads_hot",
    "reads_over_bound",
    "hot_latency_steady_p99_ms",
    "max_origin_per_s_steady",
    "n_miss",
)


def row(label: str, result: RunResult) -> dict[str, Any]:
    early = metrics.row(result.summary, ["n_early_refresh"])
    attempts = {"early_attempts": result.counters.get("early_attempts", 0)}
    return {"run": label, **early, **attempts, **metrics.row(result.summary, COLUMNS)}


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, duration=30, quick=8).parse_args(argv)
    duration = duration_of(args)
    with one_lab() as lab:
        rows = [
            row(label, measure(lab, label, strategy, duration_s=duration, **params))
            for label, (strategy, params) in RUNS.items()
        ]
    notes = [
        f"default load, {duration:g} s per run; steady = from the first TTL on",
        machine_facts(),
    ]
    emit("xfetch beta sweep vs fixed cutoff", rows, args, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
