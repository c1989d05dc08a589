"""The load generator: loopback only, the traffic mix, and every request accounted for."""

from __future__ import annotations

import gc
import random
import socket
from collections import Counter
from collections.abc import Iterator

import pytest

from stampede.config import LoadConfig, StrategyConfig
from stampede.errors import ConfigError
from stampede.lab import Lab
from stampede.load import (
    backoff_s,
    check_loopback,
    collector_paused,
    generate,
    item_chooser,
    server_ms,
)


@pytest.fixture(autouse=True)
def no_allowed_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STAMPEDE_ALLOW_HOSTS", raising=False)


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1:8000", "http://192.0.2.1", "http://example.com:80", "http://0.0.0.0:8000",
     "http://localhost.example.com", "http://[2001:db8::1]:80", "not a url"],
)  # fmt: skip
def test_check_loopback_refuses_other_hosts(url: str) -> None:
    with pytest.raises(ConfigError, match="not a loopback address"):
        check_loopback(["http://127.0.0.1:8000", url])


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://127.0.0.2:1", "http://localhost:80", "http://[::1]:8"]
)
def test_check_loopback_accepts_this_machine(url: str) -> None:
    check_loopback([url])


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.setblocking(False)
        yield sock


async def test_generate_refuses_before_sending_anything(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    load = LoadConfig(duration_s=1, rate=10, clients=1)
    with pytest.raises(ConfigError, match=r"192\.0\.2\.1"):
        await generate([f"http://127.0.0.1:{port}", "http://192.0.2.1:80"], load)
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected, not even to the loopback pod


def test_hot_key_mix_puts_the_hot_share_on_the_hot_item() -> None:
    load = LoadConfig(hot_share=0.95, items=100, hot_item=1)
    choose = item_chooser(load, random.Random(0))
    draws = Counter(choose() for _ in range(20_000))
    assert draws[1] / 20_000 == pytest.approx(0.95, abs=0.01)
    assert set(draws) <= set(range(1, 101))
    others = [draws[i] for i in range(2, 101)]
    assert min(others) > 0  # the rest is spread over every other item
    assert max(others) < 3 * (sum(others) / len(others))


def test_hot_share_edges() -> None:
    never = item_chooser(LoadConfig(hot_share=0.0, items=10), random.Random(1))
    assert 1 not in {never() for _ in range(2_000)}
    single = item_chooser(LoadConfig(hot_share=0.5, items=1), random.Random(1))
    assert {single() for _ in range(100)} == {1}


def test_item_choice_is_reproducible_with_a_seed() -> None:
    load = LoadConfig()
    a, b = item_chooser(load, random.Random(9)), item_chooser(load, random.Random(9))
    assert [a() for _ in range(500)] == [b() for _ in range(500)]


def test_bulk_warm_covers_exactly_the_warm_items() -> None:
    load = LoadConfig(scenario="bulk_warm", warm_items=40, items=100)
    choose = item_chooser(load, random.Random(2))
    draws = Counter(choose() for _ in range(8_000))
    assert set(draws) == set(range(1, 41))
    assert max(draws.values()) < 2 * min(draws.values())  # uniform, not a hot key


def test_backoff_is_full_jitter_under_the_cap() -> None:
    rng = random.Random(4)
    for attempt in range(8):
        ceiling = min(2000, 100 * 2**attempt) / 1000
        draws = [backoff_s(attempt, 100, 2000, rng) for _ in range(500)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > 0.9 * ceiling


async def test_generate_against_the_lab_accounts_for_every_request(lab: Lab) -> None:
    lab.configure(StrategyConfig(strategy="single_flight", origin_latency_ms=20))
    load = LoadConfig(duration_s=2, rate=30, clients=3, seed=1)
    records, sent = await generate(lab.pods, load)
    assert sent > 20  # ~60 expected at 30 req/s for 2 s
    assert len(records) == sent
    assert all(r.status == 200 and r.error == "" for r in records)
    assert {r.outcome for r in records} <= {"hit", "miss", "wait_hit"}
    per_pod = Counter(r.pod for r in records)
    assert set(per_pod) == {0, 1, 2}
    assert max(per_pod.values()) - min(per_pod.values()) <= 1  # round-robin
    t0 = min(r.t_sched for r in records)
    assert all(r.t_sched < t0 + load.duration_s for r in records)
    served = sum(sum(s["outcomes"].values()) for s in lab.stats())
    assert served == sent  # the pods saw exactly what was sent
    # the pod's own time is recorded and is part of what the client measured
    assert all(0 <= r.server_ms <= r.latency_ms for r in records)
    misses = [r.server_ms for r in records if r.outcome == "miss"]
    assert misses and min(misses) >= 20  # a miss includes the 20 ms origin read


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("app;dur=12.5", 12.5),
        ("db;dur=3, app;dur=7", 7.0),
        ("app;dur=7, db;dur=3", 7.0),
        ("", None),
        ("app;dur=soon", None),
        ("db;dur=3", None),
    ],
)
def test_server_ms_reads_the_apps_server_timing(header: str, expected: float | None) -> None:
    got = server_ms(header)
    assert got == expected if expected is not None else got != got  # NaN when absent


def test_the_collector_is_paused_for_the_run_and_restored_after() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0  # what existed before the run is never scanned
        raise RuntimeError("a run that fails still gives the collector back")
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
