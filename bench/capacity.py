"""Capacity: the highest paced (open-loop) rate this machine's lab sustains, and who saturates.

Steps single_flight through rising Poisson rates with the generator in 1 and then 2 worker
processes. A step passes when the hit-path p50 is <= 5 ms and the generator kept pace
(achieved rate, requests / seconds from the start to the last send, within 3% of the rate
its schedule asked for; the schedule's own Poisson noise is not a shortfall). For every step
it samples /proc CPU time of Redis, each pod and each load-generator worker over the load
window, so the table shows which process hits 100% of a core first.

Then: generator CPU per request of an httpx.AsyncClient per client, an aiohttp.ClientSession
per client and the generator's own lean client (``stampede.load``), closed loop against the same
pods (``bench/generator.py`` compares the old aiohttp worker and the lean one end to end).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from _common import duration_of, emit, machine_facts, measure, one_lab, parser

from stampede import Lab, LoadConfig, StrategyConfig
from stampede.load import generate_rows, item_chooser
from stampede.runner import RunResult, machine_exclusive

RATES = (380, 760, 1200, 1600, 2000, 2400)
QUICK_RATES = (380, 760, 1200)
WORKERS = (1, 2)
HIT_P50_MAX_MS = 5.0
PACE_TOLERANCE = 0.03
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- /proc CPU sampling ---------------------------------------------------------------
def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14, 15 of proc(5)


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle or iowait), from /proc/stat."""
    with open("/proc/stat", "rb") as fh:
        ticks = [int(x) for x in fh.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK


def load_workers(parent: int) -> list[int]:
    """Children of ``parent`` running ``-m stampede.load``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            if ppid != parent:
                continue
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if b"stampede.load" in fh.read():
                    found.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(found)


@dataclass
class CpuSampler:
    """Samples CPU seconds of named processes every ``interval_s`` in a background thread."""

    named: dict[str, int]
    expect_workers: int
    interval_s: float = 0.2
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> CpuSampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        pids = dict(self.named)
        me = os.getpid()
        while not self._stop.is_set():
            if sum(n.startswith("gen") for n in pids) < self.expect_workers:
                for i, pid in enumerate(load_workers(me), start=1):
                    pids.setdefault(f"gen-{i}", pid)
            now = time.time()
            self.samples.setdefault("machine", []).append((now, machine_busy_seconds()))
            for name, pid in pids.items():
                cpu = cpu_seconds(pid)
                if cpu is not None:
                    self.samples.setdefault(name, []).append((now, cpu))
            self._stop.wait(self.interval_s)

    def percent(self, begin: float, end: float) -> dict[str, float]:
        """CPU% of each process between the first sample >= begin and the last <= end."""
        out = {}
        for name, series in self.samples.items():
            inside = [s for s in series if begin <= s[0] <= end]
            if len(inside) >= 2 and inside[-1][0] > inside[0][0]:
                (t0, c0), (t1, c1) = inside[0], inside[-1]
                out[name] = 100 * (c1 - c0) / (t1 - t0)
        return out


def lab_processes(lab: Lab) -> dict[str, int]:
    """Redis first, then the pods (``lab.pids`` order)."""
    pids = lab.pids
    return {"redis": pids[0], **{f"pod-{i}": pid for i, pid in enumerate(pids[1:], start=1)}}


# ---- one step --------------------------------------------------------------------------
def step_row(result: RunResult, rate: float, workers: int, cpu: dict[str, float]) -> dict[str, Any]:
    r, s = result.records, result.summary
    start = float((r["t_send"] - r["t"]).iloc[0])
    duration = result.params["duration_s"]
    scheduled = len(r) / duration
    achieved = len(r) / max(1e-9, float(r["t_send"].max()) - start)
    hit_p50 = s["hit_latency_ms"]["p50"]
    ok = hit_p50 <= HIT_P50_MAX_MS and achieved >= (1 - PACE_TOLERANCE) * scheduled
    cpu = dict(cpu)
    machine = cpu.pop("machine", math.nan)
    busiest = max(cpu, key=lambda k: cpu[k]) if cpu else "-"
    return {
        "workers": workers,
        "rate": rate,
        "sched_rps": scheduled,
        "achieved_rps": achieved,
        "send_lag_p99_ms": float((r["t_send"] - r["t_sched"]).quantile(0.99) * 1000),
        "hit_p50_ms": hit_p50,
        "hit_p99_ms": s["hit_latency_ms"]["p99"],
        "errors": s["errors"],
        "ok": ok,
        "busiest": busiest,
        **{f"{k}%": v for k, v in sorted(cpu.items(), key=lambda kv: _order(kv[0]))},
        "others%": machine - sum(cpu.values()),  # CPU used by processes not in this run
    }


def _order(name: str) -> tuple[int, str]:
    return ({"redis": 0, "pod": 1, "gen": 2}.get(name.split("-")[0], 3), name)


def run_step(lab: Lab, rate: float, workers: int, duration: float) -> dict[str, Any]:
    with CpuSampler(lab_processes(lab), expect_workers=workers) as sampler:
        result = measure(
            lab, f"rate {rate} workers {workers}", "single_flight",
            duration_s=duration, rate=rate, workers=workers,
        )  # fmt: skip
    start = float((result.records["t_send"] - result.records["t"]).iloc[0])
    return step_row(result, rate, workers, sampler.percent(start, start + duration))


def best_rates(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for workers in sorted({r["workers"] for r in rows}):
        passed = [r["rate"] for r in rows if r["workers"] == workers and r["ok"]]
        best = max(passed) if passed else None
        first_fail = next((r for r in rows if r["workers"] == workers and not r["ok"]), None)
        if first_fail is None:
            why = f" (every step passed: the limit is above {max(RATES)} req/s)"
        else:
            why = f"; first failing step {first_fail['rate']} (busiest: {first_fail['busiest']})"
        lines.append(f"workers={workers}: highest sustained rate {best or 'none'} req/s{why}")
    return lines


# ---- client library side by side ------------------------------------------------------
async def _closed_loop(lib: str, pods: list[str], clients: int, seconds: float) -> int:
    """``clients`` closed loops, each with its own session; returns requests completed."""
    import aiohttp
    import httpx

    if lib == "lean":  # the generator itself, closed loop, one connection set per client
        _, sent, _ = await generate_rows(
            pods, LoadConfig(pacing="closed", clients=clients, duration_s=seconds)
        )
        return sent

    load = LoadConfig()
    cycle = itertools.cycle(pods)
    if lib == "httpx":
        sessions: list[Any] = [httpx.AsyncClient(timeout=10) for _ in range(clients)]
    else:
        sessions = [
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) for _ in range(clients)
        ]

    async def get(session: Any, url: str) -> None:
        if lib == "httpx":
            (await session.get(url)).read()
        else:
            async with session.get(url) as resp:
                await resp.read()

    done = 0

    async def client(i: int, session: Any, end: float) -> None:
        nonlocal done
        choose = item_chooser(load, random.Random(i))
        while time.time() < end:
            await get(session, f"{next(cycle)}/items/{choose()}")
            done += 1

    try:
        await asyncio.gather(*(get(s, f"{p}/health") for s in sessions for p in pods))
        await asyncio.gather(*(get(s, f"{pods[0]}/items/1") for s in sessions[:1]))  # warm key
        end = time.time() + seconds
        await asyncio.gather(*(client(i, s, end) for i, s in enumerate(sessions)))
    finally:
        for s in sessions:
            await (s.aclose() if lib == "httpx" else s.close())
    return done


def client_cpu(lab: Lab, lib: str, seconds: float, clients: int = 50) -> dict[str, Any]:
    """CPU ms per request of this process driving a closed loop with ``lib``."""
    try:
        import uvloop

        new_loop = uvloop.new_event_loop
    except ImportError:
        new_loop = asyncio.new_event_loop
    with machine_exclusive():
        lab.configure(StrategyConfig(strategy="single_flight"))
        loop = new_loop()
        try:
            cpu0, t0 = time.process_time(), time.time()
            done = loop.run_until_complete(_closed_loop(lib, lab.pods, clients, seconds))
            cpu, wall = time.process_time() - cpu0, time.time() - t0
        finally:
            loop.close()
    return {
        "client": lib,
        "clients": clients,
        "requests": done,
        "req/s": done / wall,
        "cpu_ms/req": 1000 * cpu / max(1, done),
        "cpu%": 100 * cpu / wall,
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, duration=10, quick=6)
    p.add_argument(
        "--client-seconds", type=float, default=5.0, help="per client library (5; 0 skips it)"
    )
    p.add_argument(
        "--workers",
        type=lambda text: tuple(int(w) for w in text.split(",")),
        default=WORKERS,
        help="generator worker processes to step, comma-separated (1,2)",
    )
    args = p.parse_args(argv)
    duration = duration_of(args)
    rates = QUICK_RATES if args.quick else RATES
    rows: list[dict[str, Any]] = []
    with one_lab() as lab:
        for workers in args.workers:
            for rate in rates:
                rows.append(run_step(lab, rate, workers, duration))
        libs = [
            client_cpu(lab, lib, args.client_seconds)
            for lib in ("httpx", "aiohttp", "lean")
            if args.client_seconds > 0
        ]
    notes = [
        f"single_flight, default mix, {duration:g} s per step; ok = hit p50 <= "
        f"{HIT_P50_MAX_MS:g} ms and achieved >= {1 - PACE_TOLERANCE:.0%} of scheduled; "
        "CPU% of one core over the load window (/proc utime+stime); others% = machine busy "
        "minus ours: if it is large, another workload skews the steps",
        *best_rates(rows),
        machine_facts(),
    ]
    emit("capacity: open-loop rate steps", rows, args, notes)
    if libs:
        emit(
            "load-generator client library, closed loop, same pods",
            libs,
            args,
            [f"{args.client_seconds:g} s each, one process, uvloop; CPU = this process"],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
