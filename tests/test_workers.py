"""Load workers: progress never blocks a run, and a killed parent leaves no worker behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stampede import run, workers
from stampede.lab import Lab
from stampede.procs import pid_alive


def test_a_run_with_progress_every_tenth_of_a_millisecond_completes(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a worker that reported into a pipe nobody reads would block after 64 KiB (~5,000 reports)
    monkeypatch.setattr(workers, "PROGRESS_EVERY_S", 0.0001)
    seen: list[int] = []
    sent = workers._Worker.sent

    def spy(self: workers._Worker) -> int:
        seen.append(n := sent(self))
        return n

    monkeypatch.setattr(workers._Worker, "sent", spy)
    result = run("naive", lab=lab, fresh=True, progress=True, duration_s=5.0, rate=100)
    assert result.summary["requests"] == result.summary["accounting"]["sent"] > 300
    assert max(seen) > 0  # the runner read the progress the workers wrote


@pytest.fixture
def listener() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)  # the kernel completes the handshakes: enough for warm connections
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


PARENT = """
import sys, time
from pathlib import Path
from stampede import LoadConfig, workers
load = LoadConfig(duration_s=600, clients=1)
worker = workers.spawn([sys.argv[1]], load, range(0, 1), Path(sys.argv[2]), "w")
workers._start_together([worker])  # running: it reads and writes no pipe any more
print(worker.popen.pid, flush=True)
time.sleep(600)
"""


def test_a_killed_parent_leaves_no_worker(listener: str, tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, listener, str(tmp_path)], stdout=subprocess.PIPE
    )
    pid = 0
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert pid_alive(pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(pid), "the worker outlived the process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if pid and pid_alive(pid):  # the test failed: still end the worker it started
            os.kill(pid, signal.SIGKILL)
