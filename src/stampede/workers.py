"""Driving the load generator from worker processes: start them together, watch, merge.

A run's load comes from ``load.workers`` processes running :func:`stampede.load.main`, so the
generator has its own core and a notebook's event loop is not involved. Each worker connects
its clients, says ``ready`` on stdout, and starts at the one epoch second the runner sends back
on stdin; after that it writes nothing to its pipes: progress goes to a small file the runner
polls, errors to a log file (a pipe nobody reads fills up after 64 KiB and then blocks the
worker's event loop). A worker gets SIGKILL when the process that started it dies
(``PR_SET_PDEATHSIG``), so a killed notebook leaves no load running.

Workers import only :mod:`stampede.load` and :mod:`stampede.errors`, not the package's
notebook API (pydantic, redis, httpx: about a second of CPU, a third of the generator's
budget for a whole 20 s run at the reference load); the one line of bootstrap below does that.
"""

from __future__ import annotations

import contextlib
import json
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Any

import pandas as pd
from tqdm.auto import tqdm

from stampede.errors import LabError
from stampede.procs import die_with_parent

if TYPE_CHECKING:
    from stampede.config import LoadConfig
    from stampede.lab import Lab

__all__ = ["PROGRESS_EVERY_S", "drive", "spawn"]

PROGRESS_EVERY_S = 0.5  # how often a worker rewrites its progress file
READY_TIMEOUT_S = 60.0

# Import stampede.load without running stampede/__init__ (the notebook API): a package module
# whose __path__ is the package directory, then the worker's main.
_BOOTSTRAP = (
    "import sys, types; pkg = types.ModuleType('stampede'); pkg.__path__ = [sys.argv.pop(1)]; "
    "sys.modules['stampede'] = pkg; from stampede.load import main; sys.exit(main())"
)


class _Worker:
    """One worker process and its files."""

    def __init__(self, popen: subprocess.Popen[bytes], out: Path, log: Path, prog: Path) -> None:
        self.popen, self.out, self.log, self.progress = popen, out, log, prog

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-2000:]
        return "(no log)"

    def sent(self) -> int:
        with contextlib.suppress(OSError, ValueError):
            return int(self.progress.read_bytes() or 0)
        return 0


def spawn(
    pods: Sequence[str], load: LoadConfig, clients: range, directory: Path, name: str
) -> _Worker:
    """Start one worker for ``clients``; its files (out, log, progress) go in ``directory``."""
    out, log, prog = (directory / f"{name}.{ext}" for ext in ("json", "log", "progress"))
    args = [
        sys.executable, "-c", _BOOTSTRAP, str(Path(__file__).parent),
        "--pods", *pods, "--config", load.model_dump_json(),
        "--clients", f"{clients.start}:{clients.stop}", "--out", str(out),
        "--progress", str(prog), "--progress-every", str(PROGRESS_EVERY_S),
    ]  # fmt: skip
    with log.open("wb") as err:
        popen = subprocess.Popen(
            args,
            bufsize=0,  # the ready line is read after select(): no hidden buffer in between
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            preexec_fn=die_with_parent(signal.SIGKILL),
        )
    return _Worker(popen, out, log, prog)


def drive(
    lab: Lab,
    load: LoadConfig,
    progress: bool,
    on_start: Callable[[float], None] | None = None,
) -> tuple[pd.DataFrame, int, float]:
    """Run the load in ``load.workers`` processes, started together; merge their records.

    ``on_start`` gets the run's start (epoch s) as soon as it is fixed: the fault schedule.
    The records frame's ``attrs["opened_mid_run"]`` counts the connections the clients opened
    during the run because all of theirs to a pod were busy.
    """
    bounds = [load.clients * i // load.workers for i in range(load.workers + 1)]
    with TemporaryDirectory(prefix="stampede-load-") as tmp:
        workers = [
            spawn(lab.pods, load, range(bounds[i], bounds[i + 1]), Path(tmp), f"worker-{i}")
            for i in range(load.workers)
        ]
        try:
            start = _start_together(workers)
            if on_start is not None:
                on_start(start)
            _wait_with_progress(workers, load, start, progress)
        finally:
            for w in workers:
                if w.popen.poll() is None:
                    w.popen.kill()
                w.popen.wait()
                for pipe in (w.popen.stdin, w.popen.stdout):
                    if pipe is not None:
                        pipe.close()
        for w in workers:
            if w.popen.returncode != 0:
                raise LabError(f"load worker failed (exit {w.popen.returncode}):\n{w.log_tail()}")
        payloads: list[dict[str, Any]] = [json.loads(w.out.read_text()) for w in workers]
    rows = [row for p in payloads for row in p["records"]]
    records = pd.DataFrame(rows, columns=payloads[0]["fields"])
    records.attrs["opened_mid_run"] = sum(p.get("opened_mid_run", 0) for p in payloads)
    return records, sum(p["sent"] for p in payloads), start


def _start_together(workers: Sequence[_Worker], timeout_s: float = READY_TIMEOUT_S) -> float:
    """Wait until every worker has connected its clients, then give them one start time."""
    deadline = time.monotonic() + timeout_s
    for w in workers:
        assert w.popen.stdout is not None
        line = b""
        while b"ready" not in line:
            remaining = deadline - time.monotonic()
            ready = select.select([w.popen.stdout], [], [], max(0.0, remaining))[0]
            line = w.popen.stdout.readline() if ready else b""
            if not line:
                why = "exited" if ready else f"was not ready after {timeout_s:g} s"
                raise LabError(f"load worker {why} before the run started:\n{w.log_tail()}")
    start = time.time() + 0.1
    for w in workers:
        assert w.popen.stdin is not None
        w.popen.stdin.write(json.dumps({"start": start}).encode() + b"\n")
        w.popen.stdin.flush()
    return start


def _wait_with_progress(
    workers: Sequence[_Worker], load: LoadConfig, start: float, progress: bool
) -> None:
    """Show seconds elapsed and requests sent until every worker exits (or time is up)."""
    deadline = start + load.duration_s + load.request_timeout_s + 30
    total = round(load.duration_s)
    with tqdm(total=total, unit="s", desc="load", disable=not progress, leave=False) as bar:
        while any(w.popen.poll() is None for w in workers):
            if time.time() > deadline:
                raise LabError("the load generator did not finish in time; killed it")
            elapsed = min(total, max(0, round(time.time() - start)))
            bar.update(elapsed - bar.n)
            if progress:
                bar.set_postfix(sent=sum(w.sent() for w in workers), refresh=False)
            time.sleep(0.2)
        bar.update(total - bar.n)
