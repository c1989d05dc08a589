"""The embedded lab: a herd over three real pods, and processes that never outlive the lab."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import stampede
import stampede.lab
from stampede import procs
from stampede.config import LabConfig, StrategyConfig
from stampede.errors import PortInUse, ProcessFailed, RedisNotFound
from stampede.lab import Lab
from tests.helpers import child_pids

CALLERS = 20


async def herd(lab: Lab) -> list[httpx.Response]:
    """20 concurrent cold requests for item 1, round-robin over the pods."""
    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(client.get(f"{url}/health") for url in lab.pods))  # connect
        return await asyncio.gather(
            *(client.get(f"{lab.pods[i % len(lab.pods)]}/items/1") for i in range(CALLERS))
        )


def origin_reads(lab: Lab) -> int:
    return sum(len(s["reads"]) for s in lab.stats())


def assert_everyone_got_the_value(responses: list[httpx.Response]) -> Counter[str]:
    assert [r.status_code for r in responses] == [200] * CALLERS
    assert all(r.json() == responses[0].json() for r in responses)
    assert responses[0].json()["id"] == 1
    return Counter(r.headers["x-cache"] for r in responses)


async def test_naive_lets_the_whole_herd_reach_the_origin(lab: Lab) -> None:
    lab.configure(StrategyConfig(strategy="naive", origin_latency_ms=500))
    outcomes = assert_everyone_got_the_value(await herd(lab))
    reads = origin_reads(lab)
    assert reads >= 15
    assert outcomes["miss"] == reads  # each request that read says so


async def test_local_lock_reads_once_per_pod_at_most(lab: Lab) -> None:
    lab.configure(StrategyConfig(strategy="local_lock", origin_latency_ms=500))
    outcomes = assert_everyone_got_the_value(await herd(lab))
    reads = origin_reads(lab)
    assert 1 <= reads <= len(lab.pods)
    assert outcomes["miss"] == reads
    assert set(outcomes) <= {"miss", "wait_hit", "hit"}


@pytest.mark.parametrize("wait", ["poll", "notify"])
async def test_single_flight_reads_exactly_once_across_pods(lab: Lab, wait: str) -> None:
    lab.configure(StrategyConfig(strategy="single_flight", wait=wait))
    outcomes = assert_everyone_got_the_value(await herd(lab))
    assert origin_reads(lab) == 1
    assert outcomes["miss"] == 1
    assert set(outcomes) <= {"miss", "wait_hit", "hit"}
    pod_outcomes: Counter[str] = Counter()
    for stats in lab.stats():
        pod_outcomes.update(stats["outcomes"])
    assert pod_outcomes == outcomes  # the pods' tallies agree with the headers


def test_configure_flushes_redis_and_resets_the_pods(lab: Lab) -> None:
    lab.configure(StrategyConfig(strategy="naive", origin_latency_ms=10))
    httpx.get(f"{lab.pods[0]}/items/2")
    lab.configure(StrategyConfig(strategy="swr", origin_latency_ms=10))
    with lab.redis() as client:
        assert client.dbsize() == 0
    assert all(s["reads"] == [] and s["config"]["strategy"] == "swr" for s in lab.stats())
    assert httpx.get(f"{lab.pods[1]}/items/2").headers["x-cache"] == "miss"


# ---- hygiene -------------------------------------------------------------------------------
@pytest.fixture
def no_new_children() -> Iterator[None]:
    """Whatever the test did, no process it started is left behind."""
    before = child_pids()
    yield
    assert child_pids() - before == set()


def test_embedded_lab_stops_every_pid_it_started(no_new_children: None) -> None:
    lab = Lab.embedded(LabConfig(pods=1))
    pids = lab.pids
    assert len(pids) == 2 and all(procs.pid_alive(p) for p in pids)
    assert lab.health() == [True]
    lab.stop()
    assert not any(procs.pid_alive(p) for p in pids)
    lab.stop()  # idempotent


def test_leaving_the_with_block_on_an_exception_stops_the_lab(no_new_children: None) -> None:
    with pytest.raises(RuntimeError, match="boom"), Lab.embedded(LabConfig(pods=1)) as lab:
        pids = lab.pids
        raise RuntimeError("boom")
    assert not any(procs.pid_alive(p) for p in pids)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_taken_redis_port_is_refused_before_starting(
    taken_port: int, no_new_children: None
) -> None:
    with pytest.raises(PortInUse, match=rf"port {taken_port} .*redis.* already in use"):
        Lab.embedded(LabConfig(pods=1), redis_port=taken_port)


def test_a_taken_pod_port_is_refused_before_starting(
    taken_port: int, no_new_children: None
) -> None:
    with pytest.raises(PortInUse, match=rf"port {taken_port} .*pod.* already in use"):
        Lab.embedded(LabConfig(pods=1), pod_ports=[taken_port])


def test_a_redis_port_taken_after_the_check_is_still_port_in_use(
    taken_port: int, no_new_children: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: the port is taken between the check and the bind; redis-server says so."""
    monkeypatch.setattr(procs, "check_port", lambda port, what: None)
    with pytest.raises(PortInUse, match=str(taken_port)):
        Lab.embedded(LabConfig(pods=1), redis_port=taken_port)


def test_a_pod_port_taken_after_the_check_is_port_in_use_and_redis_is_stopped(
    taken_port: int, no_new_children: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(procs, "check_port", lambda port, what: None)
    with pytest.raises(PortInUse, match=str(taken_port)):
        Lab.embedded(LabConfig(pods=1), pod_ports=[taken_port])


def test_missing_redis_server_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_new_children: None
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(stampede.lab, "REDIS_PLACES", ())  # nor in the usual places
    monkeypatch.delenv("STAMPEDE_REDIS_SERVER", raising=False)
    with pytest.raises(RedisNotFound, match="apt-get install redis-server") as caught:
        Lab.embedded(LabConfig(pods=1))
    assert "brew install redis" in str(caught.value)


def test_a_pod_that_fails_to_start_shows_its_log_tail(
    monkeypatch: pytest.MonkeyPatch, no_new_children: None
) -> None:
    def broken_pod(port: int, host: str = "127.0.0.1") -> list[str]:
        return [
            sys.executable,
            "-c",
            "print('pod-boom: cannot import the app'); raise SystemExit(3)",
        ]

    monkeypatch.setattr(stampede.lab, "pod_command", broken_pod)
    with pytest.raises(ProcessFailed) as caught:
        Lab.embedded(LabConfig(pods=2))
    message = str(caught.value)
    assert "exited with code 3" in message
    assert "pod-boom: cannot import the app" in message


def test_attached_lab_stops_nothing(lab: Lab) -> None:
    attached = Lab.attach(lab.pods, lab.redis_url)
    assert attached.pids == []
    attached.stop()
    assert all(lab.health())
    assert all(procs.pid_alive(p) for p in lab.pids)


def test_from_env_needs_both_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STAMPEDE_POD_URLS", raising=False)
    monkeypatch.delenv("STAMPEDE_REDIS_URL", raising=False)
    with pytest.raises(stampede.LabError, match="STAMPEDE_POD_URLS"):
        Lab.from_env()
    monkeypatch.setenv("STAMPEDE_POD_URLS", "http://127.0.0.1:1, http://127.0.0.1:2")
    monkeypatch.setenv("STAMPEDE_REDIS_URL", "redis://127.0.0.1:3/0")
    attached = Lab.from_env()
    assert attached.pods == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    attached.stop()


def test_pid_alive_of_this_process_and_of_a_reaped_child() -> None:
    assert procs.pid_alive(os.getpid())
    child = procs.start("true", ["true"], log_path=Path(os.devnull))
    child.popen.wait()
    assert not procs.pid_alive(child.pid)
