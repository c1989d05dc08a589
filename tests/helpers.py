"""Small helpers shared by several test modules."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket
from redis.asyncio import Redis, RedisCluster

from stampede import auth, procs
from stampede.lab import Lab
from stampede.lock import RedisClient
from stampede.strategies import Strategy

ORIGIN_LATENCY_S = 0.05  # the in-process origin: slow enough for a herd to form
MakeStrategy = Callable[..., Strategy]


def child_pids() -> set[int]:
    """PIDs whose parent is this pytest process (a /proc scan, zombies excluded)."""
    me = os.getpid()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def bearer(lab: Lab) -> dict[str, str]:
    """The ``Authorization`` header every ``/admin`` call of ``lab`` needs."""
    return {"Authorization": f"Bearer {lab.secret}"}


class Clock:
    """Real time plus an offset the test moves: values age without the test sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


async def eventually(check: Callable[[], Awaitable[bool]], limit_s: float = 5.0) -> None:
    """Poll ``check`` until it holds; fail after ``limit_s`` (a hang guard, not a timing).

    The state polled lives in Redis or in another task's counters, where no event is set.
    """
    async with asyncio.timeout(limit_s):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def outside_redis(tasks: list[asyncio.Task[object]]) -> Callable[[], Awaitable[bool]]:
    """A check for :func:`eventually`: every task is suspended, none inside a redis-py call.

    redis-py 8.1.0 swallows a ``CancelledError`` that lands while a command is in flight (the
    task goes on as if the command had returned), so tests cancel only between commands.
    """

    async def check() -> bool:
        for task in tasks:
            if task.done():
                continue
            if any("/redis/" in frame.f_code.co_filename for frame in task.get_stack(limit=50)):
                return False
        return True

    return check


class WholeCluster(RedisCluster):
    """redis-py's cluster client with ``KEYS``/``DBSIZE``/``MGET``/``INFO commandstats`` and
    ``CONFIG RESETSTAT`` over every primary.

    redis-py sends those to one node unless told (``MGET`` across slots is refused); a
    test that asks for "every key" means the cluster's.
    """

    async def keys(self, pattern: Any = "*", **kwargs: Any) -> Any:  # type: ignore[override]
        return await super().keys(pattern, target_nodes=RedisCluster.PRIMARIES, **kwargs)

    async def dbsize(self, **kwargs: Any) -> Any:  # type: ignore[override]
        return await super().dbsize(target_nodes=RedisCluster.PRIMARIES, **kwargs)

    async def mget(self, keys: Any, *args: Any) -> Any:  # type: ignore[override]
        return await self.mget_nonatomic(keys, *args)

    async def config_resetstat(self, **kwargs: Any) -> Any:  # type: ignore[override]
        return await super().config_resetstat(target_nodes=RedisCluster.PRIMARIES, **kwargs)

    async def info(self, section: Any = None, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """``INFO commandstats`` summed over the primaries (other sections: one node's)."""
        if section != "commandstats":
            return await super().info(section, *args, **kwargs)
        per_node = await super().info(section, target_nodes=RedisCluster.PRIMARIES)
        total: dict[str, dict[str, int]] = {}
        for stats in per_node.values():
            for name, fields in stats.items():
                total.setdefault(name, {"calls": 0})["calls"] += int(fields["calls"])
        return total


def cache_client(url: str) -> RedisClient:
    """An asyncio client of ``url``: :class:`WholeCluster` for a ``redis-cluster://`` URL."""
    if auth.is_cluster_url(url):
        return WholeCluster.from_url(auth.client_url(url))
    return Redis.from_url(url)


# ---- JupyterLab driven through its server API: test_make_lab.py, test_compose_stack.py -----
ROOT = Path(__file__).resolve().parent.parent
MAKE_LAB_STOP_S = 60.0


def wait_for(what: str, ready: Callable[[], bool], timeout_s: float, log: Path) -> None:
    """Poll ``ready`` until it holds; fail after ``timeout_s`` with the end of ``log``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, OSError, KeyError, ValueError):
            if ready():
                return
        time.sleep(0.5)
    pytest.fail(f"{what} did not answer within {timeout_s:.0f} s; its output:\n{tail(log)}")


def tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no output)"


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def jupyter_answers(base: str, token: str) -> bool:
    """Whether the Jupyter server at ``base`` answers its API with ``token``."""
    return httpx.get(f"{base}/api/status", params={"token": token}, timeout=2).status_code == 200


def run_cell(base: str, token: str, code: str, timeout_s: float = 60.0) -> str:
    """Start a kernel, run ``code`` over its websocket, return what it printed to stdout.

    The kernel is shut down afterwards. A cell that raises fails the test with its traceback;
    what it wrote to stderr (progress bars) is left out, so the last line is the cell's own.
    """
    http = httpx.Client(base_url=base, headers={"Authorization": f"token {token}"}, timeout=30)
    kernel = http.post("/api/kernels", json={"name": "python3"}).raise_for_status().json()
    ws_url = base.replace("http://", "ws://") + f"/api/kernels/{kernel['id']}/channels"
    ws = websocket.create_connection(
        ws_url, header=[f"Authorization: token {token}"], timeout=timeout_s
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
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg: dict[str, Any] = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                out.append(content["text"])
            elif kind == "error":
                pytest.fail("the cell failed: " + "\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(out)
        pytest.fail(f"the cell did not finish within {timeout_s:.0f} s")
    finally:
        ws.close()
        with contextlib.suppress(httpx.HTTPError):
            http.delete(f"/api/kernels/{kernel['id']}")
        http.close()


@dataclass
class MakeLab:
    """A running ``make lab``: its process group, JupyterLab's port and token, its state."""

    process: subprocess.Popen[bytes]
    port: int
    token: str
    state_dir: Path
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def jupyter_up(self) -> bool:
        """For :func:`wait_for`: JupyterLab answers (and ``make lab`` has not exited)."""
        if self.process.poll() is not None:
            pytest.fail(f"make lab exited with {self.process.returncode}:\n{tail(self.log)}")
        return jupyter_answers(self.base, self.token)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def make_lab(tmp_path: Path) -> Iterator[MakeLab]:
    """``make lab`` headless, as a student runs it, in its own process group; stopped after.

    ``LAB_ARGS``: no browser, a free port, a token (``--allow-root`` comes from the Makefile
    when the user is root). The lab's state goes to a temporary ``STAMPEDE_STATE_DIR``, so a
    lab the developer has up is not touched. On the way out, if the test has not stopped it
    with its own Ctrl-C, SIGINT (then SIGKILL) to the group, and the background lab by PID.
    """
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
            # a terminal's default: a test run launched in the background (nohup, `cmd &`)
            # ignores SIGINT, its children inherit that, and make lab would never see Ctrl-C
            preexec_fn=_default_sigint,
        )  # fmt: skip
    try:
        yield MakeLab(make, port, token, state_dir, log)
    finally:
        if make.poll() is None:  # the test failed before its own Ctrl-C: clean up by force
            with contextlib.suppress(ProcessLookupError):
                os.killpg(make.pid, signal.SIGINT)
            try:
                make.wait(timeout=MAKE_LAB_STOP_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(make.pid, signal.SIGKILL)
                make.wait(timeout=10)
        state = state_dir / "lab-up.json"
        if state.exists():  # make lab's trap did not run: stop the background lab by PID
            for pid in json.loads(state.read_text()).get("pids", []):
                procs.stop_pid(pid)
