"""The simulator at fleet scale: simulated requests per wall second and peak memory.

1,000 pods, 1,000,000 req/s, Zipf(1.0) over 1,000,000 keys, 60 s of simulated time, for naive,
single_flight (poll and notify) and swr. Each strategy runs in a fresh process of its own (one
core: numpy's threads pinned to one), so its peak RSS is its own. The target: at most 60 s of
wall time and 4 GiB each.

    python bench/sim_scale.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from _common import machine_facts, table

CASES = {
    "naive": {"strategy": "naive"},
    "single_flight poll": {"strategy": "single_flight", "wait": "poll"},
    "single_flight notify": {"strategy": "single_flight", "wait": "notify"},
    "swr": {"strategy": "swr"},
}
SCALE = {"pods": 1000, "rate": 1_000_000.0, "keys": 1_000_000, "alpha": 1.0, "duration_s": 60.0}
QUICK = {"pods": 100, "rate": 100_000.0, "keys": 100_000, "alpha": 1.0, "duration_s": 20.0}


def one(case: str, scale: dict[str, Any]) -> dict[str, Any]:
    from stampede.sim import fleet

    result = fleet(**scale, **CASES[case])
    s = result.summary()
    return {
        "case": case,
        "requests": result.requests,
        "wall_s": round(result.wall_s, 2),
        "req_per_wall_s": round(result.requests_per_wall_s),
        "peak_rss_mib": round(result.peak_rss_mib),
        "steps": result.steps,
        "origin_reads": result.origin_reads,
        "max_reads_per_s": result.max_origin_per_s_steady,
        "hot_herd": round(s["hot_reads_per_expiry_mean"], 1),
        "redis_per_req": round(s["redis_commands_per_request"], 3),
        "busiest_shard_util": round(result.redis_busiest_utilisation, 2),
        "pubsub_deliveries": result.pubsub_deliveries,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a tenth of the scale, 20 s")
    p.add_argument("--json", action="store_true")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    scale = QUICK if args.quick else SCALE
    if args.one:
        print(json.dumps(one(args.one, scale)))
        return
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    rows = []
    for case in CASES:
        cmd = [sys.executable, __file__, "--one", case, *(["--quick"] if args.quick else [])]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps({"scale": scale, "rows": rows}))
        return
    print(f"\n== stampede.sim.fleet at {scale} (simulated) ==")
    print(table(rows))
    worst = max(r["wall_s"] for r in rows), max(r["peak_rss_mib"] for r in rows)
    print(f"  target: <= 60 s wall and <= 4096 MiB each; worst: {worst[0]} s, {worst[1]} MiB")
    print(f"  {machine_facts()}")


if __name__ == "__main__":
    main()
