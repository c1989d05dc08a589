"""The peer adapters (cashews, dogpile.cache, aiocache): registered, truthful, measured.

In-process tests run each adapter against a private Redis; the lab tests send 20 concurrent
requests for one cold key over the three real pods and assert the origin reads each library
makes there, the numbers chapter 8 explains.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis

from stampede.burst import cold_burst
from stampede.cache import CacheStore
from stampede.config import StrategyConfig
from stampede.envelope import json_bytes
from stampede.lab import Lab
from stampede.strategies import Deps, Strategy, create_strategy, strategy_names

peers = pytest.importorskip("stampede.peers", reason="the optional `peers` extra")

CALLERS = 20


class CountingLoader:
    """An origin stand-in: counts its calls, takes ``latency_s``, returns ``{"id": item}``."""

    def __init__(self, item: int, latency_s: float = 0.05) -> None:
        self.item = item
        self.latency_s = latency_s
        self.calls = 0

    async def __call__(self) -> bytes:
        self.calls += 1
        await asyncio.sleep(self.latency_s)
        return json_bytes({"id": self.item, "name": f"item {self.item}"})


@pytest.fixture
def cache_url(redis_url: str) -> str:
    """One Redis: a peer's library brings its own client, set up for one server."""
    return redis_url


@pytest.fixture(params=list(peers.PEERS))
async def peer(request: pytest.FixtureRequest, redis_client: Redis) -> Any:
    deps = Deps(redis=redis_client, store=CacheStore(redis_client))
    strategy = create_strategy(StrategyConfig(strategy=request.param), deps)
    yield strategy
    await strategy.close()


def test_every_peer_is_registered_and_selectable_by_name() -> None:
    assert set(peers.PEERS) == {"cashews_lock", "cashews_early", "dogpile", "aiocache"}
    assert set(peers.PEERS) <= set(strategy_names())
    for name in peers.PEERS:
        assert StrategyConfig(strategy=name).strategy == name  # what `stampede run` validates


@pytest.mark.parametrize("name", peers.PEERS)
def test_each_adapter_records_its_library_settings(name: str) -> None:
    settings = peers.library_settings(name, StrategyConfig(strategy=name, ttl_s=7))
    assert settings["library"].split()[0] in {"cashews", "dogpile.cache", "aiocache"}
    assert settings["cache TTL (s)"] == 7


def test_lock_lifetimes_follow_the_libraries_defaults() -> None:
    config = StrategyConfig(ttl_s=5)
    assert peers.library_settings("cashews_lock", config)["lock TTL (s)"] == 5  # = the TTL
    assert peers.library_settings("cashews_early", config)["early_ttl (s)"] == 1.65
    assert peers.library_settings("aiocache", config)["lease (lock TTL, s)"] == 2
    assert peers.library_settings("dogpile", config)["lock_timeout (lock TTL)"] is None


async def test_a_cold_miss_then_a_hit(peer: Strategy) -> None:
    load = CountingLoader(11)
    first = await peer.get(11, load)
    second = await peer.get(11, load)
    assert (first.outcome, second.outcome) == ("miss", "hit")
    assert first.value == second.value
    assert first.data() == {"id": 11, "name": "item 11"}
    assert load.calls == 1
    assert peer.counters["origin_calls"] == 1


async def test_items_are_cached_independently(peer: Strategy) -> None:
    a, b = CountingLoader(1), CountingLoader(2)
    got = await asyncio.gather(peer.get(1, a), peer.get(2, b))
    assert [f.data()["id"] for f in got] == [1, 2]
    assert (a.calls, b.calls) == (1, 1)


async def test_inside_one_process_a_cold_key_is_read_once(peer: Strategy) -> None:
    """The libraries coalesce concurrent callers inside one process (their own tests' view).

    aiocache only mostly: its RedLock winner registers the waiters' Event after its own
    ``SET NX`` reply, so a loser answered first finds none and reads too (about a third of
    trials here). Its outcomes are still truthful: one ``miss`` per origin read.
    """
    load = CountingLoader(5, latency_s=0.2)
    results = await asyncio.gather(*(peer.get(5, load) for _ in range(CALLERS)))
    outcomes = Counter(r.outcome for r in results)
    assert all(r.data() == {"id": 5, "name": "item 5"} for r in results)
    if peer.name == "aiocache":
        assert 1 <= load.calls <= CALLERS
    else:
        assert load.calls == 1
    # waiters are not observable through the libraries: they count as "hit"
    assert outcomes == +Counter({"miss": load.calls, "hit": CALLERS - load.calls})


async def test_close_releases_the_library_client(peer: Strategy) -> None:
    await peer.get(3, CountingLoader(3))
    await peer.close()
    await peer.close()  # idempotent


# ---- three real pods: what a deployment sees ----------------------------------------------
#: Origin reads for 20 concurrent cold requests over 3 pods, as measured (see chapter 8).
OVER_THREE_PODS = {
    "cashews_lock": (1, 1),  # its Redis lock spans pods
    "dogpile": (1, 1),  # redis-py lock, polled every 100 ms
    "cashews_early": (3, 3),  # no lock on a cold key: one read per pod (in-pod coalescing)
    "aiocache": (7, CALLERS),  # waiters in other pods do not wait: each of them reads
}


@pytest.mark.parametrize("name", [*peers.PEERS, "single_flight"])
def test_twenty_cold_requests_over_three_pods(lab: Lab, name: str) -> None:
    burst = cold_burst(lab, name, requests=CALLERS)
    assert burst.statuses == {200: CALLERS}
    low, high = OVER_THREE_PODS.get(name, (1, 1))
    assert low <= burst.origin_reads <= high, burst
    assert burst.outcomes.get("miss", 0) == burst.origin_reads  # truthful outcomes


def test_aiocache_locks_inside_one_pod_only(lab: Lab) -> None:
    """The same burst on one pod reads once: RedLock's waiters wait on a per-process Event."""
    one_pod = [cold_burst(lab, "aiocache", requests=CALLERS, pods=1) for _ in range(5)]
    three_pods = cold_burst(lab, "aiocache", requests=CALLERS)
    assert min(b.origin_reads for b in one_pod) == 1
    holder_pod = max(three_pods.reads_per_pod, key=lambda pod: -three_pods.reads_per_pod[pod])
    assert three_pods.reads_per_pod[holder_pod] <= 1
    assert three_pods.origin_reads >= 1 + CALLERS // 3
