"""single_flight waiters: polling every 50 ms vs a Redis pub/sub notification, side by side.

For each wait mode: wait_hit count; steady-state wait_hit p50/p99 minus the origin latency,
as the client measured it and as the pod did (``Server-Timing``: the client's figure adds the
transport and the load generator's own queueing when ~75 answers land in the same millisecond);
the wake-up delay (a wait_hit's response end minus the end of the latest origin read of its
item that ended before it); Redis commands per request and per command; hot-key steady p99.
"""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd
from _common import duration_of, emit, machine_facts, measure, one_lab, parser, steady

from stampede import metrics
from stampede.metrics import percentiles
from stampede.runner import RunResult

MODES = {"poll": {"wait": "poll", "poll_ms": 50.0}, "notify": {"wait": "notify"}}
COMMAND_ORDER = ("get", "set", "evalsha", "eval", "publish", "psubscribe", "pexpire", "del")


def wake_up_delays_ms(result: RunResult) -> pd.Series:
    """Per wait_hit: response end minus the end of the latest read of its item before it."""
    r = result.records
    waits = r[(r["outcome"] == "wait_hit") & (r["status"] > 0)].copy()
    waits["done"] = waits["t_send"] + waits["latency_ms"] / 1000
    reads = result.reads[["item", "end"]].sort_values("end")
    joined = pd.merge_asof(
        waits.sort_values("done"),
        reads.rename(columns={"end": "read_end"}),
        left_on="done",
        right_on="read_end",
        by="item",
        direction="backward",
        allow_exact_matches=False,
    )
    return ((joined["done"] - joined["read_end"]) * 1000).dropna()


def row(mode: str, result: RunResult) -> dict[str, Any]:
    origin_ms = result.params["origin_latency_ms"]
    s = steady(result)
    waits = s[s["outcome"] == "wait_hit"]
    wp = percentiles(waits["latency_ms"])
    pod = percentiles(waits["server_ms"].dropna())
    wake = percentiles(wake_up_delays_ms(result))
    return {
        "wait": mode,
        **metrics.row(result.summary, ["requests", "n_wait_hit"]),
        "wait_hit_p50-origin_ms": wp["p50"] - origin_ms,
        "wait_hit_p99-origin_ms": wp["p99"] - origin_ms,
        "pod_p50-origin_ms": pod["p50"] - origin_ms,
        "pod_p99-origin_ms": pod["p99"] - origin_ms,
        "wake_p50_ms": wake["p50"],
        "wake_p99_ms": wake["p99"],
        **metrics.row(result.summary, ["hot_latency_steady_p99_ms", "redis_commands_per_request"]),
    }


def command_rows(results: dict[str, RunResult]) -> list[dict[str, Any]]:
    """Redis calls per request, per command, one column per mode."""
    names = sorted(
        {c for r in results.values() for c in r.commands},
        key=lambda c: (COMMAND_ORDER.index(c) if c in COMMAND_ORDER else 99, c),
    )
    rows = []
    for name in names:
        line: dict[str, Any] = {"command": name}
        for mode, r in results.items():
            n = r.commands.get(name, 0)
            line[f"{mode}_calls"] = n
            line[f"{mode}_per_req"] = n / max(1, r.summary["requests"])
        rows.append(line)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, duration=30, quick=8).parse_args(argv)
    duration = duration_of(args)
    results: dict[str, RunResult] = {}
    with one_lab() as lab:
        for mode, params in MODES.items():
            results[mode] = measure(lab, mode, "single_flight", duration_s=duration, **params)
    rows = [row(mode, r) for mode, r in results.items()]
    notes = [
        f"default load ({results['poll'].params['rate']:g} req/s open loop, "
        f"{results['poll'].params['clients']} clients), {duration:g} s per mode; "
        "steady = records with t >= ttl_s; wake = response end - end of the latest origin "
        "read of that item that ended before it",
        machine_facts(),
    ]
    emit("single_flight waiters: poll (50 ms) vs notify", rows, args, notes)
    emit("Redis commands (INFO commandstats deltas)", command_rows(results), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
