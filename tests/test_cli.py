"""The command line: bad parameters, the background lab, one run as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from stampede import auth, procs
from stampede.cli import main
from stampede.config import LabConfig, LoadConfig, StrategyConfig
from stampede.errors import ConfigError
from tests.helpers import child_pids

STAMPEDE = [sys.executable, "-m", "stampede.cli"]
SECTION_6_KEYS = {
    "strategy", "params", "requests", "rps", "origin_reads", "origin_reads_hot",
    "hot_reads_per_window", "max_origin_per_s", "max_origin_per_s_steady",
    "seconds_above_threshold", "lower_bound", "reads_over_bound", "hit_rate", "latency_ms",
    "hot_latency_ms", "hot_latency_ms_steady", "outcomes", "lost",
}  # fmt: skip


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Private state and data directories, so no other lab or run cache is touched."""
    env = {"STAMPEDE_STATE_DIR": str(tmp_path / "state"), "STAMPEDE_DATA_DIR": str(tmp_path)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("STAMPEDE_POD_URLS", raising=False)
    return env


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STAMPEDE, *args], capture_output=True, text=True, timeout=timeout, env=os.environ
    )


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["run", "--strategy", "nope"], "unknown strategy 'nope'"),
        (["run", "--duration", "0"], "duration_s"),
        (["run", "--clients", "-1"], "clients"),
        (["run", "--hot-share", "1.5"], "hot_share"),
        (["run", "--rate", "0"], "rate"),
        (["lab", "up", "--strategy", "nope"], "unknown strategy 'nope'"),
        (["lab", "up", "--ttl", "0"], "ttl_s"),
        (["run", "--origin-limit", "4"], "origin_limit=4 is simulated only"),
        (["run", "--backend", "sim", "--origin-limit", "0"], "origin_limit=0"),
    ],
)
def test_bad_parameters_exit_2_with_one_clear_line_and_start_nothing(
    argv: list[str], named: str, dirs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    before = child_pids()
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("stampede: bad parameter:")
    assert named in err
    assert err.count("\n") == 1
    assert child_pids() == before
    assert not (Path(dirs["STAMPEDE_STATE_DIR"]) / "lab-up.json").exists()


def test_unknown_strategy_lists_the_valid_names(
    dirs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--strategy", "nope"])
    err = capsys.readouterr().err
    assert "valid: " in err and "single_flight" in err and "naive" in err


def test_origin_limit_runs_on_the_simulator_only(capsys: pytest.CaptureFixture[str]) -> None:
    """``--origin-limit`` reaches ``stampede.run(..., origin_limit=N)`` and the simulator."""
    import stampede
    from stampede import sim

    argv = ["run", "--backend", "sim", "--strategy", "single_flight", "--duration-s", "10"]
    code, out, err = run_main(capsys, *argv, "--origin-limit", "1", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["backend"] == "sim"
    assert summary["sim"]["origin_limit"] == 1 and summary["sim"]["origin_queued_reads"] > 0
    kwargs = dict(backend="sim", duration_s=10.0)
    limited = stampede.run("single_flight", origin_limit=1, **kwargs)
    direct = sim.simulate("single_flight", origin_limit=1, duration_s=10.0)
    assert limited.records.equals(direct.records)
    assert summary["requests"] == limited.summary["requests"]
    # without the flag: no limit, nothing queued
    code, out, err = run_main(capsys, *argv, "--json")
    assert code == 0, err
    assert json.loads(out)["sim"].get("origin_limit") is None
    # the lab's origin has no limit: refused before anything starts, None passes
    with pytest.raises(ConfigError, match="simulated only"):
        stampede.run("naive", origin_limit=2, duration_s=1.0)
    assert stampede.run("naive", origin_limit=None, **kwargs).summary["sim"]


def test_strategies_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    from stampede.strategies import strategy_names

    assert main(["strategies"]) == 0
    assert capsys.readouterr().out.split() == strategy_names()


def test_status_without_a_lab_exits_1(
    dirs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_main(capsys, "lab", "status", "--json")
    assert code == 1
    assert json.loads(out) == {"up": False}
    assert run_main(capsys, "lab", "down")[:2] == (0, "no lab is up\n")


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``stampede ARGV`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_lab_up_status_down(dirs: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    state_file = Path(dirs["STAMPEDE_STATE_DIR"]) / "lab-up.json"
    code, out, err = run_main(capsys, "lab", "up", "--json", "--pods", "2")
    pids: list[int] = json.loads(state_file.read_text())["pids"] if state_file.exists() else []
    try:
        assert code == 0, err
        info = json.loads(out)
        assert set(info) == {"pods", "redis", "secret"}
        assert len(info["pods"]) == 2
        redis_at = urlsplit(info["redis"])
        assert (redis_at.hostname, redis_at.password) == ("127.0.0.1", info["secret"])
        assert state_file.stat().st_mode & 0o077 == 0  # the secret's file: this user's only
        for url in info["pods"]:
            resp = httpx.get(f"{url}/items/1", timeout=10)
            assert resp.status_code == 200
            assert resp.headers["x-cache"] in {"miss", "hit", "wait_hit"}
        assert len(pids) == 3 and all(procs.pid_alive(p) for p in pids)

        code, out, _ = run_main(capsys, "lab", "status", "--json")
        assert code == 0 and json.loads(out)["healthy"] == [True, True]
        assert info["secret"] not in out  # status does not print it

        code, _, err = run_main(capsys, "lab", "up")  # a second lab while one is up: refused
        assert code == 1 and "already up" in err

        code, out, _ = run_main(capsys, "lab", "down")
        assert code == 0 and "stopped 3" in out
        assert not any(procs.pid_alive(p) for p in pids)
        assert run_main(capsys, "lab", "status")[0] == 1
    finally:
        for pid in pids:  # only if the test failed before `lab down`: the PIDs it started
            if procs.pid_alive(pid):
                procs.stop_pid(pid)


def test_lab_up_down_with_a_redis_cluster(
    dirs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``lab up --redis-cluster 3``: a cluster URL, a served item, and ``down`` stops all."""
    state_file = Path(dirs["STAMPEDE_STATE_DIR"]) / "lab-up.json"
    code, out, err = run_main(capsys, "lab", "up", "--json", "--pods", "1", "--redis-cluster", "3")
    pids: list[int] = json.loads(state_file.read_text())["pids"] if state_file.exists() else []
    try:
        assert code == 0, err
        info = json.loads(out)
        assert auth.is_cluster_url(info["redis"])
        assert urlsplit(info["redis"]).password == info["secret"]
        assert httpx.get(f"{info['pods'][0]}/items/1", timeout=10).status_code == 200
        assert len(pids) == 4 and all(procs.pid_alive(p) for p in pids)  # 3 nodes, 1 pod
        code, out, _ = run_main(capsys, "lab", "down")
        assert code == 0 and "stopped 4" in out
        assert not any(procs.pid_alive(p) for p in pids)
    finally:
        for pid in pids:  # only if the test failed before `lab down`: the PIDs it started
            if procs.pid_alive(pid):
                procs.stop_pid(pid)


@pytest.mark.parametrize("reused", [True, False])
def test_lab_down_signals_a_recorded_pid_only_while_its_start_time_matches(
    dirs: dict[str, str], capsys: pytest.CaptureFixture[str], reused: bool
) -> None:
    """PID reuse: a recorded PID whose start time differs is someone else's process."""
    sleeper = subprocess.Popen(["sleep", "120"])  # stands in for the process that now has the PID
    try:
        ticks = procs.start_ticks(sleeper.pid)
        assert ticks is not None
        recorded = ticks - 1 if reused else ticks  # the PID's earlier owner started before it
        state = {
            "pods": ["http://127.0.0.1:9"], "redis": "redis://127.0.0.1:9/0", "secret": "s",
            "pids": [sleeper.pid],
            "processes": [{"name": "pod-1", "pid": sleeper.pid, "start_ticks": recorded}],
        }  # fmt: skip
        (Path(dirs["STAMPEDE_STATE_DIR"]) / "lab-up.json").parent.mkdir(exist_ok=True)
        (Path(dirs["STAMPEDE_STATE_DIR"]) / "lab-up.json").write_text(json.dumps(state))
        code, out, _ = run_main(capsys, "lab", "down")
        assert code == 0
        if reused:
            assert sleeper.poll() is None, "lab down signalled a reused PID"
            assert f"left PIDs [{sleeper.pid}] alone" in out and "stopped 0" in out
        else:
            assert sleeper.wait(timeout=10) == -15  # SIGTERM, through the pidfd
            assert "stopped 1 lab processes" in out
        assert not (Path(dirs["STAMPEDE_STATE_DIR"]) / "lab-up.json").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_run_json_has_every_documented_key(dirs: dict[str, str]) -> None:
    result = cli(
        "run", "--strategy", "naive", "--duration", "3", "--rate", "60", "--clients", "5",
        "--origin-latency-ms", "20", "--json", "--fresh",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert set(summary) >= SECTION_6_KEYS, SECTION_6_KEYS - set(summary)
    assert summary["strategy"] == "naive"
    assert summary["lost"] == 0
    assert summary["requests"] > 0 and summary["origin_reads"] >= 1
    expected_params = (
        set(StrategyConfig.model_fields)
        | set(LoadConfig.model_fields)
        | set(LabConfig.model_fields)
    )
    assert expected_params <= set(summary["params"])
    assert summary["params"]["duration_s"] == 3 and summary["params"]["clients"] == 5
    for key in ("latency_ms", "hot_latency_ms", "hot_latency_ms_steady"):
        assert set(summary[key]) == {"p50", "p90", "p99", "max"}
    assert {"hit", "miss", "wait_hit", "stale", "early_refresh", "error"} <= set(
        summary["outcomes"]
    )
    assert sum(summary["outcomes"].values()) == summary["requests"]
    # the run says whether it measured the machine, and how many round trips the pods made
    machine = summary["machine"]
    assert isinstance(machine["machine_bound"], bool)
    assert machine["machine_bound"] == bool(machine["reasons"])
    assert 0 <= machine["busy_share"] <= 1 and machine["cpus"] >= 1
    assert summary["redis_round_trips_per_request"] >= 1  # every request reads the cache once
    assert isinstance(summary["hot_reads_per_window"], list)
    assert list((Path(dirs["STAMPEDE_DATA_DIR"]) / "runs").glob("*.json.gz"))  # cached there
