"""Small helpers shared by several test modules."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from stampede.lab import Lab
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
