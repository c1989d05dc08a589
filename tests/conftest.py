"""Shared fixtures: a real redis-server and a real embedded lab, started once per session."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from stampede import procs
from stampede.cache import CacheStore, ReadyNotifier
from stampede.config import StrategyConfig
from stampede.lab import Lab
from stampede.origin import Origin, build_origin
from stampede.strategies import Deps, Strategy, create_strategy
from tests.helpers import ORIGIN_LATENCY_S, Clock, MakeStrategy


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


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """An asyncio client on the private Redis, flushed before and after each test."""
    client = Redis.from_url(redis_url)
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
async def notifier(redis_url: str) -> AsyncIterator[ReadyNotifier]:
    ready = ReadyNotifier(lambda: Redis.from_url(redis_url))
    await ready.start()
    try:
        yield ready
    finally:
        await ready.stop()


@pytest.fixture
async def make_strategy(
    redis_client: Redis, notifier: ReadyNotifier, clock: Clock
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
