"""The compose file, checked without a Docker engine.

The structure tests read ``lab_env/docker-compose.yml``, ``lab_env/docker-stack.yml`` and the
Dockerfile (``tests/test_compose_stack.py`` brings both stacks up for real); the pod test starts
each pod with exactly the command and environment compose gives it, after the documented
mapping of the container's world onto this machine (``lab_env/README.md``): ``${VAR}`` from
``lab_env/.env``, ``python`` -> this interpreter, ``0.0.0.0:8000`` -> ``127.0.0.1:<free port>``,
the ``redis`` service -> the test's redis-server, ``/data`` -> the local origin's directory.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from stampede import paths, procs, run, runner
from stampede.compose import ComposeLab, attached_lab
from stampede.config import PodSettings
from stampede.errors import ConfigError
from stampede.lab import Lab, pod_command
from stampede.origin import ensure_origin

LAB_ENV = Path(__file__).resolve().parents[1] / "lab_env"
COMPOSE = LAB_ENV / "docker-compose.yml"
STACK = LAB_ENV / "docker-stack.yml"
PODS = ("pod-1", "pod-2", "pod-3")
VAR = re.compile(r"\$\{(\w+)([:?\-][^}]*)?\}")
# Values with no committed default anywhere (issue 12): the launcher generates them.
SECRETS = {"STAMPEDE_LAB_SECRET": "s3cret-for-the-test", "JUPYTER_TOKEN": "token-for-the-test"}
# The control plane's variables (stampede.compose, issue 12), read by the pods besides PodSettings.
CONTROL_PLANE = {"STAMPEDE_LAB_SECRET", "STAMPEDE_ALLOWED_HOSTS"}


def dotenv() -> dict[str, str]:
    pairs = {}
    for line in (LAB_ENV / ".env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def compose(values: dict[str, str] | None = None, path: Path = COMPOSE) -> dict[str, Any]:
    """The compose file with ``${VAR:?...}`` substituted, as ``docker compose config`` would."""
    if values is None:
        values = {**dotenv(), **SECRETS, "STAMPEDE_REPLICAS": "3"}
    text = VAR.sub(lambda m: values[m.group(1)], path.read_text())
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def test_every_variable_is_required_and_set_in_dotenv() -> None:
    text = COMPOSE.read_text()
    used = VAR.findall(text)
    assert used
    assert all(flag.startswith(":?") and len(flag) > 2 for _, flag in used), used
    assert {name for name, _ in used} <= set(dotenv()) | set(SECRETS)


def test_no_secret_has_a_committed_value() -> None:
    """The lab secret and JupyterLab's token: required, and in no committed file."""
    for path in (COMPOSE, STACK):
        used = dict(VAR.findall(path.read_text()))
        assert used["STAMPEDE_LAB_SECRET"].startswith(":?"), path
        assert all(flag.startswith(":?") for flag in used.values()), (path, used)
    assert not set(SECRETS) & set(dotenv())


def test_the_secret_closes_redis_and_the_pods() -> None:
    values = {**dotenv(), **SECRETS}
    secret = SECRETS["STAMPEDE_LAB_SECRET"]
    services = compose(values)["services"]
    redis = services["redis"]
    command = redis["command"]
    assert command[command.index("--requirepass") + 1] == secret
    assert redis["environment"]["REDISCLI_AUTH"] == secret  # the health check authenticates
    assert "PONG" in " ".join(redis["healthcheck"]["test"])
    for name in [*PODS, "jupyter"]:
        env = services[name]["environment"]
        assert env["STAMPEDE_REDIS_URL"] == f"redis://:{secret}@redis:6379/0"
        assert env["STAMPEDE_LAB_SECRET"] == secret
    jupyter = services["jupyter"]
    assert jupyter["environment"]["JUPYTER_TOKEN"] == SECRETS["JUPYTER_TOKEN"]
    assert all(p.startswith("127.0.0.1:") for p in jupyter["ports"])


def test_compose_structure() -> None:
    services = compose()["services"]
    redis = services["redis"]
    assert "ports" not in redis and "healthcheck" in redis
    host_ports = set()
    for name in PODS:
        pod = services[name]
        assert pod["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "/health" in " ".join(pod["healthcheck"]["test"])
        (port,) = pod["ports"]
        host, host_port, container_port = port.split(":")
        assert (host, container_port) == ("127.0.0.1", "8000")
        host_ports.add(host_port)
        (volume,) = pod["volumes"]
        assert volume["read_only"] is True and volume["target"] == "/data"
        assert pod["environment"]["STAMPEDE_ORIGIN_PATH"].startswith("/data/")
        assert pod["environment"]["STAMPEDE_POD_NAME"] == name
        assert (
            pod["build"]["dockerfile"] == "lab_env/Dockerfile" and pod["build"]["context"] == ".."
        )
        assert pod["build"]["args"]["PYTHON_IMAGE"] == dotenv()["PYTHON_IMAGE"]
        # the embedded launcher's command, on the container's interface
        assert pod["command"] == ["python", *pod_command(8000, "0.0.0.0")[1:]]
        for key in pod["environment"]:
            field = key.removeprefix("STAMPEDE_").lower()
            known = field in PodSettings.model_fields or key in CONTROL_PLANE
            assert known, f"{key} is not a PodSettings field"
    assert len(host_ports) == 3
    assert (LAB_ENV / "Dockerfile").exists()
    assert redis["image"] == dotenv()["REDIS_IMAGE"]
    assert services["jupyter"]["profiles"] == ["jupyter"]
    assert all(p.startswith("127.0.0.1:") for p in services["jupyter"]["ports"])


def local_pod(
    service: dict[str, Any], redis_url: str, origin: Path
) -> tuple[list[str], dict[str, str], int]:
    """The documented mapping from the container to this machine (lab_env/README.md)."""
    command = list(service["command"])
    assert command[0] == "python"
    command[0] = sys.executable
    port = procs.free_port()
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    env = {k: str(v) for k, v in service["environment"].items()}
    assert env["STAMPEDE_REDIS_URL"] == f"redis://:{SECRETS['STAMPEDE_LAB_SECRET']}@redis:6379/0"
    env["STAMPEDE_REDIS_URL"] = redis_url  # the test's redis-server has no password
    target = service["volumes"][0]["target"]
    env["STAMPEDE_ORIGIN_PATH"] = env["STAMPEDE_ORIGIN_PATH"].replace(target, str(origin.parent))
    return command, env, port


def test_each_pod_runs_with_the_compose_command_and_environment(
    redis_url: str, tmp_path: Path
) -> None:
    services = compose()["services"]
    origin = ensure_origin(paths.origin_path())
    assert origin.name == Path(services["pod-1"]["environment"]["STAMPEDE_ORIGIN_PATH"]).name
    started = []
    try:
        for name in PODS:
            command, env, port = local_pod(services[name], redis_url, origin)
            proc = procs.start(name, command, log_path=tmp_path / f"{name}.log", env=env)
            started.append((name, proc, f"http://127.0.0.1:{port}"))
        for name, proc, url in started:
            proc.wait_ready(
                lambda u=url: httpx.get(f"{u}/health", timeout=1).status_code == 200, 90
            )
            health = httpx.get(f"{url}/health").json()
            assert health["pod"] == name and health["strategy"] == dotenv()["STAMPEDE_STRATEGY"]
            resp = httpx.get(f"{url}/items/2", timeout=10)
            assert resp.status_code == 200 and resp.json()["id"] == 2
            assert resp.headers["x-cache"] in {"hit", "miss"}
    finally:
        for _, proc, _ in started:
            proc.stop()
    assert not [p for _, p, _ in started if p.alive()]


def name_in_the_environment(lab: Lab, data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``make lab`` exports and the ``jupyter`` service sets: the lab, its secret."""
    monkeypatch.setenv("STAMPEDE_POD_URLS", ",".join(lab.pods))
    monkeypatch.setenv("STAMPEDE_REDIS_URL", lab.redis_url)
    monkeypatch.setenv("STAMPEDE_LAB_SECRET", lab.secret or "")
    monkeypatch.setenv("STAMPEDE_DATA_DIR", str(data))


def test_run_attaches_to_a_lab_named_in_the_environment(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name_in_the_environment(lab, tmp_path, monkeypatch)

    def no_embedded(*args: Any, **kwargs: Any) -> Lab:
        raise AssertionError("run() started a lab instead of attaching")

    monkeypatch.setattr(Lab, "embedded", no_embedded)
    assert Lab.from_env().pods == lab.pods
    result = run("naive", duration_s=3, rate=20, clients=4, progress=False)
    assert result.summary["lost"] == 0 and result.summary["requests"] > 0
    assert sum(len(s["reads"]) for s in lab.stats()) == result.summary["origin_reads"]
    assert list((tmp_path / "runs").glob("*.json.gz")), "the run was cached under STAMPEDE_DATA_DIR"


def test_a_notebook_in_the_jupyter_service_runs_on_its_own_stack(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``jupyter`` service's environment: ``run(..., lab="compose")`` uses its neighbours.

    It starts no project (no engine in the container), asks no ``redis-server`` binary for the
    run key's version (the public Python image has none: the stand-in has, so the stack test
    could not tell), and the run is keyed as a compose lab's.
    """
    env = compose()["services"]["jupyter"]["environment"]
    assert env["STAMPEDE_COMPOSE_ATTACHED"] == "1"
    assert {"STAMPEDE_POD_URLS", "STAMPEDE_REDIS_URL", "STAMPEDE_LAB_SECRET"} <= set(env)
    monkeypatch.setenv("STAMPEDE_COMPOSE_ATTACHED", "1")
    name_in_the_environment(lab, tmp_path, monkeypatch)

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("not inside the jupyter service")

    monkeypatch.setattr(ComposeLab, "up", refused)
    monkeypatch.setattr(runner, "find_redis_server", refused)
    neighbours = attached_lab("compose")
    assert neighbours is not None and neighbours.kind == "compose"
    assert neighbours.pods == lab.pods and attached_lab(None) is not None
    assert attached_lab("swarm") is None and attached_lab("embedded") is None
    result = run("naive", lab="compose", duration_s=3, rate=20, clients=4, progress=False)
    assert result.summary["lost"] == 0 and result.summary["requests"] > 0
    assert sum(len(s["reads"]) for s in lab.stats()) == result.summary["origin_reads"]
    # the same run without lab= is the same cached run: both are the compose lab's
    again = run("naive", duration_s=3, rate=20, clients=4, progress=False)
    assert again.records.equals(result.records)
    with pytest.raises(ConfigError, match="3 pods"):  # refused before the run lock's queue
        run("naive", lab="compose", pods=4, duration_s=3, progress=False)


def test_swarm_stack_structure() -> None:
    """One ``pods`` service of N replicas, each on a port of its node; Redis unpublished."""
    stack = compose(path=STACK)
    services = stack["services"]
    assert set(services) == {"redis", "pods"}
    redis, pods = services["redis"], services["pods"]
    assert "ports" not in redis and "healthcheck" in redis
    assert redis["command"] == compose()["services"]["redis"]["command"]
    assert pods["deploy"]["replicas"] == 3  # STAMPEDE_REPLICAS
    (port,) = pods["ports"]
    assert port == {"target": 8000, "protocol": "tcp", "mode": "host"}  # the engine picks
    (volume,) = pods["volumes"]
    assert volume["read_only"] is True and volume["target"] == "/data"
    assert "/health" in " ".join(pods["healthcheck"]["test"])
    assert pods["command"] == compose()["services"]["pod-1"]["command"]
    assert pods["image"] == compose()["services"]["pod-1"]["image"]
    assert pods["environment"]["STAMPEDE_POD_NAME"] == "pod-{{.Task.Slot}}"
    pod_env = compose()["services"]["pod-1"]["environment"]
    same = {
        "STAMPEDE_REDIS_URL",
        "STAMPEDE_LAB_SECRET",
        "STAMPEDE_ORIGIN_PATH",
        "STAMPEDE_STRATEGY",
    }
    assert {k: pods["environment"][k] for k in same} == {k: pod_env[k] for k in same}
    assert stack["networks"]["lab"]["driver"] == "overlay"


def test_the_image_never_keeps_the_build_settings() -> None:
    """Base images are build arguments; lab_env/pip/ reaches the build stage only."""
    text = (LAB_ENV / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    build, final = text.split("\nFROM ${PYTHON_IMAGE}\n")
    assert "FROM ${PYTHON_IMAGE} AS build" in build and "lab_env/pip/" in build
    assert "pip" not in final.replace("/opt/venv", "")
    assert "COPY --from=build /opt/venv /opt/venv" in final
    lines = (LAB_ENV.parent / ".dockerignore").read_text().splitlines()
    ignored = [line for line in lines if line and not line.startswith("#")]
    assert ignored[:1] == ["*"] and "!lab_env/pip/" in ignored  # an allow-list
