"""The embedded lab: a herd over three real pods, and processes that never outlive the lab."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import pytest
import redis

import stampede
import stampede.lab
from stampede import auth, procs
from stampede.config import LabConfig, StrategyConfig
from stampede.errors import LabError, PortInUse, ProcessFailed, RedisNotFound
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


def test_the_ports_a_lab_picks_are_distinct() -> None:
    """``free_port()`` twice in a row can return one port twice (2 of 2000 sets of 4, measured;
    a compose project then failed with "port is already allocated"); ``free_ports`` cannot."""
    assert all(len(set(procs.free_ports(4))) == 4 for _ in range(2000))


def test_a_pod_that_stopped_answering_is_named_not_a_traceback() -> None:
    """A pod container killed by hand mid-run (not through ``kill_pod``): one clear error."""
    gone = f"http://127.0.0.1:{procs.free_port()}"  # nothing listens there
    lab = Lab.attach([gone], "redis://127.0.0.1:1/0")
    with pytest.raises(LabError, match=rf"pod {gone} did not answer /stats"):
        lab.stats()
    lab.dead.add(0)  # killed by kill_pod: skipped, its log died with it
    assert lab.stats() == []


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


def test_start_ticks_name_one_process_for_good() -> None:
    child = procs.start("sleep", ["sleep", "30"], log_path=Path(os.devnull))
    try:
        assert child.start_ticks is not None
        assert child.start_ticks == procs.start_ticks(child.pid)
        assert procs.same_process(child.pid, child.start_ticks)
        assert not procs.same_process(child.pid, child.start_ticks + 1)  # a reused PID
        assert not procs.stop_pid(child.pid, ticks=child.start_ticks + 1)
        assert child.alive()  # left alone
        assert procs.stop_pid(child.pid, ticks=child.start_ticks)
        assert child.popen.wait(timeout=10) == -15
    finally:
        child.stop()
    assert procs.start_ticks(child.pid) is None  # reaped


# ---- the lab's Redis and the secret (threat model: stampede.pod) ----------------------------
def test_the_labs_redis_refuses_a_client_without_the_password(lab: Lab) -> None:
    port = int(urlsplit(lab.redis_url).port or 0)
    with pytest.raises(redis.AuthenticationError), redis.Redis(port=port) as anonymous:
        anonymous.ping()
    with pytest.raises(redis.AuthenticationError), redis.Redis(port=port, password="x") as wrong:
        wrong.ping()
    with lab.redis() as client:  # the URL carries the secret
        assert client.ping()
    assert auth.url_password(lab.redis_url) == lab.secret
    cmdline = Path(f"/proc/{lab.pids[0]}/cmdline").read_bytes()
    assert lab.secret and lab.secret.encode() not in cmdline  # `ps` does not show it
    assert lab.secret not in repr(lab)


def test_configure_refuses_without_the_secret_and_flushes_nothing(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab.configure(StrategyConfig(strategy="naive", origin_latency_ms=10))
    monkeypatch.delenv("STAMPEDE_LAB_SECRET", raising=False)
    attached = Lab.attach(lab.pods, lab.redis_url)
    with lab.redis() as client:
        client.set("kept", b"1")
        with pytest.raises(stampede.LabError, match=r"no lab secret\. Set STAMPEDE_LAB_SECRET"):
            attached.configure(StrategyConfig(strategy="swr"))
        with pytest.raises(stampede.LabError, match="refused the reset"):
            attached.reset()
        assert client.get("kept") == b"1"  # not flushed
    assert {s["config"]["strategy"] for s in lab.stats()} == {"naive"}  # not reconfigured
    attached.stop()


def test_an_attached_lab_named_with_the_secret_configures_and_flushes(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAMPEDE_POD_URLS", ",".join(lab.pods))
    monkeypatch.setenv("STAMPEDE_REDIS_URL", lab.redis_url)
    monkeypatch.setenv("STAMPEDE_LAB_SECRET", lab.secret or "")
    attached = Lab.from_env()
    with lab.redis() as client:
        client.set("flushed", b"1")
        attached.configure(StrategyConfig(strategy="swr", origin_latency_ms=10))
        assert client.exists("flushed") == 0
    assert {s["config"]["strategy"] for s in lab.stats()} == {"swr"}
    attached.stop()


def test_configure_never_flushes_a_redis_that_does_not_demand_the_secret(
    lab: Lab, redis_url: str
) -> None:
    """A foreign Redis (no password), even named with the right secret: refused, kept."""
    lab.configure(StrategyConfig(strategy="naive", origin_latency_ms=10))
    foreign = urlsplit(redis_url)
    with redis.Redis.from_url(redis_url) as client:
        client.set("theirs", b"1")
        for url, said in [
            (auth.redis_url("127.0.0.1", foreign.port or 0, lab.secret), "without a password"),
            (redis_url, "does not carry this lab's secret"),
            (auth.redis_url("127.0.0.1", foreign.port or 0, "other"), "does not carry"),
        ]:
            attached = Lab.attach(lab.pods, url, secret=lab.secret)
            with pytest.raises(stampede.LabError, match=said) as caught:
                attached.configure(StrategyConfig(strategy="swr"))
            assert lab.secret not in str(caught.value)  # messages show the URL redacted
            attached.stop()
        assert client.get("theirs") == b"1"
    assert {s["config"]["strategy"] for s in lab.stats()} == {"naive"}


class ForeignHealth(BaseHTTPRequestHandler):
    """Someone else's web server: answers every GET 200 with a plausible /health."""

    posts: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        body = json.dumps({"status": "ok", "pod": "pod-1", "strategy": "naive"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.posts.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def foreign_http() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ForeignHealth)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def hand_out(monkeypatch: pytest.MonkeyPatch, *ports: int) -> None:
    """``free_ports()`` returns these ports first: the race, with the foreign side winning."""
    queue = list(ports)
    real = procs.free_ports

    def picked(count: int) -> list[int]:
        given = [queue.pop(0) for _ in range(min(count, len(queue)))]
        return given + real(count - len(given))

    monkeypatch.setattr(procs, "free_ports", picked)


def test_a_foreign_http_listener_on_a_pods_port_is_port_in_use(
    foreign_http: int, monkeypatch: pytest.MonkeyPatch, no_new_children: None
) -> None:
    """It took the port between free_ports() and the pod's start, and answers /health 200."""
    hand_out(monkeypatch, procs.free_port(), foreign_http)  # Redis's port, then the pod's
    with pytest.raises(PortInUse, match=rf"127.0.0.1:{foreign_http} is answered by another"):
        Lab.embedded(LabConfig(pods=1))
    assert ForeignHealth.posts == []  # nothing was configured there


def test_a_foreign_redis_on_the_redis_port_is_port_in_use_and_is_not_flushed(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, no_new_children: None
) -> None:
    foreign = urlsplit(redis_url).port or 0
    with redis.Redis.from_url(redis_url) as client:
        client.set("theirs", b"1")
        hand_out(monkeypatch, foreign)
        with (
            pytest.raises(PortInUse, match=rf"port {foreign} .*redis"),
            Lab.embedded(LabConfig(pods=1)) as lab,
        ):
            lab.configure(StrategyConfig())
        assert client.get("theirs") == b"1"


def test_free_ports_are_distinct_and_free() -> None:
    """A cluster takes two ports per node at once: none may be handed out twice."""
    ports = procs.free_ports(40)
    assert len(set(ports)) == 40
    assert all(procs.port_is_free(p) for p in ports)
