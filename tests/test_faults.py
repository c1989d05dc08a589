"""Faults injected into a real embedded lab: Redis restarted, a pod SIGKILLed, a failing origin.

Each run asserts that the pods recover, that nothing the load sent is unaccounted for, and the
module ends by checking that no lab process (restarted ones included) outlives ``stop()``.
Recovery times are measured from the run's records and fault timeline, never by a timer here.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from redis.asyncio import Redis

from stampede import paths, procs, runner
from stampede.cache import CacheStore
from stampede.config import Fault, LabConfig, StrategyConfig
from stampede.envelope import Entry
from stampede.errors import ConfigError, OriginError
from stampede.fault_report import fault_report, max_concurrency, recovery_s
from stampede.lab import Lab
from stampede.load import backoff_s
from stampede.metrics import accounting
from stampede.origin import Origin, ensure_origin
from stampede.runner import compare, run
from stampede.strategies import Deps, create_strategy
from stampede.workers import drive

SHORT = {"duration_s": 5.0, "rate": 60.0, "clients": 6, "ttl_s": 1.0, "origin_latency_ms": 100.0}
SEEN_PIDS: set[int] = set()


@pytest.fixture(scope="module")
def fault_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab of its own: these tests kill its processes, which the shared one must not see."""
    lab = Lab.embedded(log_dir=tmp_path_factory.mktemp("fault-lab"))
    SEEN_PIDS.update(lab.pids)
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture(autouse=True)
def _private_run_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAMPEDE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("STAMPEDE_POD_URLS", raising=False)


def fault_run(lab: Lab, strategy: str, **params: Any) -> Any:
    result = run(strategy, lab=lab, fresh=True, progress=False, **{**SHORT, **params})
    SEEN_PIDS.update(lab.pids)
    assert result.summary["lost"] == 0
    counted = result.summary["accounting"]
    assert counted["sent"] == counted["responses"] + counted["errors"] + counted["timeouts"]
    assert all(lab.health()), "every pod answers /health after the fault"
    return result


def degraded(records: pd.DataFrame) -> pd.Series:
    return (records["status"] == 0) | (records["status"] >= 500)


def test_redis_restart_fails_open_within_the_bound_and_recovers(fault_lab: Lab) -> None:
    fault = Fault(kind="redis_restart", at_s=1.5, down_s=1.0)
    result = fault_run(fault_lab, "single_flight", faults=[fault])
    (report,) = result.summary["faults"]["report"]
    assert report["fail_open_during"] > 0, "requests were served while Redis was down"
    assert report["errors_during"] == 0
    bound = StrategyConfig().fail_open_concurrency * len(fault_lab.pods)
    assert report["fail_open_concurrency_max"] <= bound
    assert 0 < report["fail_open_reads_during"] <= report["origin_reads_during"]
    assert report["recovery_s"] <= 1.0
    records = result.records
    after = records[records["t"] >= report["up_at_s"] + 1.0]
    assert len(after) and not degraded(after).any()
    assert not (after["outcome"] == "fail_open").any()
    unexpected = result.summary["unexpected"]  # the fault was injected: counted, not marked
    assert unexpected["injected"] and not unexpected["marked"]
    assert unexpected["fail_open"] == result.summary["outcomes"]["fail_open"] > 0


def test_a_run_that_saw_redis_fail_with_no_fault_injected_is_marked(
    fault_lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    def drive_through_an_outage(
        lab: Lab, load: Any, progress: bool, on_start: Callable[[float], None] | None = None
    ) -> Any:
        # Redis restarted behind the run's back: its parameters name no fault
        outage = threading.Timer(1.5, lab.restart_redis, args=(1.0,))

        def started(at: float) -> None:
            if on_start is not None:
                on_start(at)
            outage.start()

        try:
            return drive(lab, load, progress, on_start=started)
        finally:
            outage.join()

    monkeypatch.setattr(runner, "_drive", drive_through_an_outage)
    result = fault_run(fault_lab, "single_flight")
    unexpected = result.summary["unexpected"]
    assert unexpected["marked"] and not unexpected["injected"], unexpected
    assert unexpected["fail_open"] == result.summary["outcomes"].get("fail_open", 0) > 0
    assert sum(v for k, v in unexpected.items() if k.startswith("redis_errors:")) > 0, unexpected
    assert compare([result], columns=["unexpected"]).loc["single_flight", "unexpected"]


def test_redis_restart_without_fail_open_answers_503_only_while_down_and_retries(
    fault_lab: Lab,
) -> None:
    fault = Fault(kind="redis_restart", at_s=1.5, down_s=1.0)
    result = fault_run(
        fault_lab, "single_flight", faults=[fault], fail_open_concurrency=0, retries=3,
        backoff_ms=50.0,
    )  # fmt: skip
    (report,) = result.summary["faults"]["report"]
    records = result.records
    failed = records[degraded(records)]
    assert len(failed) > 0 and (failed["status"] == 503).all()
    answered_at = failed["t"] + failed["latency_ms"] / 1000  # a waiter sent earlier fails too
    assert answered_at.min() >= report["down_at_s"]
    assert failed["t"].max() <= report["up_at_s"] + 1.0  # recovery within 1 s, from records
    assert report["recovery_s"] <= 1.0
    assert result.summary["retries"] == int((records["attempt"] > 0).sum()) > 0
    # every 503 short of the last attempt was followed by a retry of the same client and item
    retried = records[records["attempt"] > 0]
    assert len(retried) <= len(failed)


def test_a_killed_pod_costs_connection_errors_and_no_lock_outlives_its_lease(
    fault_lab: Lab,
) -> None:
    lease_ms = StrategyConfig().lease_ms  # the default lease, not a short one that hides it
    fault = Fault(kind="pod_kill", at_s=1.5, down_s=1.0, pod=1)
    result = fault_run(fault_lab, "single_flight", faults=[fault])
    (report,) = result.summary["faults"]["report"]
    records = result.records
    killed_at = report["down_at_s"]
    after = records[records["t"] >= killed_at]
    others = after[after["pod"] != 1]
    assert len(others) > 0 and not degraded(others).any(), "the load went on over the others"
    # dead from the reap until the restart spawns (killed + down_s); up_at_s is later, once
    # the new process answers its health check, and requests in between may already succeed
    to_dead = after[(after["pod"] == 1) & (after["t"] < killed_at + fault.down_s)]
    assert (to_dead["error"].isin(["connect", "protocol"])).all()
    assert report["errors_during"] == int(degraded(records[records["t"] >= killed_at]).sum())
    locks = report["locks_at_kill"]
    assert all(0 < ttl <= lease_ms for ttl in locks.values()), locks
    assert 1 not in fault_lab.dead
    resp = httpx.get(f"{fault_lab.pods[1]}/items/1")
    assert resp.status_code == 200


def test_origin_errors_are_never_cached(fault_lab: Lab) -> None:
    result = fault_run(fault_lab, "naive", origin_error_rate=0.5, duration_s=3.0, ttl_s=60.0)
    assert result.summary["outcomes"]["error"] > 0
    assert (result.reads["ok"] == False).any()  # noqa: E712 (a pandas mask)
    with fault_lab.redis() as client:
        keys = list(client.scan_iter("item:*"))
        assert keys
        for key in keys:
            entry = Entry.loads(client.get(key))
            assert entry.data()["id"] == CacheStore.item_of(key)


def test_a_flood_of_unknown_ids_reads_the_origin_once(fault_lab: Lab) -> None:
    fault_lab.configure(StrategyConfig(strategy="naive", origin_latency_ms=20))
    fault_lab.reset()
    with httpx.Client() as client:
        answers = [
            client.get(f"{fault_lab.pods[i % 3]}/items/99999").status_code for i in range(30)
        ]
    assert set(answers) == {404}
    reads = [r for s in fault_lab.stats() for r in s["reads"] if r[2] == 99999]
    assert len(reads) == 1


def test_a_waiter_that_times_out_gets_503_with_retry_after(fault_lab: Lab) -> None:
    fault_lab.configure(
        StrategyConfig(strategy="single_flight", origin_latency_ms=1500, wait_timeout_s=0.3)
    )

    async def two() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=10) as client:
            first = asyncio.create_task(client.get(f"{fault_lab.pods[0]}/items/7"))
            await asyncio.sleep(0.2)  # the first one holds the lock by now
            second = await client.get(f"{fault_lab.pods[1]}/items/7")
            return [await first, second]

    first, second = asyncio.run(two())
    assert first.status_code == 200
    assert second.status_code == 503
    assert second.headers["retry-after"] == "1"


async def reading(client: httpx.AsyncClient, lab: Lab, pod: int, item: int) -> float:
    """Wait until pod ``pod`` is reading ``item`` from the origin; the read's start (epoch s)."""
    async with asyncio.timeout(30):  # a hang guard, not a timing
        while True:
            reads = (await client.get(f"{lab.pods[pod]}/stats")).json()["reads"]
            if started := [r[0] for r in reads if r[2] == item and r[1] is None]:
                return float(started[0])
            await asyncio.sleep(0.01)


async def waiting(client: httpx.AsyncClient, lab: Lab, pods: list[int], count: int) -> None:
    """Wait until ``count`` requests on ``pods`` wait for another pod's refresh."""
    async with asyncio.timeout(30):  # a hang guard, not a timing
        while True:
            stats = [(await client.get(f"{lab.pods[p]}/stats")).json() for p in pods]
            if sum(s["counters"].get("waits", 0) for s in stats) >= count:
                return
            await asyncio.sleep(0.01)


def test_a_holder_killed_mid_read_costs_its_key_no_503_and_one_read_after_its_lease(
    fault_lab: Lab,
) -> None:
    """Issue 12: the defaults, a 1 s origin read, the lock's holder SIGKILLed mid-read.

    Its lock stays until the lease ends; the waiters outlast it, one of them takes the lock
    and reads the origin once, and every request for the key gets its value.
    """
    config = StrategyConfig(strategy="single_flight", origin_latency_ms=1000)  # else defaults
    fault_lab.configure(config)
    item, holder, others = 9, 1, [0, 2]
    lock_key, value_key = CacheStore.lock_key(item), CacheStore.key(item)

    async def scenario() -> tuple[list[httpx.Response], float]:
        async with httpx.AsyncClient(timeout=30) as client:
            doomed = asyncio.create_task(client.get(f"{fault_lab.pods[holder]}/items/{item}"))
            await reading(client, fault_lab, holder, item)
            urls = [f"{fault_lab.pods[p]}/items/{item}" for p in others * 3]
            waiters = [asyncio.create_task(client.get(url)) for url in urls]
            await waiting(client, fault_lab, others, len(waiters))
            await asyncio.to_thread(fault_lab.kill_pod, holder)
            measured_at = time.time()
            with fault_lab.redis() as redis:  # one quick call each: the loop may block on them
                lease_left_ms = int(redis.pttl(lock_key))
                assert lease_left_ms > 0, "the holder released its lock before it died"
                assert not redis.exists(value_key), "the holder finished its read first"
            newcomers = [asyncio.create_task(client.get(url)) for url in urls[:2]]
            answers = await asyncio.gather(*waiters, *newcomers)
            with pytest.raises(httpx.TransportError):
                await doomed  # the dead pod's own request: a dropped connection, not a 503
        return answers, measured_at + lease_left_ms / 1000

    try:
        answers, lease_end = asyncio.run(scenario())
        assert [a.status_code for a in answers] == [200] * len(answers), "no 503 for the key"
        assert [a.headers["x-cache"] for a in answers].count("miss") == 1
        reads = [r for p in others for r in httpx.get(f"{fault_lab.pods[p]}/stats").json()["reads"]]
        again = [r for r in reads if r[2] == item]
        assert len(again) == 1, again  # exactly one more origin read for the key...
        assert again[0][0] >= lease_end - 0.001, (again, lease_end)  # ...once the lease is gone
    finally:
        fault_lab.start_pod(holder)
        SEEN_PIDS.update(fault_lab.pids)


def test_stopping_leaves_no_lab_process(fault_lab: Lab) -> None:
    SEEN_PIDS.update(fault_lab.pids)
    fault_lab.stop()
    assert SEEN_PIDS
    assert not [pid for pid in SEEN_PIDS if procs.pid_alive(pid)]


# ---- the same decisions without a lab ----------------------------------------------------


async def test_swr_serves_stale_if_the_origin_fails_and_caches_nothing(
    redis_client: Redis,
) -> None:
    now = [1000.0]
    store = CacheStore(redis_client)
    config = StrategyConfig(strategy="swr", ttl_s=5, stale_s=5)
    swr = create_strategy(config, Deps(redis_client, store, clock=lambda: now[0]))
    stale = Entry(b'{"id":3,"v":"old"}', created_at=990.0, delta=0.1, soft_expiry=995.0)
    await store.put(3, stale, 60, lock=None)

    async def failing() -> dict[str, Any]:
        raise OriginError("origin down")

    fetched = await swr.get(3, failing)
    assert (fetched.outcome, fetched.value) == ("stale", stale.value)
    await asyncio.gather(*swr._background, return_exceptions=True)
    assert await store.get(3) == stale  # nothing replaced the stale value
    assert swr.counters["background_errors"] == 1
    assert not await redis_client.exists(store.lock_key(3))


async def test_a_slow_origin_read_times_out_as_an_origin_error(tmp_path: Path) -> None:
    origin = Origin(ensure_origin(paths.origin_path(), 10), latency_s=0.0)
    origin.slow_rate, origin.slow_s, origin.timeout_s = 1.0, 1.0, 0.05
    await origin.open()
    try:
        with pytest.raises(OriginError, match="timed out"):
            await origin.read(1)
        assert [r.ok for r in origin.reads] == [False]
    finally:
        await origin.close()


def test_backoff_is_full_jitter_below_the_cap() -> None:
    rng = random.Random(1)
    for attempt in range(8):
        delays = [backoff_s(attempt, 100, 1000, rng) for _ in range(200)]
        assert min(delays) >= 0 and max(delays) <= min(1.0, 0.1 * 2**attempt)


def test_a_record_without_a_fate_counts_as_lost() -> None:
    records = pd.DataFrame(
        {"status": [200, 0, 0, 0], "error": ["", "timeout", "connect", ""],
         "outcome": ["hit", "error", "error", "error"]}
    )  # fmt: skip
    assert accounting(records, sent=5) == {
        "sent": 5, "responses": 1, "errors": 1, "timeouts": 1, "lost": 2,
    }  # fmt: skip


def test_fault_pure_functions() -> None:
    assert max_concurrency([(0, 1), (0.5, 2), (1, 3), (2.5, 3)]) == 2
    records = pd.DataFrame(
        {"t": [1.0, 2.1, 2.4, 3.0], "status": [503, 503, 200, 200],
         "outcome": ["error", "error", "hit", "fail_open"]}
    )  # fmt: skip
    assert recovery_s(records, 2.0) == pytest.approx(1.0)


def test_the_fail_open_bound_counts_fail_open_reads_alone() -> None:
    # Redis down 1.0-3.0 s as the injector saw it; the pods saw it back at 2.5 s and refilled
    # the empty cache through their strategy: those reads overlap the fail-open ones.
    records = pd.DataFrame(
        {"t": [1.5, 2.6], "status": [200, 200], "outcome": ["fail_open", "miss"],
         "error": ["", ""]}
    )  # fmt: skip
    reads = pd.DataFrame(
        {"t": [1.2, 1.3, 2.6, 2.7, 2.8], "start": [1.2, 1.3, 2.6, 2.7, 2.8],
         "end": [2.9, 2.9, 3.1, 3.1, 3.1], "fail_open": [True, True, False, False, False]}
    )  # fmt: skip
    events = [{"t": 1.0, "event": "redis_down"}, {"t": 3.0, "event": "redis_up"}]
    (entry,) = fault_report(records, reads, events)
    assert (entry["origin_reads_during"], entry["origin_concurrency_max"]) == (5, 5)
    assert (entry["fail_open_reads_during"], entry["fail_open_concurrency_max"]) == (2, 2)


@pytest.mark.parametrize(
    "params",
    [
        {"faults": [Fault(kind="redis_restart", at_s=4, down_s=2)], "duration_s": 5},
        {"faults": [Fault(kind="pod_kill", at_s=1, pod=5)]},
        {"faults": [{"kind": "fire", "at_s": 1}]},
        {"retries": -1},
        {"origin_slow_rate": 2},
        {"negative_ttl_s": -1},
    ],
)
def test_bad_fault_and_load_parameters_fail_before_anything_starts(
    params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_lab(*args: Any, **kwargs: Any) -> Lab:
        raise AssertionError("a lab was started for invalid parameters")

    monkeypatch.setattr(Lab, "embedded", no_lab)
    with pytest.raises(ConfigError):
        run("single_flight", fresh=True, progress=False, **params)


def test_faults_need_an_embedded_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAMPEDE_POD_URLS", "http://127.0.0.1:9")
    monkeypatch.setenv("STAMPEDE_REDIS_URL", "redis://127.0.0.1:9/0")
    with pytest.raises(ConfigError, match="embedded"):
        run("naive", fresh=True, progress=False, faults=[Fault(kind="pod_kill", at_s=1)])
    assert LabConfig(faults=(Fault(kind="pod_kill", at_s=1, pod=2),)).faults[0].pod == 2
