"""Local lock: coalesces inside one pod, and only there."""

from __future__ import annotations

import asyncio
from collections import Counter

from stampede.origin import Origin
from tests.helpers import MakeStrategy
from tests.strategies.contract import StrategyContract, loader


class TestLocalLockContract(StrategyContract):
    strategy = "local_lock"
    redis_lock = False  # coalesces inside this process only


async def test_two_pods_read_once_each(make_strategy: MakeStrategy, origin: Origin) -> None:
    """Two strategy objects are two pods: an in-process mutex cannot see the other one."""
    pod_a, pod_b = make_strategy("local_lock"), make_strategy("local_lock")
    calls = [pod.get(1, loader(origin)) for _ in range(10) for pod in (pod_a, pod_b)]
    results = await asyncio.gather(*calls)
    assert len(origin.reads) == 2
    outcomes = Counter(r.outcome for r in results)
    assert outcomes["miss"] == 2
    assert outcomes["wait_hit"] + outcomes["hit"] == 18


async def test_single_flight_coalesces_across_pods(
    make_strategy: MakeStrategy, origin: Origin
) -> None:
    """The contrast: with the lock in Redis, two pods make one read."""
    pod_a, pod_b = make_strategy("single_flight"), make_strategy("single_flight")
    calls = [pod.get(1, loader(origin)) for _ in range(10) for pod in (pod_a, pod_b)]
    results = await asyncio.gather(*calls)
    assert len(origin.reads) == 1
    assert Counter(r.outcome for r in results)["miss"] == 1
