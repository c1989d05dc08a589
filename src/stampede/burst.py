"""A minimal reproduction: N concurrent requests for one cold key, spread over the pods.

``cold_burst(lab, "aiocache")`` puts every pod on the strategy over a flushed Redis, releases
``requests`` requests at once (round-robin over ``pods``, default all of them) and counts the
origin reads they caused, per pod. With one pod this is what a library's own tests exercise;
with three it is what a deployment does. Synchronous threads, so a notebook can call it.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from stampede.config import StrategyConfig, validated
from stampede.lab import Lab

__all__ = ["Burst", "cold_burst"]


@dataclass(frozen=True)
class Burst:
    """What one burst did: origin reads (total and per pod) and the responses' outcomes."""

    strategy: str
    requests: int
    pods: int
    origin_reads: int
    reads_per_pod: dict[str, int]
    outcomes: dict[str, int]
    statuses: dict[int, int]


def cold_burst(
    lab: Lab,
    strategy: str,
    *,
    requests: int = 20,
    item: int = 7,
    pods: int | None = None,
    **config: Any,
) -> Burst:
    """Send ``requests`` concurrent GETs for cold ``item`` to the first ``pods`` pods."""
    lab.configure(validated(StrategyConfig, strategy=strategy, **config))
    urls = lab.pods[: pods or len(lab.pods)]
    gate = threading.Barrier(requests)

    def one(i: int) -> tuple[int, str]:
        with httpx.Client(timeout=30) as client:
            gate.wait()
            resp = client.get(f"{urls[i % len(urls)]}/items/{item}")
            return resp.status_code, resp.headers.get("x-cache", "")

    with ThreadPoolExecutor(max_workers=requests) as pool:
        answers = list(pool.map(one, range(requests)))
    stats = lab.stats()
    per_pod = {s["pod"]: sum(1 for r in s["reads"] if r[2] == item) for s in stats}
    return Burst(
        strategy=strategy,
        requests=requests,
        pods=len(urls),
        origin_reads=sum(per_pod.values()),
        reads_per_pod=per_pod,
        outcomes=dict(Counter(outcome for _, outcome in answers)),
        statuses=dict(Counter(status for status, _ in answers)),
    )
