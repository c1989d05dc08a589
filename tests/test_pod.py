"""The pod's HTTP surface, through real uvicorn pods of the session lab."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio

from stampede import auth, paths, procs
from stampede.cache import CacheStore
from stampede.config import PodSettings, StrategyConfig
from stampede.lab import Lab, pod_command, pod_env
from stampede.load import server_ms
from stampede.pod import MAX_REDIS_CONNECTIONS, PodState, serve_item
from stampede.source import code_version
from tests.helpers import bearer


@pytest.fixture
def http(lab: Lab) -> Iterator[httpx.Client]:
    lab.configure(StrategyConfig(strategy="single_flight", origin_latency_ms=10))
    with httpx.Client(base_url=lab.pods[0], timeout=10, headers=bearer(lab)) as client:
        yield client


def one_line_detail(resp: httpx.Response) -> str:
    detail = resp.json()["detail"]
    assert isinstance(detail, str) and detail
    assert "\n" not in detail
    return detail


def test_item_answers_json_with_its_outcome(http: httpx.Client) -> None:
    first, second = http.get("/items/3"), http.get("/items/3")
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["id"] == 3
    assert first.json() == second.json()
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    # the pod's own time: the miss includes the 10 ms origin read, the hit does not
    miss_ms, hit_ms = (server_ms(r.headers["server-timing"]) for r in (first, second))
    assert miss_ms >= 10 > hit_ms >= 0


@pytest.mark.parametrize("bad", ["abc", "0", "-4", "1.5", str(2**31)])
def test_a_bad_id_is_422_with_one_line(http: httpx.Client, bad: str) -> None:
    resp = http.get(f"/items/{bad}")
    assert resp.status_code == 422
    assert "item_id" in one_line_detail(resp)
    assert repr(bad) in one_line_detail(resp)  # names the bad value


def test_an_unknown_id_is_404_with_one_line(http: httpx.Client, lab: Lab) -> None:
    resp = http.get("/items/999999")
    assert resp.status_code == 404
    assert "999999" in one_line_detail(resp)
    with lab.redis() as client:
        assert client.exists(CacheStore.key(999999)) == 0


def test_origin_failure_is_503_with_retry_after_and_caches_nothing(lab: Lab) -> None:
    lab.configure(StrategyConfig(strategy="single_flight", origin_error_rate=1.0))
    for url in lab.pods:
        resp = httpx.get(f"{url}/items/1", timeout=10)
        assert resp.status_code == 503
        assert resp.headers["retry-after"].isdigit()
        assert resp.headers["x-cache"] == "error"
        assert "item 1" in one_line_detail(resp)
    with lab.redis() as client:
        assert client.exists(CacheStore.key(1)) == 0
        assert client.exists(CacheStore.lock_key(1)) == 0
    assert sum(s["outcomes"].get("error", 0) for s in lab.stats()) == len(lab.pods)


def test_unknown_strategy_in_admin_config_is_422(http: httpx.Client) -> None:
    resp = http.post("/admin/config", json={"strategy": "nope"})
    assert resp.status_code == 422
    detail = one_line_detail(resp)
    assert "nope" in detail and "single_flight" in detail  # names the valid ones
    assert http.get("/health").json()["strategy"] == "single_flight"  # nothing changed


def test_out_of_range_admin_config_is_422(http: httpx.Client) -> None:
    resp = http.post("/admin/config", json={"strategy": "naive", "ttl_s": -1})
    assert resp.status_code == 422
    assert "ttl_s" in one_line_detail(resp)


def test_health_shape(lab: Lab) -> None:
    lab.configure(StrategyConfig(strategy="swr"))
    for i, (url, pid) in enumerate(zip(lab.pods, lab.pids[1:], strict=True), start=1):
        assert httpx.get(f"{url}/health").json() == {
            "status": "ok",
            "pod": f"pod-{i}",
            "strategy": "swr",
            "pid": pid,  # what the lab's readiness probe matches against the PID it started
            "code": code_version(),  # the code this pod started from: run() checks it
        }


def test_stats_shape_and_origin_log(http: httpx.Client) -> None:
    http.get("/items/5")
    http.get("/items/5")
    stats = http.get("/stats").json()
    assert {"pod", "config", "outcomes", "counters", "reads"} <= set(stats)
    assert stats["config"]["strategy"] == "single_flight"
    assert stats["outcomes"] == {"miss": 1, "hit": 1}
    assert stats["counters"]["origin_calls"] == 1
    [(start, end, item, ok, fail_open)] = stats["reads"]
    assert (item, ok, fail_open) == (5, True, False)
    assert start <= end


def test_reset_clears_this_runs_tallies_but_keeps_the_cache(http: httpx.Client) -> None:
    http.get("/items/6")
    assert http.post("/admin/reset").status_code == 200
    stats = http.get("/stats").json()
    assert stats["reads"] == [] and stats["outcomes"] == {}
    assert http.get("/items/6").headers["x-cache"] == "hit"


def test_a_corrupt_cache_entry_is_503_not_500(http: httpx.Client, lab: Lab) -> None:
    """A value that is not an envelope (a foreign writer, a truncated SET) is the cache's fault."""
    with lab.redis() as client:
        client.set(CacheStore.key(5), b"not an envelope", px=60_000)
    resp = http.get("/items/5")
    assert resp.status_code == 503
    assert resp.headers["x-cache"] == "error"
    assert resp.headers["retry-after"].isdigit()
    assert "not an envelope" in one_line_detail(resp)


def test_the_fast_path_answers_what_fastapi_documents(http: httpx.Client) -> None:
    """Same bytes and headers as the route's own JSON (the fast path skips FastAPI)."""
    resp = http.get("/items/7")
    assert resp.headers["content-type"] == "application/json"
    assert int(resp.headers["content-length"]) == len(resp.content)
    assert resp.json()["id"] == 7
    assert http.get("/items/007").json() == resp.json()  # FastAPI's int parsing, too
    assert http.head("/items/7").status_code == 405  # not GET: FastAPI answers as before


def test_a_redis_that_answers_with_an_error_is_503_not_fail_open(lab: Lab) -> None:
    """Fail open is for a Redis that cannot be reached; OOM (or READONLY) is a 503."""
    lab.configure(StrategyConfig(strategy="naive", origin_latency_ms=1))
    with lab.redis() as client:
        client.config_set("maxmemory", "1")
        client.config_set("maxmemory-policy", "noeviction")
        try:
            resp = httpx.get(f"{lab.pods[0]}/items/9", timeout=10)
        finally:
            client.config_set("maxmemory", "0")
    assert resp.status_code == 503
    assert resp.headers["x-cache"] == "error"
    assert "maxmemory" in one_line_detail(resp)
    stats = lab.stats()[0]
    assert stats["outcomes"].get("fail_open", 0) == 0
    assert stats["counters"]["redis_errors:OutOfMemoryError"] == 1


# ---- the control plane: the lab secret and the Host check (threat model: stampede.pod) -----
def counts(lab: Lab) -> list[tuple[str, dict[str, int], int]]:
    """What a refused call must not change: each pod's strategy, outcome counts, origin reads."""
    return [(s["config"]["strategy"], s["outcomes"], len(s["reads"])) for s in lab.stats()]


@pytest.mark.parametrize(
    ("headers", "said"),
    [
        ({}, "needs Authorization: Bearer"),
        ({"Authorization": "Bearer not-the-secret"}, "does not carry this lab's secret"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "does not carry this lab's secret"),
    ],
)
def test_admin_without_the_secret_is_403_and_changes_nothing(
    http: httpx.Client, lab: Lab, headers: dict[str, str], said: str
) -> None:
    http.get("/items/4")
    before = counts(lab)
    for url in lab.pods:
        for path, body in [("/admin/reset", None), ("/admin/config", {"strategy": "naive"})]:
            resp = httpx.post(f"{url}{path}", json=body, headers=headers, timeout=10)
            assert resp.status_code == 403, (url, path)
            assert said in one_line_detail(resp)
    assert counts(lab) == before  # no reset, still single_flight
    assert httpx.get(f"{lab.pods[0]}/items/4").headers["x-cache"] == "hit"  # cache kept


def test_admin_with_the_secret_in_another_case_of_bearer_is_accepted(lab: Lab) -> None:
    headers = {"Authorization": f"bearer {lab.secret}"}  # the scheme is case-insensitive
    assert httpx.post(f"{lab.pods[0]}/admin/reset", headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/items/1"), ("GET", "/items/abc"), ("GET", "/health"), ("GET", "/stats"),
     ("GET", "/openapi.json"), ("POST", "/admin/reset")],
)  # fmt: skip
def test_a_foreign_host_is_403_on_every_route_and_changes_nothing(
    http: httpx.Client, lab: Lab, method: str, path: str
) -> None:
    """DNS rebinding: a page of evil.example reaches 127.0.0.1 under its own name."""
    http.get("/items/4")
    before = counts(lab)
    resp = http.request(method, path, headers={"Host": "evil.example"})  # the secret, too
    assert resp.status_code == 403
    assert "'evil.example' is not one of this pod's addresses" in one_line_detail(resp)
    assert counts(lab) == before  # no origin read, no count, no reset


def test_the_pods_own_loopback_names_are_admitted_and_other_ports_are_not(lab: Lab) -> None:
    port = int(lab.pods[0].rsplit(":", 1)[1])
    for host, status in [
        (f"127.0.0.1:{port}", 200), (f"localhost:{port}", 200), (f"LOCALHOST:{port}", 200),
        (f"[::1]:{port}", 200), (f"127.0.0.1:{port + 1}", 403), ("127.0.0.1", 403),
        (f"127.0.0.2:{port}", 403), (f"evil.example:{port}", 403), ("", 403),
    ]:  # fmt: skip
        resp = httpx.get(f"{lab.pods[0]}/items/1", headers={"Host": host}, timeout=10)
        assert resp.status_code == status, host


def test_names_in_allowed_hosts_are_admitted(lab: Lab, tmp_path: Path) -> None:
    """What compose and k8s set: their service names (any port) and exact host:port entries."""
    port = procs.free_port()
    env = pod_env("pod-x", lab.redis_url, paths.origin_path(), StrategyConfig(), lab.secret or "")
    env[auth.ALLOWED_HOSTS_ENV] = "pod-x, Proxy.Example:8443"
    pod = procs.start("pod-x", pod_command(port), log_path=tmp_path / "pod-x.log", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        pod.wait_ready(lambda: httpx.get(f"{url}/health", timeout=1).status_code == 200, 90)
        for host, status in [
            ("pod-x:8000", 200), ("pod-x", 200), ("proxy.example:8443", 200),
            ("proxy.example:8444", 403), ("pod-y:8000", 403), (f"127.0.0.1:{port}", 200),
        ]:  # fmt: skip
            resp = httpx.get(f"{url}/health", headers={"Host": host}, timeout=10)
            assert resp.status_code == status, host
    finally:
        pod.stop()


def test_a_pod_without_a_secret_keeps_admin_closed(lab: Lab, tmp_path: Path) -> None:
    port = procs.free_port()
    env = pod_env("pod-x", lab.redis_url, paths.origin_path(), StrategyConfig(), "")
    pod = procs.start("pod-x", pod_command(port), log_path=tmp_path / "pod-x.log", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        pod.wait_ready(lambda: httpx.get(f"{url}/health", timeout=1).status_code == 200, 90)
        for headers in [{}, {"Authorization": "Bearer x"}, {"Authorization": "Bearer"}]:
            resp = httpx.post(f"{url}/admin/reset", headers=headers)
            assert resp.status_code == 403
            assert "started without STAMPEDE_LAB_SECRET" in one_line_detail(resp)
    finally:
        pod.stop()


async def test_a_herd_of_commands_waits_for_a_bounded_pool(
    redis_url: str, origin_file: Path
) -> None:
    # three times the pool's size of commands at once, each holding its connection 0.2 s (as
    # a burst of polling waiters would, briefly): they queue for connections, none opens more
    state = PodState(PodSettings(redis_url=redis_url, origin_path=origin_file))
    herd = 3 * MAX_REDIS_CONNECTIONS
    observer = redis.asyncio.Redis.from_url(redis_url)
    try:
        before = (await observer.info("clients"))["connected_clients"]
        waits = asyncio.gather(*(state.redis.blpop(["no-such-list"], 0.2) for _ in range(herd)))
        await asyncio.sleep(0.1)
        during = (await observer.info("clients"))["connected_clients"]
        assert await waits == [None] * herd
        assert during - before <= MAX_REDIS_CONNECTIONS
        assert state.redis.round_trips == herd
    finally:
        await state.redis.aclose()
        await observer.aclose()


async def test_a_cluster_herd_waits_for_a_slot_instead_of_failing(
    cluster_lab: Lab, origin_file: Path
) -> None:
    # redis-py's cluster pool raises MaxConnectionsError past 100 commands in flight to one
    # node; 192 at once to the hot key's node are answered, each after waiting its turn
    state = PodState(PodSettings(redis_url=cluster_lab.redis_url, origin_path=origin_file))
    herd = 3 * MAX_REDIS_CONNECTIONS
    try:
        await state.warm_redis()  # as a pod does before its first request
        warm = state.redis.round_trips
        waits = [state.redis.blpop(["no-such-list"], 0.2) for _ in range(herd)]
        assert await asyncio.gather(*waits) == [None] * herd
        assert state.redis.round_trips - warm == herd
    finally:
        await state.redis.aclose()


async def test_an_unhandled_exception_is_a_counted_500(
    redis_url: str, origin_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a bug in a strategy or a peer library: the generator's 500 and the pod's count agree
    state = PodState(PodSettings(redis_url=redis_url, origin_path=origin_file))

    async def broken(item: int, load: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(state.strategy, "get", broken)
    try:
        answer = await serve_item(5, state)
    finally:
        await state.redis.aclose()
    assert answer.status == 500 and (b"x-cache", b"error") in answer.headers
    assert b"RuntimeError" in answer.body
    assert state.outcomes == {"error": 1}
    assert state.strategy.counters["unhandled_errors:RuntimeError"] == 1
