"""The fleet engine (every key, one TTL cycle per step) agrees with the per-key engine."""

from __future__ import annotations

import pytest

from stampede import sim
from stampede.errors import ConfigError
from stampede.sim.fleet import zipf_rates

CYCLE_S = 1.0 + 0.2 + 0.2  # TTL + herd + the last writer's read, at 1,000 req/s


def test_zipf_rates_split_the_traffic() -> None:
    rates = zipf_rates(1000.0, 4, 1.0)
    assert rates.sum() == pytest.approx(1000.0)
    assert rates[0] / rates[3] == pytest.approx(4.0)
    assert zipf_rates(10.0, 5, 0.0).tolist() == [2.0] * 5


def test_naive_herd_matches_the_closed_form_and_the_key_engine() -> None:
    run = sim.fleet(
        "naive",
        pods=3,
        rate=1000,
        keys=1,
        duration_s=2100 * CYCLE_S,
        timing=sim.ZERO,
        ttl_s=1.0,
        origin_latency_ms=200,
    )
    herds = run.hot_reads_per_expiry[1:]
    assert len(herds) >= 2000
    assert sum(herds) / len(herds) == pytest.approx(1 + 1000 * 0.2, rel=0.05)
    assert run.requests == pytest.approx(1000 * 2100 * CYCLE_S, rel=0.01)


def test_local_lock_reads_once_per_pod() -> None:
    run = sim.fleet(
        "local_lock",
        pods=10,
        rate=1000,
        keys=1,
        duration_s=300,
        timing=sim.ZERO,
        ttl_s=1.0,
        origin_latency_ms=200,
    )
    assert set(run.hot_reads_per_expiry[1:]) == {10}


def test_poll_and_notify_redis_cost_match_the_key_engine() -> None:
    common = dict(timing=sim.ZERO, ttl_s=1.0, origin_latency_ms=200, poll_ms=50)
    for wait in ("poll", "notify"):
        key = sim.poisson_key("single_flight", rate=500, expiries=2000, pods=7, wait=wait, **common)
        o = key.outcomes()
        per_request_key = key.trace.trips / sum(o.values())
        run = sim.fleet(
            "single_flight", pods=7, rate=500, keys=1, duration_s=2000 * 1.2, wait=wait, **common
        )
        assert run.redis_commands / run.requests == pytest.approx(per_request_key, rel=0.03)
        refreshes = len(run.hot_reads_per_expiry)
        assert run.pubsub_deliveries == (7 * refreshes if wait == "notify" else 0)


def test_notify_fan_out_multiplies_the_redis_load() -> None:
    # 1,000 pods each receive every ready message: a refresh costs 1,000 deliveries, against
    # polling's ~6 commands per waiter and ~2 waiters per refresh of a typical key here
    common = dict(pods=1000, rate=100_000, keys=10_000, duration_s=20)
    poll = sim.fleet("single_flight", wait="poll", **common)
    notify = sim.fleet("single_flight", wait="notify", **common)
    assert notify.pubsub_deliveries == 1000 * notify.origin_reads
    assert notify.redis_busiest_utilisation > 5 * poll.redis_busiest_utilisation


def test_swr_serves_stale_and_reads_once_per_cycle() -> None:
    run = sim.fleet(
        "swr",
        pods=3,
        rate=1000,
        keys=1,
        duration_s=120,
        timing=sim.ZERO,
        ttl_s=1.0,
        origin_latency_ms=200,
    )
    assert set(run.hot_reads_per_expiry) == {1}
    assert run.stale >= 0.9 * 1000 * 0.2 * (len(run.hot_reads_per_expiry) - 1)


def test_bad_fleet_parameters_are_named() -> None:
    with pytest.raises(ConfigError, match="pods"):
        sim.fleet("naive", pods=0)
    with pytest.raises(ConfigError, match="no fleet model"):
        sim.fleet("xfetch")
    with pytest.raises(ConfigError, match="rate"):
        sim.fleet("naive", rate=0)
