"""``make lab`` as a student runs it: JupyterLab and the lab come up, a cell reaches the lab, Ctrl-C
stops everything.

The test runs the real Makefile target headless (:func:`tests.helpers.make_lab`: no browser, a
free port, a token; ``--allow-root`` comes from the Makefile itself when the user is root),
waits (bounded) until the Jupyter server and every pod answer, starts a kernel through the
server's REST API and runs one cell over the kernel's websocket, the way a chapter reaches the
lab (``Lab.from_env()`` through ``STAMPEDE_POD_URLS``, an ``/admin`` call with the exported
``STAMPEDE_LAB_SECRET``), then sends SIGINT to the whole process
group, as a terminal's Ctrl-C does, and checks that no process it started is left and that the
ports are closed.
``tests/test_compose_stack.py`` runs a compose run from the same ``make lab``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.helpers import MAKE_LAB_STOP_S, MakeLab, listening, make_lab, run_cell, tail, wait_for

START_TIMEOUT_S = 150.0  # lab up (three pods importing pandas/altair) + JupyterLab, busy 2 cores
CELL_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = MAKE_LAB_STOP_S

CELL = """\
import os
from stampede.lab import Lab
lab = Lab.from_env()
lab.reset()  # an /admin call: needs the STAMPEDE_LAB_SECRET that make lab exported
print(json.dumps({"pods": lab.pods, "env": os.environ["STAMPEDE_POD_URLS"].split(","),
                  "healthy": lab.health()}))
"""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[MakeLab]:
    with make_lab(tmp_path) as running:
        yield running


@pytest.mark.timeout(START_TIMEOUT_S + CELL_TIMEOUT_S + STOP_TIMEOUT_S + 60)
def test_make_lab_starts_answers_and_stops_on_ctrl_c(lab: MakeLab) -> None:
    make, port, token, state_dir, log = lab.process, lab.port, lab.token, lab.state_dir, lab.log
    base = lab.base
    state_file = state_dir / "lab-up.json"

    wait_for("JupyterLab", lab.jupyter_up, START_TIMEOUT_S, log)
    assert httpx.get(f"{base}/lab", params={"token": token}, timeout=10).status_code == 200
    state = json.loads(state_file.read_text())
    for pod in state["pods"]:
        assert httpx.get(f"{pod}/health", timeout=5).status_code == 200, pod

    printed = run_cell(base, token, CELL, CELL_TIMEOUT_S)
    answer = json.loads(printed.strip().splitlines()[-1])
    assert answer["pods"] == answer["env"] == state["pods"]
    assert answer["healthy"] == [True] * len(state["pods"])

    # Everything that is ours: make's descendants (sh, jupyter, kernels) and the lab's PIDs.
    ours = {p.pid: p for p in psutil.Process(make.pid).children(recursive=True)}
    ours.update({pid: psutil.Process(pid) for pid in state["pids"] if psutil.pid_exists(pid)})
    names = {proc.name() for proc in ours.values()}
    assert any("jupyter" in n or "python" in n for n in names), names
    pod_ports = [int(url.rsplit(":", 1)[1]) for url in state["pods"]]
    redis_port = int(state["redis"].rsplit(":", 1)[1].split("/")[0])

    os.killpg(make.pid, signal.SIGINT)  # Ctrl-C in the terminal
    try:
        make.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"make lab still running {STOP_TIMEOUT_S:.0f} s after Ctrl-C:\n{tail(log)}")

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(p.is_running() for p in ours.values()):
        time.sleep(0.2)
    left = [f"{pid} {p.name()}" for pid, p in ours.items() if p.is_running()]
    assert not left, f"left running after Ctrl-C: {left}"
    assert not state_file.exists(), "make lab's trap did not run `stampede lab down`"
    still_open = [p for p in [port, redis_port, *pod_ports] if listening(p)]
    assert not still_open, f"ports still listening: {still_open}"
