"""The origin's read log: a read is in it from its start, and a new log forgets old reads."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stampede.origin import Origin
from tests.helpers import eventually


async def started(origin: Origin) -> None:
    async def logged() -> bool:
        return bool(origin.log())

    await eventually(logged)  # the read task runs once this one yields


async def test_a_read_in_flight_is_logged_with_no_end(origin_file: Path) -> None:
    origin = Origin(origin_file, latency_s=0.5)
    await origin.open()
    try:
        read = asyncio.create_task(origin.read(5))
        await started(origin)
        ((pending,),) = [origin.log()]
        assert pending.in_flight and pending.end is None and not pending.ok
        assert pending.item == 5 and origin.reads == []  # not finished yet
        await read
        ((done,),) = [origin.log()]
        assert done.start == pending.start and not done.in_flight and done.ok
        assert origin.reads == [done]
    finally:
        await origin.close()


async def test_a_read_that_began_before_clear_is_not_in_the_new_log(origin_file: Path) -> None:
    origin = Origin(origin_file, latency_s=0.2)
    await origin.open()
    try:
        read = asyncio.create_task(origin.read(6))
        await started(origin)
        origin.clear()
        assert origin.log() == []
        await read
        assert origin.log() == [] and origin.reads == []
    finally:
        await origin.close()
