"""Generator cost: the old aiohttp worker beside the lean client, on one lab, in one run.

Both drive the same run (``stampede.run``, naive, reference load: 380 req/s open loop, 50
clients, 95% on item 1, 3 pods) through the same runner; only the worker process differs:
``aiohttp`` is the package's generator before the lean client (``bench/_aiohttp_load.py``, a
frozen copy, started as ``python -m stampede.load`` was, importing the package's notebook API),
``lean`` is :mod:`stampede.load` as the runner starts it today. For each: CPU of the worker
processes from ``getrusage(RUSAGE_CHILDREN)`` (start-up, connecting, warm-up, the run and the
records' JSON all included) per request sent; the start-up alone (the worker's imports, from
running it with ``--help``); the send lag ``t_send - t_sched`` p50/p99/max; the hit p50 the
client saw; errors; and how often a client opened a connection mid-run because all of its
connections to a pod were busy. Rows alternate (aiohttp, lean, aiohttp, ...) with ``--repeat``.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import duration_of, emit, machine_facts, measure, one_lab, parser

from stampede import Lab, LoadConfig, workers

HERE = Path(__file__).parent
OLD_WORKER = HERE / "_aiohttp_load.py"
Spawn = Callable[[Sequence[str], LoadConfig, range, Path, str], Any]


def spawn_aiohttp(
    pods: Sequence[str], load: LoadConfig, clients: range, directory: Path, name: str
) -> Any:
    """The old worker, with the command line it had (no progress file)."""
    out, log, prog = (directory / f"{name}.{ext}" for ext in ("json", "log", "progress"))
    args = [
        sys.executable, str(OLD_WORKER), "--pods", *pods, "--config", load.model_dump_json(),
        "--clients", f"{clients.start}:{clients.stop}", "--out", str(out),
    ]  # fmt: skip
    with log.open("wb") as err:
        popen = subprocess.Popen(
            args, bufsize=0, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
        )
    return workers._Worker(popen, out, log, prog)


GENERATORS: dict[str, tuple[Spawn, list[str]]] = {
    "aiohttp": (spawn_aiohttp, [sys.executable, str(OLD_WORKER), "--help"]),
    "lean": (
        workers.spawn,
        [sys.executable, "-c", workers._BOOTSTRAP, str(Path(workers.__file__).parent), "--help"],
    ),
}


def children_cpu_s() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime, usage.ru_stime


def startup_cpu_ms(command: list[str], repeat: int = 3) -> float:
    """Least CPU of ``repeat`` runs of the worker's imports (``--help`` exits after them)."""
    best = float("inf")
    for _ in range(repeat):
        u0, s0 = children_cpu_s()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        u1, s1 = children_cpu_s()
        best = min(best, (u1 - u0 + s1 - s0) * 1000)
    return best


def one_row(lab: Lab, name: str, duration: float, rate: float) -> dict[str, Any]:
    spawn, help_command = GENERATORS[name]
    original = workers.spawn
    workers.spawn = spawn
    try:
        u0, s0 = children_cpu_s()
        result = measure(lab, f"generator {name}", "naive", duration_s=duration, rate=rate)
        u1, s1 = children_cpu_s()
    finally:
        workers.spawn = original
    r, s = result.records, result.summary
    sent = max(1, len(r))
    lag = (r["t_send"] - r["t_sched"]) * 1000
    return {
        "generator": name,
        "requests": len(r),
        "cpu_ms/req": 1000 * (u1 - u0 + s1 - s0) / sent,
        "user_ms/req": 1000 * (u1 - u0) / sent,
        "sys_ms/req": 1000 * (s1 - s0) / sent,
        "startup_cpu_ms": startup_cpu_ms(help_command),
        "lag_p50_ms": float(lag.quantile(0.5)),
        "lag_p99_ms": float(lag.quantile(0.99)),
        "lag_max_ms": float(lag.max()),
        "hit_p50_ms": s["hit_latency_ms"]["p50"],
        "hit_p99_ms": s["hit_latency_ms"]["p99"],
        "errors": s["errors"],
        "opened_mid_run": r.attrs.get("opened_mid_run", "-"),
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, duration=20, quick=5)
    p.add_argument("--rate", type=float, default=380.0, help="open-loop req/s (380)")
    p.add_argument("--repeat", type=int, default=1, help="pairs of rows (1)")
    args = p.parse_args(argv)
    duration = duration_of(args)
    rows: list[dict[str, Any]] = []
    with one_lab() as lab:
        measure(lab, "warm-up (discarded)", "naive", duration_s=2.0, rate=args.rate)
        for _ in range(args.repeat):
            for name in GENERATORS:
                rows.append(one_row(lab, name, duration, args.rate))
    notes = [
        f"naive, {args.rate:g} req/s open loop, 50 clients, 1 worker, {duration:g} s per row; "
        "cpu = getrusage(RUSAGE_CHILDREN) of the worker processes over the whole run() "
        "(start-up included) / requests; startup = the worker's imports alone (--help), "
        "least of 3; lag = t_send - t_sched; opened_mid_run: '-' where not counted",
        machine_facts(),
    ]
    emit("load generator: aiohttp worker vs lean client", rows, args, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
