"""The compose stack and the Swarm stack, for real: built, started, run, taken down.

Runs under ``make docker-test`` (part of ``make test``), which installs the engine, compose and
debootstrap when they are missing (``scripts/ensure-docker.sh``) and sets
``STAMPEDE_DOCKER_TEST=1``. The module starts ``dockerd`` itself when no engine answers (and
stops exactly that process after), makes the stand-in base images offline
(``scripts/make-standin-images.sh``), and then drives everything through the package's own
launchers: ``run(..., lab="compose")`` and ``run(..., lab="swarm")``, ``stampede lab up
--compose --jupyter`` / ``lab down``, and the notebook cell ``stampede.run("single_flight",
lab="compose", duration_s=20)`` through a Jupyter server's API, in the compose JupyterLab service
and in ``make lab`` on the host (the helpers of ``tests/test_make_lab.py``, in
``tests/helpers.py``). Each run must teach the chapters' lesson (chapters 1 and 2 assert the
same numbers) and leave nothing of the lab behind: no container, network or volume that was not
there before, after a good run, a failed run, a killed pod, bad parameters and a Ctrl-C. Each
run's headline numbers are printed (``-rP``) for the README and the notes.

Where no engine can run (not root and no engine, no ``dockerd`` installed), the module is
skipped with that reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stampede import runner
from stampede.compose import SwarmLab
from stampede.runner import RunResult, run
from tests.helpers import make_lab, run_cell, wait_for

ROOT = Path(__file__).resolve().parents[1]
# Chapter 1 and 2's reader load, on a 20 s run: 4 TTL windows, the last one incomplete.
LOAD: dict[str, Any] = {
    "duration_s": 20.0, "clients": 50, "rate": 380.0, "ttl_s": 5.0, "hot_share": 0.95, "seed": 0,
}  # fmt: skip

pytestmark = pytest.mark.timeout(1200)  # the first build installs every pinned package


def docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def engine_answers() -> bool:
    return (
        shutil.which("docker") is not None
        and subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0
    )


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A running Docker engine: the machine's, or a ``dockerd`` started (and stopped) here."""
    if os.environ.get("STAMPEDE_DOCKER_TEST") != "1":
        pytest.skip("the container stacks run under `make docker-test` (STAMPEDE_DOCKER_TEST=1)")
    if engine_answers():
        yield
        return
    if shutil.which("dockerd") is None or os.geteuid() != 0:
        pytest.skip(
            "no Docker engine can run here: none answers, and dockerd is "
            + ("not installed" if shutil.which("dockerd") is None else "there but needs root")
        )
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(["dockerd"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not engine_answers():
            assert daemon.poll() is None, f"dockerd exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"dockerd never answered: {log.read_text()[-2000:]}"
            time.sleep(0.5)
        print(f"started dockerd, PID {daemon.pid}")
        yield
    finally:
        daemon.terminate()
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


@pytest.fixture(scope="module")
def images(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The stand-in base images, named for the launcher; a private data dir for the runs."""
    made = subprocess.run(
        [str(ROOT / "scripts" / "make-standin-images.sh")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    names = dict(line.split("=", 1) for line in made.stdout.split())
    assert set(names) == {"PYTHON_IMAGE", "REDIS_IMAGE"}
    with pytest.MonkeyPatch.context() as env:
        for key, value in names.items():
            env.setenv(key, value)
        # runs of this module are cached apart from the book's, with their own origin
        data = tmp_path_factory.mktemp("data")
        data.chmod(0o755)  # mounted into the pods, which run as an unprivileged user
        env.setenv("STAMPEDE_DATA_DIR", str(data))
        env.delenv("STAMPEDE_POD_URLS", raising=False)
        env.delenv("STAMPEDE_LAB", raising=False)
        yield names


# The swarm's own networks, made by `swarm init` and its first task, removed by `swarm` below.
SWARM_NETWORKS = {"docker_gwbridge", "ingress"}


# The launcher's log directory of a project: the generated names and this module's own.
LOG_DIR = re.compile(r"stampede-([0-9a-f]{8}|ctrl-c-\d+|kill-pod-\d+)-")


def snapshot() -> dict[str, set[str]]:
    """Every container, network and volume the engine has (networks by name), and the compose
    launcher's log directories in the temporary directory."""
    networks = set(docker("network", "ls", "--format", "{{.Name}}").split())
    logs = {p.name for p in Path(tempfile.gettempdir()).iterdir() if LOG_DIR.match(p.name)}
    return {
        "containers": set(docker("ps", "-aq", "--no-trunc").split()),
        "networks": networks - SWARM_NETWORKS,
        "volumes": set(docker("volume", "ls", "-q").split()),
        "log dirs": logs,
    }


def left_over(before: dict[str, set[str]]) -> dict[str, set[str]]:
    now = snapshot()
    return {kind: ids - before[kind] for kind, ids in now.items() if ids - before[kind]}


def assert_naive_lesson(s: dict[str, Any]) -> None:
    """Chapter 1's claims on a run's summary: a needle of hot-key origin reads in every window."""
    reads = s["hot_reads_per_window"]
    assert len(reads) >= 3, f"only {len(reads)} complete hot-key windows"
    assert min(reads) >= 20, f"expected >= 20 hot-key origin reads in every window, got {reads}"
    assert s["hit_rate"] > 0.9, s["hit_rate"]
    assert s["lost"] == 0 and s["requests"] > 0.9 * LOAD["rate"] * LOAD["duration_s"]


def assert_single_flight_lesson(s: dict[str, Any]) -> None:
    """Chapter 2's claim: exactly one hot-key origin read per TTL window, across all pods."""
    reads = s["hot_reads_per_window"]
    fail_open = s["outcomes"].get("fail_open", 0)
    assert len(reads) >= 3 and all(n == 1 for n in reads), (
        f"expected 1 hot-key read per window, got {reads} ({fail_open} fail_open)"
    )
    assert s["outcomes"]["wait_hit"] > 0 and s["lost"] == 0
    assert s["requests"] > 0.9 * LOAD["rate"] * LOAD["duration_s"]


def test_compose_runs_teach_the_lesson_and_leave_nothing(images: dict[str, str]) -> None:
    before = snapshot()
    naive = run("naive", lab="compose", fresh=True, progress=False, **LOAD)
    assert left_over(before) == {}
    single_flight = run("single_flight", lab="compose", fresh=True, progress=False, **LOAD)
    assert left_over(before) == {}
    for result in (naive, single_flight):
        assert sorted(result.reads["pod"].unique()) == ["pod-1", "pod-2", "pod-3"]
    assert_naive_lesson(naive.summary)
    assert_single_flight_lesson(single_flight.summary)
    print("compose naive:", json.dumps(_headline(naive.summary)))
    print("compose single_flight:", json.dumps(_headline(single_flight.summary)))


def test_a_failed_run_leaves_nothing(
    images: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot()

    def broken(*args: Any, **kwargs: Any) -> RunResult:
        raise RuntimeError("the run failed half-way")

    monkeypatch.setattr(runner, "_measure", broken)
    with pytest.raises(RuntimeError, match="half-way"):
        run("naive", lab="compose", fresh=True, progress=False, **LOAD)
    assert left_over(before) == {}


@pytest.mark.parametrize("break_it", ["ctrl_c", "kill_pod"])
def test_an_interrupted_or_broken_run_leaves_nothing(images: dict[str, str], break_it: str) -> None:
    """``stampede run --lab compose`` while the load runs: SIGINT (a terminal's Ctrl-C) exits
    130; a pod container killed (``docker kill``) ends the run with one line naming the error.
    Either way the project is gone afterwards."""
    before = snapshot()
    project = f"stampede-{break_it.replace('_', '-')}-{os.getpid()}"
    child = subprocess.Popen(
        [sys.executable, "-m", "stampede", "run", "--lab", "compose", "--strategy", "naive",
         "--duration", "60" if break_it == "ctrl_c" else "20", "--fresh", "--json"],
        env={**os.environ, "STAMPEDE_COMPOSE_PROJECT": project},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a terminal's default: under a background job SIGINT is ignored, and so is Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        pod_1 = _await_load(project, child)
        if break_it == "ctrl_c":
            child.send_signal(signal.SIGINT)
        else:
            docker("kill", pod_1)
        out, err = child.communicate(timeout=180)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    if break_it == "ctrl_c":
        assert child.returncode == 130, err
        assert "interrupted" in err
    else:
        print(f"a pod killed mid-run: exit {child.returncode}, {err.strip().splitlines()[-1:]}")
        assert child.returncode == 1, (out[-2000:], err[-4000:])
        assert err.strip().splitlines()[-1].startswith("stampede: pod http://127.0.0.1:"), err
    assert left_over(before) == {}


def test_a_bad_parameter_starts_nothing(images: dict[str, str]) -> None:
    """A parameter the compose lab cannot take is refused with one line before anything starts."""
    before = snapshot()
    for wrong in (["--pods", "4"], ["--ttl-s", "-1"], ["--strategy", "no_such_strategy"]):
        done = subprocess.run(
            [sys.executable, "-m", "stampede", "run", "--lab", "compose", "--duration", "20",
             "--fresh", "--json", *wrong],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 2, (wrong, done.stderr)
        assert done.stderr.startswith("stampede: ") and not done.stdout, (wrong, done.stderr)
    assert left_over(before) == {}


def _await_load(project: str, child: subprocess.Popen[str]) -> str:
    """Until pod-1 of ``project`` has read the origin (the run's load is on); its container."""
    deadline = time.monotonic() + 600  # includes the (cached) build
    while time.monotonic() < deadline:
        assert child.poll() is None, child.communicate()
        ids = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                     "--filter", "label=com.docker.compose.service=pod-1").split()  # fmt: skip
        if ids:
            port = docker("port", ids[0], "8000", check=False).split(":")[-1].strip()
            try:
                if port and httpx.get(f"http://127.0.0.1:{port}/stats", timeout=2).json()["reads"]:
                    return ids[0]
            except (httpx.HTTPError, ValueError, KeyError):
                pass
        time.sleep(0.5)
    raise AssertionError(f"{project}: the load never started")


# The notebook cell, as a reader types it; the test reads the summary it prints.
CELL = """\
import stampede
result = stampede.run("single_flight", lab="compose", duration_s=20)
print(json.dumps({"summary": result.summary, "params": result.params,
                  "pods": sorted(result.reads["pod"].unique())}))
"""
CELL_TIMEOUT_S = 420.0  # on the host the cell starts (and builds, cached) a project of its own


def run_the_cell(base: str, token: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(
        run_cell(base, token, CELL, CELL_TIMEOUT_S).splitlines()[-1]
    )
    assert answer["pods"] == ["pod-1", "pod-2", "pod-3"], answer["pods"]
    assert {k: answer["params"][k] for k in LOAD} == LOAD  # the defaults are the chapters' load
    return answer["summary"]


def stampede_cli(
    *args: str, env: dict[str, str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stampede", *args], env=env, capture_output=True, text=True,
        timeout=timeout_s, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_lab_up_compose_jupyter_runs_the_cell_in_the_container(
    images: dict[str, str], tmp_path: Path
) -> None:
    """``stampede lab up --compose --jupyter``, the cell in that JupyterLab, ``lab down``.

    The notebook runs on the compose network: ``lab="compose"`` there drives the stack it is
    part of (``STAMPEDE_COMPOSE_ATTACHED``), its load generator reaching the pods by name.
    """
    before = snapshot()
    env = {**os.environ, "STAMPEDE_STATE_DIR": str(tmp_path / "state")}
    up = stampede_cli("lab", "up", "--compose", "--jupyter", "--json", env=env, timeout_s=1500)
    try:
        assert up.returncode == 0, up.stderr[-4000:]
        info = json.loads(up.stdout)
        status = stampede_cli("lab", "status", "--json", env=env, timeout_s=120)
        assert status.returncode == 0 and json.loads(status.stdout)["healthy"] == [True] * 3
        url = httpx.URL(info["jupyter"])
        assert url.host == "127.0.0.1" and url.path == "/lab"
        base, token = f"http://127.0.0.1:{url.port}", url.params["token"]
        assert httpx.get(f"{base}/api/kernels", timeout=10).status_code == 403  # token needed
        summary = run_the_cell(base, token)
    finally:
        down = stampede_cli("lab", "down", env=env, timeout_s=300)
    assert down.returncode == 0 and f"took {info['project']} down" in down.stdout, down
    assert left_over(before) == {}
    assert not (tmp_path / "state" / "lab-up.json").exists()
    assert_single_flight_lesson(summary)
    print("compose JupyterLab service, single_flight:", json.dumps(_headline(summary)))


def test_the_cell_in_jupyterlab_on_the_host(
    images: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make lab`` on the host; the cell starts a compose project, runs, and removes it."""
    monkeypatch.setenv("STAMPEDE_FRESH", "1")  # the first test's run has the same cache key
    before = snapshot()
    with make_lab(tmp_path) as lab:
        wait_for("JupyterLab", lab.jupyter_up, 150, lab.log)
        summary = run_the_cell(lab.base, lab.token)
        assert left_over(before) == {}  # while JupyterLab still runs: the run took it down
    assert_single_flight_lesson(summary)
    print("compose from JupyterLab on the host, single_flight:", json.dumps(_headline(summary)))


def test_swarm_refuses_without_a_swarm(images: dict[str, str]) -> None:
    if docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip() == "active":
        pytest.skip("this engine is in a swarm already")
    before = snapshot()
    with pytest.raises(Exception, match="not in a swarm"):
        SwarmLab.up()
    assert left_over(before) == {}


@pytest.fixture(scope="module")
def swarm(images: dict[str, str]) -> Iterator[None]:
    """A one-node swarm: this engine's, or one initialised here and left after."""
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
    networks = set(docker("network", "ls", "--format", "{{.Name}}").split())
    if state == "active":
        yield
        return
    docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        yield
    finally:
        docker("swarm", "leave", "--force")
        for network in {"docker_gwbridge"} - networks:  # made by `swarm init`, not by the lab
            docker("network", "rm", network, check=False)


def test_swarm_stack_with_three_replicas(swarm: None) -> None:
    before = snapshot()
    naive = run("naive", lab="swarm", fresh=True, progress=False, **LOAD)
    assert left_over(before) == {}
    single_flight = run("single_flight", lab="swarm", fresh=True, progress=False, **LOAD)
    assert left_over(before) == {}
    for result in (naive, single_flight):  # the generator's round robin reached every task
        served = result.reads.groupby("pod").size()
        assert sorted(served.index) == ["pod-1", "pod-2", "pod-3"], served
    assert_naive_lesson(naive.summary)
    assert_single_flight_lesson(single_flight.summary)
    print("swarm naive:", json.dumps(_headline(naive.summary)))
    print("swarm single_flight:", json.dumps(_headline(single_flight.summary)))


def _headline(s: dict[str, Any]) -> dict[str, Any]:
    keys = ["requests", "origin_reads", "hot_reads_per_window", "max_origin_per_s_steady",
            "hit_rate", "reads_over_bound"]  # fmt: skip
    out = {k: s[k] for k in keys}
    out["hot_latency_ms_steady"] = {k: round(v, 1) for k, v in s["hot_latency_ms_steady"].items()}
    out["latency_ms"] = {k: round(v, 1) for k, v in s["latency_ms"].items()}
    return out
