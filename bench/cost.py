"""Cost: CPU milliseconds per request of the lab's own processes, beside three floors.

At the reference load (the lab's defaults: 380 req/s open loop, 50 clients, 95% on the hot
item), one run per strategy (naive, single_flight, swr), CPU per request of:

- the three pods together (``/proc/<pid>/stat`` utime + stime around ``run()``; each request
  visits one pod, so this figure is directly comparable to one floor process's per request);
- Redis (same, its one PID);
- the load generator: ``getrusage(RUSAGE_CHILDREN)`` around ``run()``, i.e. the worker
  processes the runner starts and reaps. It includes each worker's start-up (interpreter,
  imports), its connection warm-up (3 connections per client and pod, one ``/health`` on each)
  and writing its records out, not only the paced requests;
- the total of those three, and what it makes in cores (total CPU seconds / run seconds);
- Redis commands per request (``INFO commandstats``, ``summary["redis_commands_per_request"]``);
- this bench process while ``run()`` ran (the runner: spawning, waiting, merging records,
  summarising), shown apart and not in the total.

In the same invocation, the floors (``bench/floors.py``): a raw ASGI app returning fixed bytes,
a FastAPI route returning a dict, FastAPI plus one redis-py ``GET`` returning the bytes, each a
real uvicorn process started with the pods' exact command line (``pod_command``), driven by
the project's load generator (``stampede.load.generate``, in this process) at 380/3 req/s into
that one process, as one pod sees it, for the same duration. Their CPU per request is the
floor process's alone; ``x <floor>`` is the pods' figure over it. A floor's CPU counts its
``/health`` warm-up the way the pods' does, and each floor measurement holds the machine-wide
load lock (``run()`` takes it for the strategies).

Also printed: the generator's import cost alone (``python -c 'import stampede.load, uvloop'``),
so the start-up share of its figure is visible.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvloop
from _common import duration_of, emit, machine_facts, measure, one_lab, parser

from stampede import Lab, LabConfig, LoadConfig, procs
from stampede.cpu import CpuMeter, children_cpu_seconds
from stampede.lab import pod_command
from stampede.load import generate
from stampede.paths import origin_path
from stampede.runner import machine_exclusive

STRATEGIES = ("naive", "single_flight", "swr")
FLOORS = {  # row label -> (uvicorn factory in bench/floors.py, short name for the ratio column)
    "floor: raw ASGI": ("floors:raw", "raw"),
    "floor: FastAPI dict": ("floors:fastapi_dict", "fastapi"),
    "floor: FastAPI + GET": ("floors:fastapi_get", "fastapi+get"),
}
FLOOR_RATE = LoadConfig().rate / LabConfig().pods  # what one pod sees at the reference load
BENCH_DIR = Path(__file__).resolve().parent
FLOOR_KEY = "floor:item:{}"  # floors.KEY; cost.py does not import the apps it starts


# ---- the lab ---------------------------------------------------------------------------
def strategy_row(lab: Lab, strategy: str, duration: float) -> dict[str, Any]:
    pids = lab.pids  # Redis first, then the pods
    with CpuMeter({"pods": pids[1:], "redis": pids[:1]}, children="generator") as meter:
        runner0 = time.process_time()
        result = measure(lab, "cost", strategy, duration_s=duration)
        runner = time.process_time() - runner0
    if meter.gone:
        raise RuntimeError(f"lab processes {sorted(meter.gone)} exited during the run")
    cpu = meter.delta()
    n = len(result.records)
    total = cpu["pods"] + cpu["redis"] + cpu["generator"]
    return {
        "run": strategy,
        "requests": n,
        "server_ms/req": 1000 * cpu["pods"] / n,
        "redis_ms/req": 1000 * cpu["redis"] / n,
        "gen_ms/req": 1000 * cpu["generator"] / n,
        "total_ms/req": 1000 * total / n,
        "cores": total / duration,
        "redis_cmds/req": result.summary["redis_commands_per_request"],
        "runner_ms/req": 1000 * runner / n,
    }


# ---- the floors ------------------------------------------------------------------------
def item_bytes(items: int) -> dict[int, bytes]:
    """Each origin row as the pod's JSONResponse serialises it."""
    with sqlite3.connect(f"file:{origin_path()}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM items WHERE id <= ?", (items,)).fetchall()
    db.close()
    return {
        row["id"]: json.dumps(dict(row), ensure_ascii=False, separators=(",", ":")).encode()
        for row in rows
    }


def floor_row(
    lab: Lab, label: str, app: str, duration: float, items: dict[int, bytes], log_dir: Path
) -> dict[str, Any]:
    load = LoadConfig(duration_s=duration, rate=FLOOR_RATE)
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    command = [*pod_command(port, app=app), "--app-dir", str(BENCH_DIR)]
    env = {
        "STAMPEDE_FLOOR_ITEM": items[load.hot_item].decode(),
        "STAMPEDE_REDIS_URL": lab.redis_url,
    }
    print(f"[bench] {label}: {app} at {FLOOR_RATE:.0f} req/s", file=sys.stderr, flush=True)
    with machine_exclusive():
        if app.endswith("_get"):
            with lab.redis() as client:
                client.mset({FLOOR_KEY.format(i): body for i, body in items.items()})
        name = app.replace(":", "-")
        proc = procs.start(name, command, log_path=log_dir / f"{name}.log", env=env)
        try:
            proc.wait_ready(lambda: httpx.get(f"{url}/health", timeout=0.5).is_success, 90)
            with (
                asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
                CpuMeter({"floor": [proc.pid]}) as meter,
            ):
                records, _ = runner.run(generate([url], load))
        finally:
            proc.stop()
    if meter.gone:
        raise RuntimeError(f"{label} exited during its run; see {proc.log_path}")
    bad = sum(r.status != 200 for r in records)
    if bad:
        raise RuntimeError(f"{label}: {bad} of {len(records)} requests were not answered 200")
    return {
        "run": label,
        "requests": len(records),
        "server_ms/req": 1000 * meter.delta()["floor"] / len(records),
    }


def import_cost_s() -> float:
    """CPU seconds of an interpreter that only imports what a load worker imports."""
    before = children_cpu_seconds()
    code = "import stampede.load, uvloop"
    subprocess.run([sys.executable, "-c", code], check=True)
    return children_cpu_seconds() - before


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, duration=20, quick=5)
    p.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help=f"comma-separated strategies ({','.join(STRATEGIES)})",
    )
    args = p.parse_args(argv)
    duration = duration_of(args)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    with one_lab() as lab, tempfile.TemporaryDirectory(prefix="stampede-floors-") as tmp:
        items = item_bytes(LoadConfig().items)  # the lab built the origin file
        rows = [strategy_row(lab, s, duration) for s in strategies]
        floors = [
            floor_row(lab, label, app, duration, items, Path(tmp))
            for label, (app, _) in FLOORS.items()
        ]
    imports = import_cost_s()
    by_floor = {FLOORS[f["run"]][1]: f["server_ms/req"] for f in floors}
    for row in rows:
        for short, floor_ms in by_floor.items():
            row[f"x {short}"] = row["server_ms/req"] / floor_ms
    blank = {key: math.nan for key in rows[0]} if rows else {}
    table_rows = rows + [{**blank, **f} for f in floors]
    n = rows[0]["requests"] if rows else 0
    notes = [
        f"{duration:g} s per run at the reference load ({LoadConfig().rate:g} req/s open loop, "
        f"{LoadConfig().clients} clients, {LoadConfig().hot_share:.0%} hot); CPU from "
        "/proc utime+stime (pods, Redis, floors) and getrusage(RUSAGE_CHILDREN) (generator)",
        "server_ms/req: the three pods together (each request visits one), or the one floor "
        f"process at {FLOOR_RATE:.0f} req/s; x <floor> = the pods' server_ms/req over that floor's",
        "gen_ms/req includes the workers' start-up and connection warm-up; runner_ms/req (this "
        "process during run()) is not in total_ms/req; cores = total CPU s / run s",
        f"generator imports alone: {1000 * imports:.0f} ms of CPU"
        + (f", {1000 * imports / n:.2f} ms per request of a {duration:g} s run" if n else ""),
        machine_facts(),
    ]
    emit("cost: CPU ms per request, the lab and its floors", table_rows, args, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
