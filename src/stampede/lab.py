"""The lab: a real ``redis-server`` and three uvicorn pods, embedded or attached.

``Lab.embedded()`` starts the processes on free 127.0.0.1 ports and stops exactly those PIDs
on ``stop()``, on leaving a ``with`` block, on an exception or Ctrl-C, and at interpreter exit;
their ``PR_SET_PDEATHSIG`` covers a killed kernel. ``Lab.attach()`` / ``Lab.from_env()`` reach
a lab someone else runs (the compose stack, ``stampede lab up``) through its URLs, so a
notebook never cares which launcher is behind it.

An embedded lab can also be broken on purpose (:mod:`stampede.injector`): ``restart_redis``,
``kill_pod`` and ``start_pod`` act on the PIDs it started, and ``stop()`` copes with a process
that is already dead.

Each embedded lab makes its own secret (:func:`stampede.auth.new_secret`): the pods get it as
``STAMPEDE_LAB_SECRET`` and require it on ``/admin``, ``redis-server`` gets it as
``requirepass`` (through stdin, never its command line) and every Redis URL carries it as the
password. An attached lab reads it from ``STAMPEDE_LAB_SECRET``. Readiness probes prove they
reached *our* process (the pod's ``/health`` PID, Redis' ``process_id`` behind our password):
a foreign listener that took a port between :func:`~stampede.procs.free_port` and the start is
:class:`PortInUse`, not a lab. And :meth:`Lab.configure` flushes only a Redis that demands the
lab's secret. Why: the threat model in :mod:`stampede.pod`.

With ``LabConfig(redis_cluster=N)`` the one ``redis-server`` becomes a Redis Cluster of N
primaries (and ``redis_replicas`` replicas each), every node started, probed and stopped as
the single Redis is (our PID behind our password; ``masterauth`` lets replicas sync), then
joined by ``redis-cli --cluster create`` (the password in its environment, ``REDISCLI_AUTH``,
not on its command line) and waited for until every node says ``cluster_state:ok`` with all
16384 slots served. The pods get a ``redis-cluster://`` URL (:func:`stampede.auth.cluster_url`)
and speak the cluster protocol.
"""

from __future__ import annotations

import atexit
import contextlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import redis

from stampede import auth, paths, procs
from stampede.config import LabConfig, StrategyConfig
from stampede.errors import LabError, PortInUse, ProcessFailed, RedisNotFound
from stampede.origin import ensure_origin

__all__ = [
    "CLUSTER_NODE_TIMEOUT_MS",
    "REDIS_PLACES_ENV",
    "SINGLE_NODE",
    "Lab",
    "find_redis_server",
    "load_state",
    "pod_command",
    "pod_env",
    "redis_places",
    "save_state",
]

T = TypeVar("T")

INSTALL_REDIS = (
    "redis-server was not found (STAMPEDE_REDIS_SERVER, PATH, {places}). Install it: "
    "`sudo apt-get install redis-server` (Debian/Ubuntu), `brew install redis` (macOS), or run "
    "`make setup`, which does it for you. Without root: ask for `redis-server` in the image "
    "(a hub's admin; Binder's binder/apt.txt), or `conda install -c conda-forge redis-server`, "
    "or build it into ~/.local; then put it on PATH or set STAMPEDE_REDIS_SERVER to its path."
)
# Where redis-server usually is when PATH lacks it (a hub user's PATH often has no /usr/sbin).
REDIS_PLACES = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/opt/homebrew/bin", "~/.local/bin")
# Replaces the usual places (os.pathsep-separated; scripts/ensure-system.sh reads it too), so a
# test can show what a machine without redis-server gets while /usr/bin stays on PATH for the
# rest. Not a way to pick a binary: that is STAMPEDE_REDIS_SERVER.
REDIS_PLACES_ENV = "STAMPEDE_REDIS_PLACES"


def redis_places() -> list[str]:
    """Where :func:`find_redis_server` looks after PATH: ``STAMPEDE_REDIS_PLACES`` if set, else
    this environment's ``bin`` (a conda env's redis-server) and :data:`REDIS_PLACES`."""
    if chosen := os.environ.get(REDIS_PLACES_ENV):
        return [os.path.expanduser(p) for p in chosen.split(os.pathsep) if p]
    return [str(Path(sys.prefix) / "bin"), *(os.path.expanduser(p) for p in REDIS_PLACES)]


def find_redis_server() -> str:
    """The ``redis-server`` to start: ``STAMPEDE_REDIS_SERVER``, else PATH, else the usual places.

    Raises :class:`RedisNotFound` saying what to install, with and without root.
    """
    if chosen := os.environ.get("STAMPEDE_REDIS_SERVER"):
        if os.access(chosen, os.X_OK) and not os.path.isdir(chosen):
            return chosen
        raise RedisNotFound(f"STAMPEDE_REDIS_SERVER={chosen!r} is not an executable file")
    places = redis_places()
    found = shutil.which("redis-server") or shutil.which(
        "redis-server", path=os.pathsep.join(places)
    )
    if found is None:
        raise RedisNotFound(INSTALL_REDIS.format(places=", ".join(places)))
    return found


POD_START_TIMEOUT_S = 90.0


POD_APP = "stampede.pod:create_server"
# How long a pod keeps an idle keep-alive connection (uvicorn's default is 5 s). At low rates a
# load client's connection sat idle past 5 s, and a request sent as the pod closed it failed
# as a "protocol" error (chapter 7, 150 req/s). The generator retires a connection idle for
# ``stampede.load.IDLE_RETIRE_S`` (well under this) instead of racing the pod's close.
POD_KEEP_ALIVE_S = 30


def pod_command(port: int, host: str = "127.0.0.1", app: str = POD_APP) -> list[str]:
    """The pod's command line; the compose file runs the same one.

    ``app`` is the uvicorn factory: ``bench/cost.py`` starts its reference apps with exactly
    the pods' flags by naming its own.
    """
    return [
        sys.executable, "-m", "uvicorn", app, "--factory",
        "--host", host, "--port", str(port), "--no-access-log", "--log-level", "warning",
        "--loop", "uvloop", "--http", "httptools", "--no-proxy-headers",
        "--timeout-keep-alive", str(POD_KEEP_ALIVE_S),
    ]  # fmt: skip


def pod_env(
    name: str, redis_url: str, origin: Path, config: StrategyConfig, secret: str
) -> dict[str, str]:
    """The pod's environment (``STAMPEDE_*``), the contract the compose file follows too."""
    env = {
        "STAMPEDE_POD_NAME": name,
        "STAMPEDE_REDIS_URL": redis_url,
        "STAMPEDE_ORIGIN_PATH": str(origin),
        auth.SECRET_ENV: secret,
    }
    for field, value in config.model_dump(exclude_none=True).items():
        env[f"STAMPEDE_{field.upper()}"] = str(value)
    return env


class Lab:
    """Pods and Redis of one lab, started here or reached by URL."""

    kind = "embedded"  # which launcher's lab; part of a run's cache key (stampede.compose)

    def __init__(
        self,
        pods: Sequence[str],
        redis_url: str,
        processes: Sequence[procs.ManagedProcess] = (),
        *,
        secret: str | None = None,
    ) -> None:
        if not pods:
            raise LabError("a lab needs at least one pod URL")
        self.pods = list(pods)
        self.redis_url = redis_url
        self.secret = secret or None
        self.processes = list(processes)
        self.config: StrategyConfig | None = None
        self.log_dir: Path | None = None
        self._remove_logs = False
        self._http = httpx.Client(timeout=10)
        self._redis_spec: tuple[str, int, bool] | None = None  # server, port, owned
        self.redis_nodes = 1  # redis-server processes before the pods in ``processes``
        self._origin: Path | None = None
        self.dead: set[int] = set()  # indexes of pods killed by kill_pod and not restarted
        self.dead_redis: set[str] = set()  # cluster nodes killed by kill_redis_node
        self._spawner: ThreadPoolExecutor | None = None
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
        server = find_redis_server()
        if pod_ports is not None and len(pod_ports) != lab.pods:
            raise LabError(f"{len(pod_ports)} pod ports given for {lab.pods} pods")
        for port, what in [(redis_port, "redis")] + [(p, "pod") for p in pod_ports or ()]:
            if port is not None:
                procs.check_port(port, what)
        nodes = lab.redis_cluster * (1 + lab.redis_replicas)  # 0: one plain redis-server
        # Every port this lab picks, in one call, so no two are the same (free_port() in a row
        # can hand out one port twice) and none is a port the caller gave: a cluster takes a
        # client and a bus port per node, the first client port being redis_port.
        given = {p for p in (redis_port, *(pod_ports or ())) if p}
        wanted = int(not redis_port) + (0 if pod_ports else lab.pods) + max(0, 2 * nodes - 1)
        picked = iter([p for p in procs.free_ports(wanted + len(given)) if p not in given])
        redis_port = redis_port or next(picked)
        ports = list(pod_ports or [next(picked) for _ in range(lab.pods)])
        spare = list(picked)
        temporary_logs = log_dir is None
        log_dir = log_dir or Path(tempfile.mkdtemp(prefix="stampede-lab-"))
        origin = ensure_origin(paths.origin_path(), lab.origin_items)
        secret = auth.new_secret()
        started: list[procs.ManagedProcess] = []
        try:
            if lab.redis_cluster:
                node_ports = [redis_port, *(spare.pop() for _ in range(nodes - 1))]
                bus_ports = [spare.pop() for _ in range(nodes)]
                _start_cluster(
                    server, list(zip(node_ports, bus_ports, strict=True)), lab.redis_replicas,
                    log_dir, owned, secret, started,
                )  # fmt: skip
                redis_url = auth.cluster_url("127.0.0.1", redis_port, secret)
            else:
                started.append(_start_redis(server, redis_port, log_dir, owned, secret))
                redis_url = auth.redis_url("127.0.0.1", redis_port, secret)
            redis_count = len(started)
            for i, port in enumerate(ports, start=1):
                env = pod_env(f"pod-{i}", redis_url, origin, config, secret)
                started.append(
                    procs.start(
                        f"pod-{i}", pod_command(port), log_path=log_dir / f"pod-{i}.log",
                        env=env, owned=owned,
                    )
                )  # fmt: skip
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for proc, url in zip(started[redis_count:], urls, strict=True):
                _wait_pod(proc, url)
        except BaseException:
            for proc in reversed(started):
                proc.stop()
            raise
        instance = cls(urls, redis_url, started, secret=secret)
        instance.config = config
        instance.log_dir = log_dir
        instance._remove_logs = temporary_logs
        instance._redis_spec = (server, redis_port, owned)
        instance.redis_nodes = redis_count
        instance._origin = origin
        return instance

    @classmethod
    def attach(cls, pods: Sequence[str], redis_url: str, secret: str | None = None) -> Lab:
        """Reach a running lab (compose, ``stampede lab up``); ``stop()`` leaves it running.

        ``secret`` defaults to ``STAMPEDE_LAB_SECRET``. Without it the lab can read (``stats``,
        ``health``) but not :meth:`configure`: the pods refuse ``/admin`` and a Redis this
        process did not start is never flushed.
        """
        return cls(pods, redis_url, secret=secret or os.environ.get(auth.SECRET_ENV))

    @classmethod
    def from_env(cls) -> Lab:
        """Attach through ``STAMPEDE_POD_URLS`` (comma-separated), ``STAMPEDE_REDIS_URL`` (with
        the password, ``redis://:<secret>@host:port/0``) and ``STAMPEDE_LAB_SECRET``."""
        pods = [u.strip() for u in os.environ.get("STAMPEDE_POD_URLS", "").split(",") if u]
        redis_url = os.environ.get("STAMPEDE_REDIS_URL", "")
        if not pods or not redis_url:
            raise LabError("set STAMPEDE_POD_URLS and STAMPEDE_REDIS_URL to attach to a lab")
        return cls.attach(pods, redis_url)

    # ---- running ---------------------------------------------------------------------
    def configure(self, config: StrategyConfig) -> None:
        """Put every pod on ``config`` and flush Redis: a run never mixes two configurations.

        Refused (:class:`LabError`, nothing changed) without the lab secret, and for a Redis
        that does not prove it is this lab's: it must refuse a client without a password and
        accept the secret (:meth:`check_redis`). ``FLUSHALL`` never reaches anyone else's Redis.
        """
        self.check_redis()
        for url in self.pods:
            resp = self._admin(url, "config", config.model_dump())
            if resp.status_code != 200:
                raise LabError(f"pod {url} refused the configuration: {resp.text}")
        with self.redis() as client:
            client.flushall()
        self.config = config

    def reset(self) -> None:
        """Clear the pods' counters and origin logs (keeps the cache)."""
        for url in self.pods:
            resp = self._admin(url, "reset")
            if resp.status_code != 200:
                raise LabError(f"pod {url} refused the reset: {resp.text}")

    def check_redis(self) -> None:
        """Raise :class:`LabError` unless Redis is provably this lab's (before any ``FLUSHALL``).

        Proof: the lab has a secret (it started the Redis, or was named together with it),
        the Redis URL carries that secret as its password, a client without the password is
        refused, and ours is let in.
        """
        where = auth.redacted(self.redis_url)
        if self.secret is None:
            raise LabError(
                f"not configuring the lab at {where}: no lab secret. Set {auth.SECRET_ENV} to "
                "the secret of the lab that runs there (`stampede lab up --json` prints it); "
                "without it the pods refuse /admin and this lab flushes no Redis it did not start"
            )
        password = auth.url_password(self.redis_url)
        if password is None or not hmac.compare_digest(password.encode(), self.secret.encode()):
            raise LabError(
                f"not flushing {where}: its URL does not carry this lab's secret as the password "
                f"(expected redis://:<{auth.SECRET_ENV}>@host:port/0)"
            )
        anonymous = auth.anonymous(auth.client_url(self.redis_url))
        with redis.Redis.from_url(anonymous, socket_timeout=5) as client:
            try:
                client.ping()
            except redis.AuthenticationError:
                pass  # NOAUTH: it demands a password, as a lab's Redis does
            else:
                raise LabError(
                    f"not flushing {where}: it answers clients without a password, so it is "
                    "not a lab's Redis (those require the lab secret)"
                )
        with self.redis() as client:
            try:
                client.ping()
            except (redis.AuthenticationError, redis.ResponseError) as exc:
                raise LabError(
                    f"not flushing {where}: it refused this lab's secret ({exc})"
                ) from None

    def _admin(self, url: str, action: str, body: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.secret}"} if self.secret else {}
        return self._http.post(f"{url}/admin/{action}", json=body, headers=headers)

    def stats(self) -> list[dict[str, Any]]:
        """Each live pod's origin log and outcome counters for the current run.

        A pod killed by :meth:`kill_pod` is skipped: its log died with it. One that stopped
        answering otherwise (a container killed by hand mid-run) is a :class:`LabError` that
        names it: the run cannot be measured, and says so in one line, not a traceback.
        """
        stats = []
        for i, url in enumerate(self.pods):
            if i in self.dead:
                continue
            try:
                stats.append(self._http.get(f"{url}/stats").json())
            except (httpx.HTTPError, ValueError) as exc:
                raise LabError(
                    f"pod {url} did not answer /stats ({exc}): it stopped during the run, so "
                    "the run cannot be counted; start it again (compose: a fresh run does)"
                ) from None
        return stats

    def health(self) -> list[bool]:
        healthy = []
        for url in self.pods:
            try:
                healthy.append(self._http.get(f"{url}/health", timeout=2).status_code == 200)
            except httpx.HTTPError:
                healthy.append(False)
        return healthy

    @property
    def cluster(self) -> bool:
        """Whether the lab's cache is a Redis Cluster (its URL says so)."""
        return auth.is_cluster_url(self.redis_url)

    def redis(self) -> redis.Redis | redis.RedisCluster:
        """A client of the lab's cache; for a cluster, one that routes by slot.

        redis-py's cluster client sends ``FLUSHALL`` to every primary, but ``KEYS``, ``DBSIZE``
        and ``INFO`` to one node unless told (``target_nodes=RedisCluster.PRIMARIES``).
        """
        url = auth.client_url(self.redis_url)
        if self.cluster:
            return redis.RedisCluster.from_url(url, socket_timeout=5)
        return redis.Redis.from_url(url, socket_timeout=5)

    def commandstats(self) -> dict[str, int]:
        """Redis' per-command call counts (``INFO commandstats``) for coordination costs.

        For a cluster, the sum over its primaries (:meth:`commandstats_by_node` has each).
        """
        if self.cluster:
            total: dict[str, int] = {}
            for stats in self.commandstats_by_node().values():
                for name, calls in stats.items():
                    total[name] = total.get(name, 0) + calls
            return total
        with self.redis() as client:
            return _calls(client.info("commandstats"))

    def commandstats_by_node(self, *, replicas: bool = False) -> dict[str, dict[str, int]]:
        """Each primary's call counts by ``host:port`` (one, ``"redis"``, without a cluster).

        On a cluster this lab started, each node it started is asked directly: a node killed
        by :meth:`kill_redis_node` is left out (its counts died with it), a replica promoted
        since is a primary and counted (its counts include the writes it applied from its
        primary's replication stream while it was a replica). ``replicas=True`` adds the
        replicas, so a count taken before a failover has the node that will be promoted.
        """
        if not self.cluster:
            return {SINGLE_NODE: self.commandstats()}
        if not self.redis_node_names():  # attached: redis-py's map of the primaries
            with self.redis() as client:
                infos = client.info("commandstats", target_nodes=redis.RedisCluster.PRIMARIES)
            return {str(node): _calls(info) for node, info in sorted(infos.items())}
        found: dict[str, dict[str, int]] = {}
        for name in self.redis_node_names():
            if name in self.dead_redis:
                continue
            with self.node_client(name) as node:
                if replicas or node.info("replication")["role"] == "master":
                    found[name] = _calls(node.info("commandstats"))
        return found

    def redis_node_names(self) -> list[str]:
        """``host:port`` of every cluster node this lab started, killed ones included."""
        return [
            f"127.0.0.1:{p.name.removeprefix('redis-')}"
            for p in self.processes[: self.redis_nodes]
            if p.name.startswith("redis-") and p.name != "redis-server"
        ]

    def node_client(self, name: str) -> _NodeClient:
        """A plain client of one node ``host:port`` (no slot routing), with the lab's secret."""
        host, port = name.rsplit(":", 1)
        return redis.Redis(host=host, port=int(port), password=self.secret, socket_timeout=2)

    def primary_of(self, key: str) -> str:
        """Who serves ``key``'s slot now, asked of the live nodes this lab started.

        Unlike :meth:`node_of` (redis-py's map, which can name a dead primary until a
        ``MOVED`` corrects it), this reads ``CLUSTER SLOTS`` from a node that says
        ``cluster_state:ok``; ``""`` while none does (the slot has no primary yet).
        """
        names = [n for n in self.redis_node_names() if n not in self.dead_redis]
        if not names:
            return self.node_of(key)
        slot = redis.crc.key_slot(key.encode())
        for name in names:
            try:
                with self.node_client(name) as node:
                    if node.cluster("info")["cluster_state"] != "ok":
                        continue
                    for start, end, primary, *_ in node.execute_command("CLUSTER", "SLOTS"):
                        if start <= slot <= end:
                            return f"127.0.0.1:{primary[1]}"  # every node binds loopback
            except redis.RedisError:
                continue
        return ""

    def node_of(self, key: str) -> str:
        """The name :meth:`commandstats_by_node` gives the primary that serves ``key``."""
        if not self.cluster:
            return SINGLE_NODE
        with self.redis() as client:
            assert isinstance(client, redis.RedisCluster)
            node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
        if node is None:
            raise LabError(f"no node of the cluster serves {key}")
        return str(node.name)

    # ---- faults (embedded labs only) --------------------------------------------------
    def restart_redis(self, down_s: float) -> tuple[float, float]:
        """Stop ``redis-server`` by PID, wait ``down_s``, start it again on the same port.

        Returns the epoch seconds it went down (before SIGTERM) and came back (answering PING).
        The new server is empty: the lab runs Redis without persistence, as a cache.
        """
        if self._redis_spec is None or self.log_dir is None:
            raise LabError("restart_redis needs an embedded lab (this one is attached)")
        if self.cluster:
            raise LabError("restart_redis restarts one redis-server; this lab runs a cluster")
        server, port, owned = self._redis_spec
        assert self.secret is not None  # an embedded lab always has one
        down = time.time()
        self.processes[0].stop()
        time.sleep(down_s)
        self.processes[0] = self._spawn(
            _start_redis, server, port, self.log_dir, owned, self.secret
        )
        return down, time.time()

    def kill_pod(self, index: int) -> float:
        """SIGKILL pod ``index`` (0-based) by PID; returns the epoch second it was reaped.

        Timed after the reap, not before the signal: a request sent between the two can still
        be answered by the dying process, and the timeline must not call that pod down yet.
        """
        proc = self._pod_process(index)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.popen.wait()
        self.dead.add(index)
        return time.time()

    def start_pod(self, index: int) -> float:
        """Start pod ``index`` again on its port with the current configuration; wait for it."""
        proc = self._pod_process(index)
        if proc.alive():
            raise LabError(f"pod {index} is still running (PID {proc.pid})")
        assert self._redis_spec is not None and self._origin is not None and self.log_dir
        assert self.secret is not None
        config = self.config or StrategyConfig()
        name = f"pod-{index + 1}"
        port = int(self.pods[index].rsplit(":", 1)[1])
        new = self._spawn(
            procs.start, name, pod_command(port), log_path=self.log_dir / f"{name}.restarted.log",
            env=pod_env(name, self.redis_url, self._origin, config, self.secret),
            owned=self._redis_spec[2],
        )  # fmt: skip
        self.processes[self.redis_nodes + index] = new
        _wait_pod(new, self.pods[index])
        self.dead.discard(index)
        return time.time()

    def kill_redis_node(self, node: str) -> float:
        """SIGKILL the cluster node ``host:port`` (a name :meth:`node_of` gives) by PID.

        Returns the epoch second it was reaped. Its replica, if it has one, is promoted by
        the cluster after ``cluster-node-timeout`` (:data:`CLUSTER_NODE_TIMEOUT_MS`); the lab
        does not restart it (``stop()`` copes with the dead process).
        """
        port = node.rsplit(":", 1)[-1]
        found = [p for p in self.processes[: self.redis_nodes] if p.name == f"redis-{port}"]
        if not self.cluster or not found:
            raise LabError(f"no cluster node {node} started by this lab")
        with contextlib.suppress(ProcessLookupError):
            os.kill(found[0].pid, signal.SIGKILL)
        found[0].popen.wait()
        self.dead_redis.add(node)
        return time.time()

    def _spawn(self, start: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Start a process from the lab's own long-lived thread.

        ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits, so a process
        restarted from the fault thread would be killed as soon as that thread ends; this one
        lives until :meth:`stop`.
        """
        if self._spawner is None:
            self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lab-spawner")
        return self._spawner.submit(start, *args, **kwargs).result()

    def _pod_process(self, index: int) -> procs.ManagedProcess:
        if self._redis_spec is None or not 0 <= index < len(self.pods):
            raise LabError(f"no embedded pod {index}; valid: 0..{len(self.pods) - 1}")
        return self.processes[self.redis_nodes + index]

    # ---- stopping --------------------------------------------------------------------
    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        """Stop the processes this lab started (pods first, then Redis); idempotent."""
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        if self._spawner is not None:
            self._spawner.shutdown()
            self._spawner = None
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
        """What ``stampede lab up`` records: URLs, the secret, each PID with its start time."""
        return {
            "pods": self.pods,
            "redis": self.redis_url,
            "secret": self.secret,
            "pids": self.pids,
            "processes": [
                {"name": p.name, "pid": p.pid, "start_ticks": p.start_ticks} for p in self.processes
            ],
        }

    def __repr__(self) -> str:
        return f"Lab(pods={self.pods}, redis={auth.redacted(self.redis_url)!r})"


_NodeClient = redis.Redis  # inside Lab, `redis` names its method
SINGLE_NODE = "redis"  # the one node of a lab without a cluster, in per-node figures


def _calls(info: dict[str, Any]) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def _start_redis(
    server: str,
    port: int,
    log_dir: Path,
    owned: bool,
    secret: str,
    *,
    cluster_port: int | None = None,
) -> procs.ManagedProcess:
    """One ``redis-server``; a cluster node, its bus on ``cluster_port``, when that is given."""
    # "-": the rest of the configuration comes from stdin, so the password never shows in `ps`
    args = [
        server, "-", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--daemonize", "no", "--dir", str(log_dir), "--loglevel", "notice",
    ]  # fmt: skip
    config = f"requirepass {secret}\n"
    name, log_name = "redis-server", "redis.log"
    if (
        cluster_port is not None
    ):  # masterauth: a replica authenticates to its primary with the same secret
        args += [
            "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
            # the bus on a free port of its own: its default, port + 10000, may be taken or
            # beyond 65535 for the high ports free_port() hands out
            "--cluster-port", str(cluster_port),
            "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
            # a replica takes over however long ago it last heard its primary: a cache
            # prefers a primary to a perfect copy, and on this machine the replicas' data
            # age check refused every failover ("Disconnected from master for longer than
            # allowed") seconds after the kill
            "--cluster-replica-validity-factor", "0",
        ]  # fmt: skip
        config += f"masterauth {secret}\n"
        name, log_name = f"redis-{port}", f"redis-{port}.log"
    log_dir.mkdir(parents=True, exist_ok=True)
    proc = procs.start(
        name, args, log_path=log_dir / log_name, owned=owned, stdin_data=config.encode()
    )

    def ping() -> bool:
        """Ready once *our* server answers: our password accepted, our PID in ``INFO``."""
        with redis.Redis(
            port=port, password=secret, socket_timeout=0.5, socket_connect_timeout=0.5
        ) as client:
            try:
                pid = int(client.info("server")["process_id"])
            except (redis.AuthenticationError, redis.ResponseError) as exc:
                # caught before ConnectionError (AuthenticationError is one): refused or not
                # listening yet means "wait", an answer that is not ours means someone else
                raise PortInUse(
                    f"port {port} on 127.0.0.1 (redis) is answered by another Redis, which "
                    f"refused this lab's password ({exc}); nothing was flushed"
                ) from None
        if pid != proc.pid:
            raise PortInUse(
                f"port {port} on 127.0.0.1 (redis) is answered by another Redis (PID {pid}, "
                f"we started {proc.pid}); nothing was flushed"
            )
        return True

    try:
        proc.wait_ready(ping)
    except PortInUse:
        proc.stop()
        raise
    except ProcessFailed as exc:
        proc.stop()
        if "Address already in use" in str(exc):
            raise PortInUse(f"port {port} on 127.0.0.1 (redis) is already in use") from None
        raise
    return proc


# How long a primary may be silent before its replica takes over (Redis' default is 15 s):
# short, so a failover in a test or a chapter is over in a few seconds, yet far above the
# few milliseconds a busy loopback node takes to answer the cluster bus.
CLUSTER_NODE_TIMEOUT_MS = 2000
CLUSTER_READY_TIMEOUT_S = 60.0


def _start_cluster(
    server: str,
    ports: Sequence[tuple[int, int]],
    replicas: int,
    log_dir: Path,
    owned: bool,
    secret: str,
    started: list[procs.ManagedProcess],
) -> None:
    """Start one cluster node per (client, bus) port pair (appended to ``started`` as each
    is up), and join them.

    ``started`` is the caller's list so that a failure half-way stops the nodes already up.
    """
    for port, bus in ports:
        started.append(_start_redis(server, port, log_dir, owned, secret, cluster_port=bus))
    cli = shutil.which("redis-cli", path=str(Path(server).parent)) or shutil.which("redis-cli")
    if cli is None:
        raise RedisNotFound(
            f"redis-cli (to create the cluster) is not next to {server} nor on PATH"
        )
    command = [
        cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p, _ in ports),
        "--cluster-replicas", str(replicas), "--cluster-yes",
    ]  # fmt: skip
    env = {**os.environ, "REDISCLI_AUTH": secret}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0 or "[OK] All 16384 slots covered" not in done.stdout:
        raise ProcessFailed(f"redis-cli --cluster create failed: {done.stdout[-500:]}{done.stderr}")
    deadline = time.monotonic() + CLUSTER_READY_TIMEOUT_S
    waiting = [port for port, _ in ports]
    while waiting:
        waiting = [p for p in waiting if not _cluster_node_ok(p, secret, len(ports))]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise ProcessFailed(
                f"cluster nodes {waiting} not cluster_state:ok with {len(ports)} known nodes "
                f"after {CLUSTER_READY_TIMEOUT_S:g} s"
            )
        time.sleep(0.1)


def _cluster_node_ok(port: int, secret: str, nodes: int) -> bool:
    """This node serves: ``cluster_state:ok``, all 16384 slots ok, every node known to it."""
    with redis.Redis(port=port, password=secret, socket_timeout=1) as client:
        info = client.cluster("info")
    return (
        info.get("cluster_state") == "ok"
        and int(info.get("cluster_slots_ok", 0)) == 16384
        and int(info.get("cluster_known_nodes", 0)) == nodes
    )


def _wait_pod(proc: procs.ManagedProcess, url: str) -> None:
    def healthy() -> bool:
        """Ready once *our* pod answers: any other answer on the port is a foreign listener.

        uvicorn accepts no connection before the app has started, so an HTTP answer that is
        not a 200 carrying our PID came from whoever took the port after ``free_port()``.
        """
        resp = httpx.get(f"{url}/health", timeout=0.5)
        pid = None
        with contextlib.suppress(ValueError, AttributeError):
            pid = resp.json().get("pid")
        if resp.status_code == 200 and pid == proc.pid:
            return True
        raise PortInUse(
            f"{url} is answered by another process (/health: HTTP {resp.status_code}, PID "
            f"{pid!r}; we started PID {proc.pid}): the port was taken after it was picked; "
            "nothing was configured"
        )

    try:
        # A pod imports FastAPI, pydantic and redis-py, not pandas or altair (~1.3 s of CPU;
        # its strategy is imported on the first /admin/config); a busy 2-core machine can
        # still stretch a start to tens of seconds, hence the generous deadline.
        proc.wait_ready(healthy, timeout_s=POD_START_TIMEOUT_S)
    except ProcessFailed as exc:
        if "address already in use" in str(exc).lower():
            raise PortInUse(f"{url} is already in use; pick another port") from None
        raise


def save_state(lab: Lab, path: Path) -> None:
    """Write :meth:`Lab.describe` to ``path``, readable by this user only (it holds the secret)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file may have been created with wider permissions
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(lab.describe(), indent=2))


def load_state(path: Path) -> dict[str, Any] | None:
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        state: dict[str, Any] = json.loads(path.read_text())
        return state
    return None
