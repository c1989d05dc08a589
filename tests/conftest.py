"""Shared fixtures: a real redis-server and a real embedded lab, started once per session.

The in-process suites (locks, the store, the notifier, every strategy's contract) run twice,
through :func:`cache_url`: on one plain ``redis-server`` and on a Redis Cluster of three
primaries that the lab starts (``LabConfig(redis_cluster=3)``, shared with
``tests/test_cluster.py``). Their client is a real cluster client that sends ``KEYS``,
``DBSIZE`` and ``FLUSHALL`` to every primary (:class:`WholeCluster`), so a test's view of
"every key" is the whole cluster's. A script whose keys span slots fails there with
``CROSSSLOT`` (redis-py refuses it before sending), so the cluster half is that check too.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from stampede import procs
from stampede.cache import CacheStore, ReadyNotifier
from stampede.config import LabConfig, StrategyConfig
from stampede.lab import Lab
from stampede.lock import RedisClient
from stampede.origin import Origin, build_origin
from stampede.strategies import Deps, Strategy, create_strategy
from tests.helpers import ORIGIN_LATENCY_S, Clock, MakeStrategy, cache_client


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """Redis and three uvicorn pods on free 127.0.0.1 ports; stopped by PID at the end."""
    with Lab.embedded() as running:
        yield running


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server for in-process tests (locks, strategies), stopped by PID."""
    port = procs.free_port()
    workdir = tmp_path_factory.mktemp("redis")
    server = procs.start(
        "redis-server",
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        log_path=workdir / "redis.log",
    )  # fmt: skip

    def ping() -> bool:
        with redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
            return bool(client.ping())

    try:
        server.wait_ready(ping)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cluster_lab() -> Iterator[Lab]:
    """Three cluster primaries and three pods, started once; stopped by PID at the end."""
    with Lab.embedded(LabConfig(redis_cluster=3)) as running:
        yield running


@pytest.fixture(params=["redis", "cluster"])
def cache_url(request: pytest.FixtureRequest) -> str:
    """The cache the in-process tests use: one Redis, then a 3-primary cluster."""
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return str(request.getfixturevalue("cluster_lab").redis_url)


@pytest.fixture
async def redis_client(cache_url: str) -> AsyncIterator[RedisClient]:
    """An asyncio client on the test's cache, flushed before and after each test."""
    client = cache_client(cache_url)
    await client.flushall()
    try:
        yield client
    finally:
        await client.flushall()
        await client.aclose()


@pytest.fixture(scope="session")
def origin_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_origin(tmp_path_factory.mktemp("origin") / "origin.sqlite3", items=100)


@pytest.fixture
async def origin(origin_file: Path) -> AsyncIterator[Origin]:
    source = Origin(origin_file, latency_s=ORIGIN_LATENCY_S)
    await source.open()
    try:
        yield source
    finally:
        await source.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def notifier(cache_url: str) -> AsyncIterator[ReadyNotifier]:
    ready = ReadyNotifier(lambda: cache_client(cache_url))
    await ready.start()
    try:
        yield ready
    finally:
        await ready.stop()


@pytest.fixture
async def make_strategy(
    redis_client: RedisClient, notifier: ReadyNotifier, clock: Clock
) -> AsyncIterator[MakeStrategy]:
    """Build a registered strategy on the test's Redis, notifier, clock and a seeded RNG."""
    built: list[Strategy] = []

    def make(name: str, **config: Any) -> Strategy:
        deps = Deps(
            redis=redis_client,
            store=CacheStore(redis_client),
            notifier=notifier,
            clock=clock,
            rng=random.Random(7),
        )
        strategy = create_strategy(StrategyConfig(strategy=name, **config), deps)
        built.append(strategy)
        return strategy

    yield make
    for strategy in built:
        await strategy.close()
