"""The lab: a real ``redis-server`` and three uvicorn pods, embedded or attached.

``Lab.embedded()`` starts the processes on free 127.0.0.1 ports and stops exactly those PIDs
on ``stop()``, on leaving a ``with`` block, on an exception or Ctrl-C, and at interpreter exit;
their ``PR_SET_PDEATHSIG`` covers a killed kernel. ``Lab.attach()`` / ``Lab.from_env()`` reach
a lab someone else runs (the compose stack, ``stampede lab up``) through its URLs, so a
notebook never cares which launcher is behind it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import redis

from stampede import paths, procs
from stampede.config import LabConfig, StrategyConfig
from stampede.errors import LabError, PortInUse, ProcessFailed, RedisNotFound
from stampede.origin import ensure_origin

__all__ = ["Lab", "pod_command", "pod_env"]

INSTALL_REDIS = (
    "redis-server was not found on PATH. Install it: `sudo apt-get install redis-server` "
    "(Debian/Ubuntu), `brew install redis` (macOS), or run `make setup`, which does it for you."
)


def pod_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The pod's command line; the compose file runs the same one."""
    return [
        sys.executable, "-m", "uvicorn", "stampede.pod:create_app", "--factory",
        "--host", host, "--port", str(port), "--no-access-log", "--log-level", "warning",
        "--loop", "uvloop", "--http", "httptools",
    ]  # fmt: skip


def pod_env(name: str, redis_url: str, origin: Path, config: StrategyConfig) -> dict[str, str]:
    """The pod's environment (``STAMPEDE_*``), the contract the compose file follows too."""
    env = {
        "STAMPEDE_POD_NAME": name,
        "STAMPEDE_REDIS_URL": redis_url,
        "STAMPEDE_ORIGIN_PATH": str(origin),
    }
    for field, value in config.model_dump(exclude_none=True).items():
        env[f"STAMPEDE_{field.upper()}"] = str(value)
    return env


class Lab:
    """Pods and Redis of one lab, started here or reached by URL."""

    def __init__(
        self,
        pods: Sequence[str],
        redis_url: str,
        processes: Sequence[procs.ManagedProcess] = (),
    ) -> None:
        if not pods:
            raise LabError("a lab needs at least one pod URL")
        self.pods = list(pods)
        self.redis_url = redis_url
        self.processes = list(processes)
        self.config: StrategyConfig | None = None
        self.log_dir: Path | None = None
        self._remove_logs = False
        self._http = httpx.Client(timeout=10)
        if self.processes:
            atexit.register(self.stop)

    # ---- launchers -------------------------------------------------------------------
    @classmethod
    def embedded(
        cls,
        lab: LabConfig | None = None,
        *,
        config: StrategyConfig | None = None,
        redis_port: int | None = None,
        pod_ports: Sequence[int] | None = None,
        owned: bool = True,
        log_dir: Path | None = None,
    ) -> Lab:
        """Start Redis and the pods on 127.0.0.1 and wait until all of them answer."""
        lab = lab or LabConfig()
        config = config or StrategyConfig()
        server = shutil.which("redis-server")
        if server is None:
            raise RedisNotFound(INSTALL_REDIS)
        if pod_ports is not None and len(pod_ports) != lab.pods:
            raise LabError(f"{len(pod_ports)} pod ports given for {lab.pods} pods")
        for port, what in [(redis_port, "redis")] + [(p, "pod") for p in pod_ports or ()]:
            if port is not None:
                procs.check_port(port, what)
        redis_port = redis_port or procs.free_port()
        ports = list(pod_ports or [procs.free_port() for _ in range(lab.pods)])
        temporary_logs = log_dir is None
        log_dir = log_dir or Path(tempfile.mkdtemp(prefix="stampede-lab-"))
        origin = ensure_origin(paths.origin_path(), lab.origin_items)
        started: list[procs.ManagedProcess] = []
        try:
            started.append(_start_redis(server, redis_port, log_dir, owned))
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            for i, port in enumerate(ports, start=1):
                env = pod_env(f"pod-{i}", redis_url, origin, config)
                started.append(
                    procs.start(
                        f"pod-{i}", pod_command(port), log_path=log_dir / f"pod-{i}.log",
                        env=env, owned=owned,
                    )
                )  # fmt: skip
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for proc, url in zip(started[1:], urls, strict=True):
                _wait_pod(proc, url)
        except BaseException:
            for proc in reversed(started):
                proc.stop()
            raise
        instance = cls(urls, redis_url, started)
        instance.config = config
        instance.log_dir = log_dir
        instance._remove_logs = temporary_logs
        return instance

    @classmethod
    def attach(cls, pods: Sequence[str], redis_url: str) -> Lab:
        """Reach a running lab (compose, ``stampede lab up``); ``stop()`` leaves it running."""
        return cls(pods, redis_url)

    @classmethod
    def from_env(cls) -> Lab:
        """Attach through ``STAMPEDE_POD_URLS`` (comma-separated) and ``STAMPEDE_REDIS_URL``."""
        pods = [u.strip() for u in os.environ.get("STAMPEDE_POD_URLS", "").split(",") if u]
        redis_url = os.environ.get("STAMPEDE_REDIS_URL", "")
        if not pods or not redis_url:
            raise LabError("set STAMPEDE_POD_URLS and STAMPEDE_REDIS_URL to attach to a lab")
        return cls.attach(pods, redis_url)

    @classmethod
    def default(cls) -> Lab:
        """Attach when the environment names a lab, otherwise start the embedded one."""
        return cls.from_env() if os.environ.get("STAMPEDE_POD_URLS") else cls.embedded()

    # ---- running ---------------------------------------------------------------------
    def configure(self, config: StrategyConfig) -> None:
        """Put every pod on ``config`` and flush Redis: a run never mixes two configurations."""
        for url in self.pods:
            resp = self._http.post(f"{url}/admin/config", json=config.model_dump())
            if resp.status_code != 200:
                raise LabError(f"pod {url} refused the configuration: {resp.text}")
        with self.redis() as client:
            client.flushall()
        self.config = config

    def reset(self) -> None:
        """Clear the pods' counters and origin logs (keeps the cache)."""
        for url in self.pods:
            self._http.post(f"{url}/admin/reset").raise_for_status()

    def stats(self) -> list[dict[str, Any]]:
        """Each pod's origin log and outcome counters for the current run."""
        return [self._http.get(f"{url}/stats").json() for url in self.pods]

    def health(self) -> list[bool]:
        healthy = []
        for url in self.pods:
            try:
                healthy.append(self._http.get(f"{url}/health", timeout=2).status_code == 200)
            except httpx.HTTPError:
                healthy.append(False)
        return healthy

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=5)

    def commandstats(self) -> dict[str, int]:
        """Redis' per-command call counts (``INFO commandstats``) for coordination costs."""
        with self.redis() as client:
            info = client.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}

    # ---- stopping --------------------------------------------------------------------
    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        """Stop the processes this lab started (pods first, then Redis); idempotent."""
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        self._http.close()
        if self._remove_logs and self.log_dir is not None:
            shutil.rmtree(self.log_dir, ignore_errors=True)
            self._remove_logs = False

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        return {"pods": self.pods, "redis": self.redis_url, "pids": self.pids}

    def __repr__(self) -> str:
        return f"Lab(pods={self.pods}, redis={self.redis_url!r})"


def _start_redis(server: str, port: int, log_dir: Path, owned: bool) -> procs.ManagedProcess:
    args = [
        server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--daemonize", "no", "--dir", str(log_dir), "--loglevel", "notice",
    ]  # fmt: skip
    log_dir.mkdir(parents=True, exist_ok=True)
    proc = procs.start("redis-server", args, log_path=log_dir / "redis.log", owned=owned)

    def ping() -> bool:
        with redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
            return bool(client.ping())

    try:
        proc.wait_ready(ping)
    except ProcessFailed as exc:
        proc.stop()
        if "Address already in use" in str(exc):
            raise PortInUse(f"port {port} on 127.0.0.1 (redis) is already in use") from None
        raise
    return proc


def _wait_pod(proc: procs.ManagedProcess, url: str) -> None:
    def healthy() -> bool:
        return httpx.get(f"{url}/health", timeout=0.5).status_code == 200

    try:
        proc.wait_ready(healthy)
    except ProcessFailed as exc:
        if "address already in use" in str(exc).lower():
            raise PortInUse(f"{url} is already in use; pick another port") from None
        raise


def save_state(lab: Lab, path: Path) -> None:
    path.write_text(json.dumps(lab.describe(), indent=2))


def load_state(path: Path) -> dict[str, Any] | None:
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        state: dict[str, Any] = json.loads(path.read_text())
        return state
    return None
