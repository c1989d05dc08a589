"""The lab as containers: ``lab_env/docker-compose.yml`` (or its Swarm stack) started for a run.

    run("naive", lab="compose")       or STAMPEDE_LAB=compose, or ``stampede lab up --compose``
    run("naive", lab="swarm")         the same pods as one Swarm service behind the routing mesh

:func:`start_lab` is the runner's one entry: ``"embedded"`` (the default) starts processes
(:meth:`Lab.embedded`), ``"compose"`` builds and starts the compose project
(:meth:`ComposeLab.up`), ``"swarm"`` deploys the stack (:meth:`SwarmLab.up`). Each container lab
gets a unique project name, free 127.0.0.1 ports and a fresh secret (``STAMPEDE_LAB_SECRET``:
the pods' ``/admin`` bearer token and Redis' ``requirepass``; every request to a pod carries
it), waits for every health check, and on :meth:`~ComposeLab.stop` (the end of the run, an
exception, Ctrl-C, interpreter exit) removes its containers, networks and volumes. The images
stay, as the build cache.

Redis is not published to the host, so the runner's two Redis calls (``FLUSHALL`` before a run,
``INFO commandstats`` around it) go through ``docker exec ... redis-cli`` in the Redis container,
which has the password in its environment. Works with ``docker compose`` (v2) and
``docker-compose`` (v1), whichever answers, and says so when neither does or the engine is down.

What it does not do: faults (``faults=[...]`` need PIDs to signal: embedded lab only), other
than three pods under compose (the file names three; Swarm takes ``pods=N`` as replicas), or
pulling images: a machine without a registry makes stand-ins first
(``scripts/make-standin-images.sh``, then ``PYTHON_IMAGE``/``REDIS_IMAGE`` in the environment).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from stampede import paths, procs
from stampede.config import LabConfig, StrategyConfig
from stampede.errors import ConfigError, LabError
from stampede.lab import Lab
from stampede.origin import ensure_origin

__all__ = [
    "LAUNCHERS",
    "ComposeLab",
    "SwarmLab",
    "attached_lab",
    "check_engine",
    "check_shape",
    "compose_command",
    "launcher_name",
    "start_lab",
]

LAUNCHERS = ("embedded", "compose", "swarm")
LAB_ENV = Path(__file__).resolve().parents[2] / "lab_env"
UP_TIMEOUT_S = 240.0  # a cold start on a busy 2-core machine; a first build is not counted
BUILD_TIMEOUT_S = 1800.0  # the first build downloads and installs every pinned package
DOWN_TIMEOUT_S = 120.0
NO_COMPOSE = (
    "neither `docker compose` (v2) nor `docker-compose` (v1) is installed: install Docker's "
    "compose plugin (docs.docker.com/compose/install) or `apt-get install docker-compose`; "
    "STAMPEDE_COMPOSE names another command"
)


def launcher_name(lab: str | None) -> str:
    """``lab`` or ``STAMPEDE_LAB`` or ``"embedded"``, checked against :data:`LAUNCHERS`."""
    name = lab or os.environ.get("STAMPEDE_LAB") or "embedded"
    if name not in LAUNCHERS:
        raise ConfigError(f"unknown lab {name!r}; valid: {', '.join(LAUNCHERS)}")
    return name


def attached_lab(lab: str | None) -> Lab | None:
    """The running lab a run uses instead of starting one, or ``None`` (start one).

    In the compose JupyterLab service (``STAMPEDE_COMPOSE_ATTACHED=1``) a run without a lab or
    with ``lab="compose"`` uses the notebook's own stack, its neighbours on the compose network:
    starting another would need an engine inside the container. Its kind is ``"compose"``, and
    its Redis answers directly, so the run key's Redis version comes from that Redis, not from a
    ``redis-server`` binary the public Python image does not have. Elsewhere, a run without a
    lab attaches to the one ``STAMPEDE_POD_URLS`` names (``make lab``; an embedded lab). An
    explicit ``lab="compose"`` or ``"swarm"`` on the host always starts its own.
    """
    if os.environ.get("STAMPEDE_COMPOSE_ATTACHED") == "1" and lab in (None, "compose"):
        neighbours = Lab.from_env()
        neighbours.kind = "compose"
        return neighbours
    if lab is None and os.environ.get("STAMPEDE_POD_URLS"):
        return Lab.from_env()
    return None


def check_shape(name: str | None, lab: LabConfig) -> None:
    """Refuse (:class:`ConfigError`) what the named launcher cannot run, before any wait.

    ``run()`` calls it before it queues for the run lock: a bad parameter is one line at once,
    not one line after another run has finished.
    """
    name = launcher_name(name)
    if name != "embedded":
        (ComposeLab if name == "compose" else SwarmLab)._check_shape(lab)


def start_lab(name: str | None, lab: LabConfig, config: StrategyConfig) -> Lab:
    """The lab a run starts for itself and stops after it (:func:`launcher_name` picks)."""
    name = launcher_name(name)
    if name == "embedded":
        return Lab.embedded(lab, config=config)
    if name == "compose":
        return ComposeLab.up(lab, config=config)
    return SwarmLab.up(lab, config=config)


# ---- the engine and the compose command --------------------------------------------------
def check_engine() -> None:
    """Raise :class:`LabError` unless the ``docker`` command reaches a running engine."""
    if shutil.which("docker") is None:
        raise LabError(
            "the docker command is not installed (Debian/Ubuntu: apt-get install docker.io; "
            "elsewhere: docs.docker.com/engine/install)"
        )
    info = _quiet(["docker", "info", "--format", "{{.ServerVersion}}"])
    if info.returncode != 0 or not info.stdout.strip():
        said = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        raise LabError(
            f"the Docker engine is not running ({said}); start it (`sudo systemctl start "
            "docker`, or `sudo dockerd &`) and try again"
        )


def compose_command() -> list[str]:
    """``docker compose`` if the v2 plugin answers, else ``docker-compose`` (v1).

    ``STAMPEDE_COMPOSE`` (e.g. ``docker-compose``) picks one explicitly.
    """
    forced = os.environ.get("STAMPEDE_COMPOSE")
    candidates = [forced.split()] if forced else [["docker", "compose"], ["docker-compose"]]
    for command in candidates:
        if shutil.which(command[0]) and _quiet([*command, "version"]).returncode == 0:
            return command
    raise LabError(NO_COMPOSE if not forced else f"STAMPEDE_COMPOSE={forced!r} does not run")


def _quiet(args: Sequence[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout_s,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(list(args), 1, "", str(exc))


def _checked(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    timeout_s: float = 120.0,
    log: Path | None = None,
) -> str:
    """Run a docker command; its output, or :class:`LabError` with the last lines it printed.

    The child runs in its own session: a terminal's Ctrl-C reaches only this process, which
    then tears the lab down in order instead of leaving a half-stopped compose behind.
    """
    try:
        done = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout_s, input=input_text,
            env=dict(env) if env is not None else None, start_new_session=True,
            stdin=None if input_text is not None else subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise LabError(
            f"`{' '.join(args[:4])} ...` did not finish within {timeout_s:g} s"
        ) from None
    if log is not None:
        with log.open("a") as fh:
            fh.write(f"$ {' '.join(args)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise LabError(f"`{' '.join(args)}` failed with code {done.returncode}:\n{tail}")
    return done.stdout


def _to_the_end(args: Sequence[str], env: Mapping[str, str], timeout_s: float) -> int:
    """Run a tear-down command to completion even if Ctrl-C arrives meanwhile; then re-raise."""
    child = subprocess.Popen(
        list(args), env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    interrupted = False
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            child.communicate(timeout=max(0.1, deadline - time.monotonic()))
            break
        except KeyboardInterrupt:
            interrupted = True
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            break
    if interrupted:
        raise KeyboardInterrupt
    return child.returncode


def _pip_cert() -> Path | None:
    """The certificate this machine's pip uses to reach the index (``PIP_CERT``, pip config)."""
    named = os.environ.get("PIP_CERT")
    if not named:
        got = _quiet([sys.executable, "-m", "pip", "config", "get", "global.cert"])
        named = got.stdout.strip() if got.returncode == 0 else ""
    return Path(named) if named and Path(named).is_file() else None


def _stage_pip_settings() -> None:
    """Give the image's build stage the pip certificate, if this machine's pip has one.

    ``lab_env/pip/`` is copied into the build stage only (``lab_env/Dockerfile``); the image
    keeps just the virtualenv. The file is git-ignored and left in place for the next build.
    """
    cert = _pip_cert()
    target = LAB_ENV / "pip" / "ca.crt"
    stale = not target.exists() or cert is None or target.read_bytes() != cert.read_bytes()
    if cert is not None and target.parent.is_dir() and stale:
        shutil.copyfile(cert, target)


def _authorize(lab: Lab, secret: str) -> None:
    """Every request of ``lab`` to a pod carries the lab's secret (``/admin/*`` needs it)."""
    if secret:
        lab._http.headers["Authorization"] = f"Bearer {secret}"


def _containers(label: str, value: str, service: str | None = None) -> list[str]:
    args = ["docker", "ps", "-aq", "--no-trunc", "--filter", f"label={label}={value}"]
    if service is not None:
        args += ["--filter", f"label={_service_label(label)}={service}"]
    return _checked(args).split()


def _service_label(project_label: str) -> str:
    if project_label.startswith("com.docker.compose"):
        return "com.docker.compose.service"
    return "com.docker.swarm.service.name"


# ---- the compose lab ---------------------------------------------------------------------
class ComposeLab(Lab):
    """The compose project of one run: pods on 127.0.0.1 ports, Redis on its network only.

    ``stop()`` runs ``down --volumes --remove-orphans``: nothing of the project remains but
    its images. Built by :meth:`up`; :meth:`from_state` reaches one ``lab up --compose`` left.
    """

    kind = "compose"
    project_label = "com.docker.compose.project"

    def __init__(
        self,
        pods: Sequence[str],
        redis_url: str,
        *,
        project: str,
        command: Sequence[str],
        env: Mapping[str, str],
        log_dir: Path | None = None,
    ) -> None:
        super().__init__(pods, redis_url, secret=env.get("STAMPEDE_LAB_SECRET") or None)
        self.project = project
        self.command = list(command)
        self.env = dict(env)
        self.log_dir = log_dir
        self._running = True
        _authorize(self, self.env.get("STAMPEDE_LAB_SECRET", ""))
        atexit.register(self.stop)

    # ---- starting ----------------------------------------------------------------------
    @classmethod
    def up(
        cls,
        lab: LabConfig | None = None,
        *,
        config: StrategyConfig | None = None,
        project: str | None = None,
        jupyter: bool = False,
    ) -> ComposeLab:
        """Build the images, start the project, wait until every health check passes."""
        lab = lab or LabConfig()
        config = config or StrategyConfig()
        cls._check_shape(lab)
        check_engine()
        command = compose_command() if cls.kind == "compose" else ["docker"]
        env, ports = cls._environment(lab, config, project)
        log_dir = Path(tempfile.mkdtemp(prefix=f"{env['STAMPEDE_COMPOSE_PROJECT']}-"))
        try:
            instance = cls._started(command, env, ports, log_dir, jupyter)
        except BaseException:  # refused before there was a lab to stop (e.g. not in a swarm)
            shutil.rmtree(log_dir, ignore_errors=True)
            raise
        instance.config = config
        return instance

    @classmethod
    def _check_shape(cls, lab: LabConfig) -> None:
        if lab.redis_cluster:
            raise ConfigError(
                f"the {cls.kind} lab runs one Redis; redis_cluster={lab.redis_cluster} needs "
                "the embedded lab"
            )
        if lab.faults:
            raise ConfigError(
                f"faults need an embedded lab (PIDs to signal); the {cls.kind} lab is broken by "
                "hand (lab_env/README.md): docker kill, docker restart"
            )
        if lab.pods != 3:
            raise ConfigError(
                f"the compose lab has 3 pods (lab_env/docker-compose.yml), not pods={lab.pods}; "
                "lab='swarm' runs any number of replicas"
            )

    @classmethod
    def _environment(
        cls, lab: LabConfig, config: StrategyConfig, project: str | None
    ) -> tuple[dict[str, str], list[int]]:
        origin = ensure_origin(paths.origin_path(), lab.origin_items)
        name = project or os.environ.get("STAMPEDE_COMPOSE_PROJECT")
        name = name or f"stampede-{secrets.token_hex(4)}"
        ports = [0, *procs.free_ports(3 + 1)]  # (unused), three pods, jupyter
        env = {
            **os.environ,
            "STAMPEDE_COMPOSE_PROJECT": name,
            "STAMPEDE_LAB_SECRET": secrets.token_urlsafe(24),
            "STAMPEDE_DATA_DIR": str(origin.parent),
            "STAMPEDE_STRATEGY": config.strategy,
            "STAMPEDE_TTL_S": str(config.ttl_s),
            "STAMPEDE_ORIGIN_LATENCY_MS": str(config.origin_latency_ms),
            "STAMPEDE_REPLICAS": str(lab.pods),
            "JUPYTER_PORT": str(ports[4]),
            "JUPYTER_TOKEN": secrets.token_urlsafe(24),
            **{f"STAMPEDE_POD{i}_PORT": str(ports[i]) for i in (1, 2, 3)},
        }
        env.setdefault("PYTHON_IMAGE", _dotenv().get("PYTHON_IMAGE", "python:3.11-slim"))
        env.setdefault("REDIS_IMAGE", _dotenv().get("REDIS_IMAGE", "redis:7-alpine"))
        return env, ports

    @classmethod
    def _started(
        cls,
        command: list[str],
        env: dict[str, str],
        ports: list[int],
        log_dir: Path,
        jupyter: bool,
    ) -> ComposeLab:
        project = env["STAMPEDE_COMPOSE_PROJECT"]
        base = [*command, "-p", project, "-f", str(_compose_file())]
        profile = ["--profile", "jupyter"] if jupyter else []
        pods = [f"http://127.0.0.1:{port}" for port in ports[1:4]]
        instance = cls(pods, f"redis://redis:6379/0 (project {project})", project=project,
                       command=command, env=env, log_dir=log_dir)  # fmt: skip
        try:
            _stage_pip_settings()
            log = log_dir / "compose.log"
            services = ["pod-1", *(["jupyter"] if jupyter else [])]  # pod-2/3: the same image
            _checked([*base, *profile, "build", *services], env=env, timeout_s=BUILD_TIMEOUT_S,
                     log=log)  # fmt: skip
            _checked([*base, *profile, "up", "-d", "--no-build"], env=env,
                     timeout_s=UP_TIMEOUT_S, log=log)  # fmt: skip
            instance._await_healthy(4 + jupyter)
        except BaseException:
            instance.stop()
            raise
        return instance

    def _await_healthy(self, expected: int, timeout_s: float = UP_TIMEOUT_S) -> None:
        """Poll ``docker inspect`` until ``expected`` containers are healthy; fail on a dead one."""
        deadline = time.monotonic() + timeout_s
        state: dict[str, str] = {}
        while time.monotonic() < deadline:
            state = self._health()
            bad = {n: s for n, s in state.items() if s in {"exited", "dead", "unhealthy"}}
            if bad and self.kind == "compose":
                raise LabError(f"{self.project}: {bad}; last lines:\n{self._logs(list(bad))}")
            if len(state) >= expected and all(s == "healthy" for s in state.values()):
                return
            time.sleep(0.5)
        raise LabError(
            f"{self.project} was not healthy within {timeout_s:g} s: {state}; last lines:\n"
            f"{self._logs([n for n, s in state.items() if s != 'healthy'])}"
        )

    def _health(self) -> dict[str, str]:
        ids = _containers(self.project_label, self.project)
        if not ids:
            return {}
        fmt = "{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"
        out = _checked(["docker", "inspect", "--format", fmt, *ids])
        state = {}
        for line in out.splitlines():
            name, status, *health = line.split()
            if self.kind == "swarm" and status != "running":
                continue  # a replaced task's container; Swarm starts another
            state[name.lstrip("/")] = health[0] if status == "running" and health else status
        return state

    def _logs(self, names: Sequence[str]) -> str:
        parts = []
        for name in names[:3]:
            got = _quiet(["docker", "logs", "--tail", "15", name])
            parts.append(f"--- {name}\n{(got.stdout + got.stderr).strip()}")
        return "\n".join(parts)

    # ---- what the runner calls ---------------------------------------------------------
    def configure(self, config: StrategyConfig) -> None:
        """Every pod on ``config`` (``/admin/config``), then ``FLUSHALL`` on the lab's Redis.

        :meth:`Lab.configure` does the same through a Redis client; this Redis is not
        published, so the flush goes through ``redis-cli`` inside its container.
        """
        for url in self.pods:
            resp = self._http.post(f"{url}/admin/config", json=config.model_dump())
            if resp.status_code != 200:
                raise LabError(f"pod {url} refused the configuration: {resp.text}")
        self.redis_cli("FLUSHALL")
        self.config = config

    def commandstats(self) -> dict[str, int]:
        """``INFO commandstats`` read by ``redis-cli`` in the Redis container."""
        counts = {}
        for line in self.redis_cli("INFO", "commandstats").splitlines():
            name, sep, fields = line.strip().partition(":")
            if sep and name.startswith("cmdstat_"):
                calls = dict(f.split("=", 1) for f in fields.split(","))["calls"]
                counts[name.removeprefix("cmdstat_")] = int(calls)
        return counts

    def redis(self) -> NoReturn:
        raise LabError(
            f"the {self.kind} lab's Redis is not published to the host; use redis_cli(...) "
            "or a notebook in the compose JupyterLab service"
        )

    def redis_cli(self, *args: str) -> str:
        """``redis-cli ARGS`` in the lab's Redis container (its password is in its environment)."""
        (container, *_) = _containers(self.project_label, self.project, "redis") or [""]
        if not container:
            raise LabError(f"{self.project} has no Redis container")
        return _checked(["docker", "exec", container, "redis-cli", *args])

    # ---- stopping ----------------------------------------------------------------------
    def stop(self) -> None:
        """Take the project down (containers, networks, anonymous volumes); idempotent."""
        if self._running:
            self._running = False
            code = _to_the_end(self._down_command(), self.env, DOWN_TIMEOUT_S)
            if code != 0:
                print(f"stampede: taking {self.project} down exited {code}", file=sys.stderr)
            if self.log_dir is not None:
                shutil.rmtree(self.log_dir, ignore_errors=True)
        super().stop()

    def _down_command(self) -> list[str]:
        return [*self.command, "-p", self.project, "-f", str(_compose_file()), "--profile",
                "jupyter", "down", "--volumes", "--remove-orphans", "--timeout", "5"]  # fmt: skip

    def detach(self) -> None:
        """Leave the project running (``stampede lab up --compose``); ``lab down`` ends it."""
        self._running = False

    def describe(self) -> dict[str, Any]:
        keep = {k: v for k, v in self.env.items() if k.startswith(("STAMPEDE_", "JUPYTER_"))}
        keep |= {k: self.env[k] for k in ("PYTHON_IMAGE", "REDIS_IMAGE") if k in self.env}
        return {"pods": self.pods, "redis": self.redis_url, "pids": [], "kind": self.kind,
                "project": self.project, "command": self.command, "env": keep,
                "log_dir": str(self.log_dir) if self.log_dir else None}  # fmt: skip

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ComposeLab:
        """The lab ``stampede lab up --compose`` (or ``--swarm``) recorded in its state file."""
        lab_class = SwarmLab if state.get("kind") == "swarm" else ComposeLab
        logs = Path(state["log_dir"]) if state.get("log_dir") else None  # `lab down` removes it
        return lab_class(state["pods"], state["redis"], project=state["project"],
                         command=state["command"], env={**os.environ, **state["env"]},
                         log_dir=logs)  # fmt: skip


# ---- the Swarm stack ---------------------------------------------------------------------
class SwarmLab(ComposeLab):
    """``lab_env/docker-stack.yml`` deployed with ``docker stack deploy``: one ``pods`` service
    of ``pods`` replicas, Redis on the stack's overlay network only.

    Each task publishes its port on its node in ``host`` mode (a port the engine picks), and the
    runner sends the load round robin over the tasks' URLs, as it does over the compose pods.
    The routing mesh (``mode: ingress``, one port spread over the tasks) needs the kernel's IPVS,
    which the machine the tests run on does not have (no ``/proc/sys/net/ipv4/vs``; measured),
    and it would balance connections, not requests. Redis is not published, so ``FLUSHALL`` and
    ``INFO commandstats`` run in a one-shot container on the stack's (attachable) network.
    """

    kind = "swarm"
    project_label = "com.docker.stack.namespace"

    @classmethod
    def _check_shape(cls, lab: LabConfig) -> None:
        if lab.faults or lab.redis_cluster:
            super()._check_shape(lab)

    @classmethod
    def _started(
        cls,
        command: list[str],
        env: dict[str, str],
        ports: list[int],
        log_dir: Path,
        jupyter: bool,
    ) -> ComposeLab:
        if jupyter:
            raise ConfigError("the JupyterLab service is a compose profile; use --compose")
        _swarm_active()
        project = env["STAMPEDE_COMPOSE_PROJECT"]
        env["STAMPEDE_REDIS_URL"] = f"redis://:{env['STAMPEDE_LAB_SECRET']}@redis:6379/0"
        instance = cls(["http://127.0.0.1:0"], f"redis://redis:6379/0 (stack {project})",
                       project=project, command=command, env=env, log_dir=log_dir)  # fmt: skip
        try:
            _stage_pip_settings()
            log = log_dir / "stack.log"
            # `stack deploy` does not build: the compose file builds the same image first
            compose = [*compose_command(), "-p", project, "-f", str(_compose_file())]
            _checked([*compose, "build", "pod-1"], env=env, timeout_s=BUILD_TIMEOUT_S, log=log)
            stack = str(_compose_file().parent / "docker-stack.yml")
            # --resolve-image never: the images are local, no registry is asked for a digest
            _checked(["docker", "stack", "deploy", "--resolve-image", "never", "-c", stack,
                      project], env=env, timeout_s=UP_TIMEOUT_S, log=log)  # fmt: skip
            instance._await_healthy(1 + int(env["STAMPEDE_REPLICAS"]))
            instance.pods = instance._task_urls()
        except BaseException:
            instance.stop()
            raise
        return instance

    def _task_urls(self) -> list[str]:
        """``http://<node>:<port>`` of every running pod task (127.0.0.1 for this node's)."""
        service = f"{self.project}_pods"
        tasks = _checked(["docker", "service", "ps", "-q", "--filter", "desired-state=running",
                          service]).split()  # fmt: skip
        here = _checked(["docker", "info", "--format", "{{.Swarm.NodeID}}"]).strip()
        fmt = "{{.NodeID}} {{range .Status.PortStatus.Ports}}{{.PublishedPort}} {{end}}"
        urls = []
        for line in _checked(["docker", "inspect", "--format", fmt, *tasks]).splitlines():
            node, port, *_ = line.split()
            host = "127.0.0.1"
            if node != here:
                fmt_addr = "{{.Status.Addr}}"
                host = _checked(["docker", "node", "inspect", "--format", fmt_addr, node]).strip()
            urls.append(f"http://{host}:{port}")
        wanted = int(self.env["STAMPEDE_REPLICAS"])
        if len(urls) != wanted:
            raise LabError(f"{service}: {len(urls)} running tasks publish a port, not {wanted}")
        return sorted(urls)

    def _control(self, *args: str) -> Any:
        """A Redis call from a container on the stack's network; its JSON answer."""
        out = _checked(
            ["docker", "run", "--rm", "--network", f"{self.project}_lab",
             "--label", f"{self.project_label}={self.project}", "-e", "STAMPEDE_REDIS_URL",
             "--entrypoint", "python", "stampede-lab:latest", "-c", _CONTROL, *args],
            env=self.env,
        )  # fmt: skip
        return json.loads(out)

    def redis_cli(self, *args: str) -> str:
        """``FLUSHALL`` or ``INFO commandstats`` (all the runner needs), as redis-cli prints it."""
        if [a.lower() for a in args] == ["flushall"]:
            return str(self._control("flushall"))
        if [a.lower() for a in args] == ["info", "commandstats"]:
            counts = self._control("commandstats")
            return "\n".join(f"cmdstat_{k}:calls={v}" for k, v in counts.items())
        raise LabError(f"the swarm lab's Redis answers FLUSHALL and INFO commandstats, not {args}")

    def _down_command(self) -> list[str]:
        return ["docker", "stack", "rm", self.project]

    def stop(self) -> None:
        """``docker stack rm``, wait until its containers and network are gone, then remove
        the tasks' anonymous volumes (``stack rm`` leaves them, unlike ``compose down -v``)."""
        volumes: list[str] = []
        was_running = self._running
        if was_running:
            ids = _containers(self.project_label, self.project)
            fmt = '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}'
            found = _quiet(["docker", "inspect", "--format", fmt, *ids]) if ids else None
            volumes = found.stdout.split() if found is not None else []
        super().stop()
        if was_running:
            deadline = time.monotonic() + DOWN_TIMEOUT_S
            while time.monotonic() < deadline and (
                _containers(self.project_label, self.project) or _stack_networks(self.project)
            ):
                time.sleep(0.5)
            for container in _containers(self.project_label, self.project):
                _quiet(["docker", "rm", "-fv", container])
            for volume in volumes:
                _quiet(["docker", "volume", "rm", volume])


# Runs in the pod image on the stack's network: argv[1] is flushall or commandstats.
_CONTROL = """
import json, os, sys
import redis
client = redis.Redis.from_url(os.environ["STAMPEDE_REDIS_URL"], socket_timeout=10)
if sys.argv[1] == "flushall":
    print(json.dumps(client.flushall()))
else:
    info = client.info("commandstats")
    print(json.dumps({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}))
"""


def _swarm_active() -> None:
    state = _quiet(["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"]).stdout.strip()
    if state != "active":
        raise LabError(
            f"this engine is not in a swarm (state: {state or 'unknown'}); `docker swarm init` "
            "makes a one-node swarm (README: Docker), `docker swarm leave --force` undoes it"
        )


def _stack_networks(project: str) -> list[str]:
    return _quiet(
        ["docker", "network", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={project}"]
    ).stdout.split()


def _compose_file() -> Path:
    path = Path(os.environ.get("STAMPEDE_COMPOSE_FILE", LAB_ENV / "docker-compose.yml"))
    if not path.is_file():
        raise LabError(
            f"no compose file at {path}: a checkout has lab_env/docker-compose.yml; "
            "STAMPEDE_COMPOSE_FILE names another"
        )
    return path


def _dotenv() -> dict[str, str]:
    pairs = {}
    with contextlib.suppress(OSError):
        for line in (_compose_file().parent / ".env").read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                pairs[key.strip()] = value.strip()
    return pairs
