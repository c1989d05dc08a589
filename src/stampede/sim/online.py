"""The simulator's event loop: arrivals made online, for what couples the keys.

The batch walk (:mod:`stampede.sim.backend`) knows every arrival before it starts: the open
loop's schedule does not depend on the answers, and with no origin limit the keys never meet.
Two things break that, and issue 13 asks for both:

- **Closed-loop clients** (``pacing="closed"``): each of the ``clients`` sends its next
  request ``think_ms`` after its last answer, so when it sends depends on how long the
  simulated answer took (the response-time law, :func:`stampede.theory.closed_loop_rate`),
  and a client stuck in a herd sends nothing else (:func:`stampede.theory.
  closed_loop_reads_per_window`). The item it asks for and when it stops come from the load
  generator's own :func:`~stampede.load.closed_schedule` on the simulated clock, its pause from
  :func:`~stampede.load.think_s`. A client gives up on an answer slower than the generator's
  ``request_timeout_s`` (a ``timeout`` record, as the lab's) and goes on; the request itself
  runs on (its pod does not know), as in the lab. A 503 (a waiter past ``wait_timeout_s``) is
  resent after the generator's :func:`~stampede.load.backoff_s` when
  :func:`~stampede.load.retried` says so (``retries``), before the client thinks.
- **An origin concurrency limit** (``origin_limit``, :class:`OriginQueue`): at most that
  many reads at once, the rest wait FIFO, so one key's herd delays every other key's read.

Both step each key's own :class:`~stampede.sim.keymodel._Walk` one request at a time, in
global time order: the strategy models are the batch walk's, not a second copy. Stepping
differs from the batch walk in two small ways, both exact for one request at a time: every
naive reader writes its own entry as its ``SET`` lands, and a local_lock pod's waiters are
counted as they arrive. The lab's origin has no such limit (the pods read SQLite as fast as it
answers), so ``origin_limit`` is the simulator's parameter only; it models a database's
connection pool, what a real origin has.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

import numpy as np

from stampede.config import LoadConfig, StrategyConfig
from stampede.errors import ConfigError
from stampede.load import backoff_s, closed_schedule, retried, think_s
from stampede.sim.keymodel import CODES, KeyTrace, _Walk, decision_strategy, model_of
from stampede.sim.timing import Array, Timing

__all__ = ["OriginQueue", "Stepped", "check_origin_limit", "closed_loop", "open_loop"]


def check_origin_limit(limit: int | None) -> None:
    """Refuse an origin limit that is not a positive whole number of reads (None: no limit)."""
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(
            f"origin_limit={limit!r}: must be a whole number of concurrent reads >= 1, "
            "or None (no limit, the lab's origin)"
        )


@dataclass
class OriginQueue:
    """The origin's concurrency limit: ``limit`` reads at once; the others queue, FIFO.

    ``free`` holds when each of the ``limit`` slots is next free (a heap): a read asked for at
    ``start`` takes the earliest slot, waits until it is free, holds it for its duration. FIFO
    in the order reads are asked for, which is arrival order up to a few Redis round trips
    (a read is asked for 1-3 round trips after its request arrives, depending on the strategy).
    """

    limit: int
    free: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_origin_limit(self.limit)
        self.free = [-np.inf] * self.limit

    def admit(self, start: float, duration: float) -> float:
        """Queue one read asked for at ``start``, lasting ``duration``; its wait, s."""
        begin = max(start, heapq.heappop(self.free))
        heapq.heappush(self.free, begin + duration)
        self.waits.append(begin - start)
        return begin - start


@dataclass
class Stepped:
    """Every request of an online run in send order, and each key's trace.

    ``latency`` is the answer's, uncut: a client's timeout is applied to the records
    (:func:`stampede.sim.backend.simulate`), as it is to the open loop's.
    """

    t: Array
    items: Array
    pods: Array
    clients: Array
    outcome: Array
    latency: Array
    traces: dict[int, KeyTrace]
    origin: OriginQueue | None
    attempts: Array | None = None  # the retry's number (0: the first send); None: all 0


class _Keys:
    """Each key's walk, made on its first request, stepped one request at a time."""

    def __init__(
        self,
        config: StrategyConfig,
        n_pods: int,
        timing: Timing,
        seed: int,
        early_lock: bool,
        origin_limit: int | None,
    ) -> None:
        self.rng = random.Random(seed)  # the batch walk's seeds, one stream for every key
        self.nprng = np.random.default_rng(seed + 1)
        self.strategy = decision_strategy(config, self.rng)
        self.model = model_of(config.strategy)
        self.timing, self.n_pods, self.early_lock = timing, n_pods, early_lock
        self.origin = OriginQueue(origin_limit) if origin_limit is not None else None
        self.walks: dict[int, tuple[_Walk, KeyTrace]] = {}

    def step(self, item: int, a: float, pod: int) -> tuple[int, float]:
        """One request for ``item`` at ``a`` on ``pod``: its outcome code and latency, s."""
        if item not in self.walks:
            walk = _Walk(
                self.strategy, self.model, self.timing, self.n_pods, self.rng, self.nprng,
                self.early_lock,
            )  # fmt: skip
            walk.origin, walk.pod_reads, walk.woken = self.origin, {}, (-np.inf, {})
            self.walks[item] = walk, KeyTrace(np.zeros(1, np.int8), np.zeros(1))
        walk, trace = self.walks[item]
        walk.run(np.array([a]), np.array([pod], np.int64), trace)
        return int(trace.outcome[0]), float(trace.latency_s[0])


def open_loop(
    config: StrategyConfig,
    t: Array,
    items: Array,
    pods: Array,
    n_pods: int,
    *,
    timing: Timing,
    seed: int,
    early_lock: bool,
    origin_limit: int | None,
) -> Stepped:
    """The open loop's precomputed arrivals (sorted), stepped in time order across keys."""
    keys = _Keys(config, n_pods, timing, seed, early_lock, origin_limit)
    outcome, latency = np.zeros(len(t), np.int8), np.zeros(len(t))
    for i in range(len(t)):
        outcome[i], latency[i] = keys.step(int(items[i]), float(t[i]), int(pods[i]))
    clients = np.zeros(len(t), np.int64)  # filled by the caller, which knows the schedule
    traces = {item: trace for item, (_, trace) in keys.walks.items()}
    return Stepped(t, items, pods, clients, outcome, latency, traces, keys.origin)


def closed_loop(
    config: StrategyConfig,
    load: LoadConfig,
    n_pods: int,
    *,
    timing: Timing,
    early_lock: bool,
    origin_limit: int | None,
) -> Stepped:
    """``load.clients`` closed-loop clients from t = 0 to ``duration_s``, round robin over pods.

    An event is a client ready to send (after its answer and its think time, or a retry's
    backoff); the earliest is taken from a heap, the simulated clock set to it, and the
    client's own :func:`~stampede.load.closed_schedule` asked for its item (or told the run is
    over). A client waits at most ``request_timeout_s`` for an answer; a retry is sent even
    after the end, as the generator's (it awaits a request's last attempt).
    """
    keys = _Keys(config, n_pods, timing, load.seed, early_lock, origin_limit)
    clock = [0.0]
    schedules = [
        closed_schedule(load, c, load.duration_s, clock=lambda: clock[0])
        for c in range(load.clients)
    ]
    backoff = [random.Random(f"{load.seed}:{c}:backoff") for c in range(load.clients)]
    ready = [(0.0, c) for c in range(load.clients)]  # every client starts at t = 0
    heapq.heapify(ready)
    pause, timeout = think_s(load), load.request_timeout_s
    resend: dict[int, tuple[int, int]] = {}  # client -> (item, attempt) of its next retry
    rows: list[tuple[float, int, int, int, int, float, int]] = []
    turn = itertools.count()
    while ready:
        clock[0], client = heapq.heappop(ready)
        if client in resend:
            (item, attempt), now = resend.pop(client), clock[0]
        else:
            sent = next(schedules[client], None)
            if sent is None:  # past the end: this client is done
                continue
            (now, item), attempt = sent, 0
        pod = next(turn) % n_pods  # the generator's round robin, in send order
        code, latency = keys.step(item, now, pod)
        rows.append((now, item, pod, client, code, latency, attempt))
        if latency > timeout:  # it gives up; the request runs on in its pod
            heapq.heappush(ready, (now + timeout + pause, client))
        elif code == CODES.index("error") and retried(503, "", attempt, load):
            delay = backoff_s(attempt, load.backoff_ms, load.backoff_cap_ms, backoff[client])
            resend[client] = item, attempt + 1
            heapq.heappush(ready, (now + latency + delay, client))
        else:
            heapq.heappush(ready, (now + latency + pause, client))
    cols = list(zip(*rows, strict=True)) if rows else [()] * 7
    traces = {item: trace for item, (_, trace) in keys.walks.items()}
    return Stepped(
        np.asarray(cols[0], float),
        np.asarray(cols[1], np.int64),
        np.asarray(cols[2], np.int64),
        np.asarray(cols[3], np.int64),
        np.asarray(cols[4], np.int8),
        np.asarray(cols[5], float),
        traces,
        keys.origin,
        np.asarray(cols[6], np.int64),
    )
