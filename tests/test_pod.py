"""The pod's HTTP surface, through real uvicorn pods of the session lab."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from stampede.config import StrategyConfig
from stampede.lab import Lab
from stampede.load import server_ms
from stampede.source import code_version


@pytest.fixture
def http(lab: Lab) -> Iterator[httpx.Client]:
    lab.configure(StrategyConfig(strategy="single_flight", origin_latency_ms=10))
    with httpx.Client(base_url=lab.pods[0], timeout=10) as client:
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
        assert client.exists("item:999999") == 0


def test_origin_failure_is_503_with_retry_after_and_caches_nothing(lab: Lab) -> None:
    lab.configure(StrategyConfig(strategy="single_flight", origin_error_rate=1.0))
    for url in lab.pods:
        resp = httpx.get(f"{url}/items/1", timeout=10)
        assert resp.status_code == 503
        assert resp.headers["retry-after"].isdigit()
        assert resp.headers["x-cache"] == "error"
        assert "item 1" in one_line_detail(resp)
    with lab.redis() as client:
        assert client.exists("item:1") == 0
        assert client.exists("lock:item:1") == 0
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
    for i, url in enumerate(lab.pods, start=1):
        assert httpx.get(f"{url}/health").json() == {
            "status": "ok",
            "pod": f"pod-{i}",
            "strategy": "swr",
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
    [(start, end, item, ok)] = stats["reads"]
    assert (item, ok) == (5, True)
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
        client.set("item:5", b"not an envelope", px=60_000)
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
