"""``make lab`` as a student runs it: JupyterLab and the lab come up, a cell reaches the lab, Ctrl-C
stops everything.

The test runs the real Makefile target headless (``LAB_ARGS``: no browser, a free port, a token;
``--allow-root`` comes from the Makefile itself when the user is root, as on these machines),
waits (bounded) until the Jupyter server and every pod answer, starts a kernel through the
server's REST API and runs one cell over the kernel's websocket, the way a chapter reaches the
lab (``Lab.from_env()`` through ``STAMPEDE_POD_URLS``, an ``/admin`` call with the exported
``STAMPEDE_LAB_SECRET``), then sends SIGINT to the whole process
group, as a terminal's Ctrl-C does, and checks that no process it started is left and that the
ports are closed. The lab's state goes to a temporary ``STAMPEDE_STATE_DIR``, so a lab the
developer has up is not touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import websocket

from stampede import procs

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 150.0  # lab up (three pods importing pandas/altair) + JupyterLab, busy 2 cores
CELL_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0

CELL = """\
import os
from stampede.lab import Lab
lab = Lab.from_env()
lab.reset()  # an /admin call: needs the STAMPEDE_LAB_SECRET that make lab exported
print(json.dumps({"pods": lab.pods, "env": os.environ["STAMPEDE_POD_URLS"].split(","),
                  "healthy": lab.health()}))
"""


def wait_for(what: str, ready: Callable[[], bool], timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, OSError, KeyError, ValueError):
            if ready():
                return
        time.sleep(0.5)
    pytest.fail(f"{what} did not answer within {timeout_s:.0f} s; make lab said:\n{tail(log)}")


def tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no output)"


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def run_cell(base: str, token: str, code: str) -> str:
    """Start a kernel, run ``code`` over its websocket, return what it printed; shut it down."""
    http = httpx.Client(base_url=base, headers={"Authorization": f"token {token}"}, timeout=30)
    kernel = http.post("/api/kernels", json={"name": "python3"}).raise_for_status().json()
    ws_url = base.replace("http://", "ws://") + f"/api/kernels/{kernel['id']}/channels"
    ws = websocket.create_connection(
        ws_url, header=[f"Authorization: token {token}"], timeout=CELL_TIMEOUT_S
    )
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                       "session": uuid.uuid4().hex, "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": "import json\n" + code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))  # fmt: skip
        out: list[str] = []
        deadline = time.monotonic() + CELL_TIMEOUT_S
        while time.monotonic() < deadline:
            msg: dict[str, Any] = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                pytest.fail("the cell failed: " + "\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(out)
        pytest.fail(f"the cell did not finish within {CELL_TIMEOUT_S:.0f} s")
    finally:
        ws.close()
        with contextlib.suppress(httpx.HTTPError):
            http.delete(f"/api/kernels/{kernel['id']}")
        http.close()


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, str, Path, Path]]:
    port, token = procs.free_port(), uuid.uuid4().hex
    state_dir, log = tmp_path / "state", tmp_path / "make-lab.log"
    env = {
        **os.environ,
        "STAMPEDE_STATE_DIR": str(state_dir),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "LAB_ARGS": (
            f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} "
            f"--ServerApp.port_retries=0 --IdentityProvider.token={token}"
        ),
    }
    env.pop("STAMPEDE_POD_URLS", None)
    env.pop("STAMPEDE_REDIS_URL", None)
    env.pop("STAMPEDE_LAB_SECRET", None)  # it must come from make lab's export
    # -o: the virtualenv running this test is the one make would (re)build; do not rebuild it.
    cmd = ["make", "--no-print-directory", "-o", ".venv/.installed", "lab"]
    with log.open("wb") as out:
        make = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            start_new_session=True,  # its own process group, which Ctrl-C signals as a whole
        )  # fmt: skip
    try:
        yield make, port, token, state_dir, log
    finally:
        if make.poll() is None:  # the test failed before its own Ctrl-C: clean up by force
            with contextlib.suppress(ProcessLookupError):
                os.killpg(make.pid, signal.SIGINT)
            try:
                make.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(make.pid, signal.SIGKILL)
                make.wait(timeout=10)
        state = state_dir / "lab-up.json"
        if state.exists():  # make lab's trap did not run: stop the background lab by PID
            for pid in json.loads(state.read_text()).get("pids", []):
                procs.stop_pid(pid)


@pytest.mark.timeout(START_TIMEOUT_S + CELL_TIMEOUT_S + STOP_TIMEOUT_S + 60)
def test_make_lab_starts_answers_and_stops_on_ctrl_c(
    make_lab: tuple[subprocess.Popen[bytes], int, str, Path, Path],
) -> None:
    make, port, token, state_dir, log = make_lab
    base = f"http://127.0.0.1:{port}"
    state_file = state_dir / "lab-up.json"

    def jupyter_up() -> bool:
        if make.poll() is not None:
            pytest.fail(f"make lab exited with {make.returncode}:\n{tail(log)}")
        status = httpx.get(f"{base}/api/status", params={"token": token}, timeout=2)
        return status.status_code == 200

    wait_for("JupyterLab", jupyter_up, START_TIMEOUT_S, log)
    assert httpx.get(f"{base}/lab", params={"token": token}, timeout=10).status_code == 200
    state = json.loads(state_file.read_text())
    for pod in state["pods"]:
        assert httpx.get(f"{pod}/health", timeout=5).status_code == 200, pod

    printed = run_cell(base, token, CELL)
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
