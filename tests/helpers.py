"""Small helpers shared by several test modules."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis, RedisCluster

from stampede import auth
from stampede.lab import Lab
from stampede.lock import RedisClient
from stampede.strategies import Strategy

ORIGIN_LATENCY_S = 0.05  # the in-process origin: slow enough for a herd to form
MakeStrategy = Callable[..., Strategy]


def child_pids() -> set[int]:
    """PIDs whose parent is this pytest process (a /proc scan, zombies excluded)."""
    me = os.getpid()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def bearer(lab: Lab) -> dict[str, str]:
    """The ``Authorization`` header every ``/admin`` call of ``lab`` needs."""
    return {"Authorization": f"Bearer {lab.secret}"}


class Clock:
    """Real time plus an offset the test moves: values age without the test sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


async def eventually(check: Callable[[], Awaitable[bool]], limit_s: float = 5.0) -> None:
    """Poll ``check`` until it holds; fail after ``limit_s`` (a hang guard, not a timing).

    The state polled lives in Redis or in another task's counters, where no event is set.
    """
    async with asyncio.timeout(limit_s):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def outside_redis(tasks: list[asyncio.Task[object]]) -> Callable[[], Awaitable[bool]]:
    """A check for :func:`eventually`: every task is suspended, none inside a redis-py call.

    redis-py 8.1.0 swallows a ``CancelledError`` that lands while a command is in flight (the
    task goes on as if the command had returned), so tests cancel only between commands.
    """

    async def check() -> bool:
        for task in tasks:
            if task.done():
                continue
            if any("/redis/" in frame.f_code.co_filename for frame in task.get_stack(limit=50)):
                return False
        return True

    return check


class WholeCluster(RedisCluster):
    """redis-py's cluster client with ``KEYS``/``DBSIZE``/``MGET``/``INFO commandstats`` and
    ``CONFIG RESETSTAT`` over every primary.

    redis-py sends those to one node unless told (``MGET`` across slots is refused); a
    test that asks for "every key" means the cluster's.
    """

    async def keys(self, pattern: Any = "*", **kwargs: Any) -> Any:  # type: ignore[override]
        return await super().keys(pattern, target_nodes=RedisCluster.PRIMARIES, **kwargs)

    async def dbsize(self, **kwargs: Any) -> Any:  # type: ignore[override]
        return await super().dbsize(target_nodes=RedisCluster.PRIMARIES, **kwargs)

    async def mget(self, keys: Any, *args: Any) -> Any:  # type: ignore[override]
        return await self.mget_nonatomic(keys, *args)

    async def config_resetstat(self, **kwargs: Any) -> Any:  # type: ignore[override]
        return await super().config_resetstat(target_nodes=RedisCluster.PRIMARIES, **kwargs)

    async def info(self, section: Any = None, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """``INFO commandstats`` summed over the primaries (other sections: one node's)."""
        if section != "commandstats":
            return await super().info(section, *args, **kwargs)
        per_node = await super().info(section, target_nodes=RedisCluster.PRIMARIES)
        total: dict[str, dict[str, int]] = {}
        for stats in per_node.values():
            for name, fields in stats.items():
                total.setdefault(name, {"calls": 0})["calls"] += int(fields["calls"])
        return total


def cache_client(url: str) -> RedisClient:
    """An asyncio client of ``url``: :class:`WholeCluster` for a ``redis-cluster://`` URL."""
    if auth.is_cluster_url(url):
        return WholeCluster.from_url(auth.client_url(url))
    return Redis.from_url(url)
