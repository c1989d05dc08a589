"""Bulk warm: every item written at t=0 expires together unless the TTLs are jittered.

scenario="bulk_warm" (every item requested once at t=0, then uniform traffic) with naive
cache-aside and TTL jitter 0 (none), 0.2 and 1.0: peak origin reads/s, seconds above the
50 reads/s threshold, origin reads and reads / lower bound.
"""

from __future__ import annotations

import sys
from typing import Any

from _common import duration_of, emit, machine_facts, measure, one_lab, parser

from stampede import metrics
from stampede.runner import RunResult

JITTERS = (0.0, 0.2, 1.0)

COLUMNS = (
    "max_origin_per_s",
    "max_origin_per_s_steady",
    "seconds_above_threshold",
    "origin_reads",
    "reads_over_bound",
    "latency_p99_ms",
)


def row(jitter: float, result: RunResult) -> dict[str, Any]:
    return {"run": f"naive jitter={jitter:g}", **metrics.row(result.summary, COLUMNS)}


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, duration=30, quick=8).parse_args(argv)
    duration = duration_of(args)
    with one_lab() as lab:
        rows = [
            row(j, measure(lab, f"jitter {j:g}", "naive", scenario="bulk_warm",
                           duration_s=duration, jitter=j))
            for j in JITTERS
        ]  # fmt: skip
    notes = [
        f"scenario bulk_warm, default rate, {duration:g} s per run; jitter = TTL x "
        "(1 + U(0, jitter)) on writes",
        machine_facts(),
    ]
    emit("bulk warm: naive with and without TTL jitter", rows, args, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
