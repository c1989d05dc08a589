"""One key, request by request: the exact model of every strategy, around each expiry.

A key's requests are independent of every other key's (the origin has no concurrency limit in
the lab, and a Redis shard far from saturation answers in one round trip), so the simulator
walks each key's sorted arrival times on its own. A closed loop or an origin limit couples the
keys: :mod:`stampede.sim.online` then steps the same walk one request at a time
(:meth:`_Walk.run` with one arrival and the key's trace so far). Between expiries a run of
plain hits is one ``searchsorted``; requests near an expiry (the herd, the waiters, the early
refreshes, the stale answers) are decided one by one, by the strategy's own code:

- the TTL a write gets is :func:`stampede.cache.jittered_ttl` with the strategy's ``jitter``;
- Redis' hard TTL is the strategy's :meth:`~stampede.strategies.base.Strategy.hard_ttl_s`, its
  stale window :meth:`~stampede.strategies.base.Strategy.stale_window_s`;
- freshness is :meth:`Entry.is_fresh <stampede.envelope.Entry.is_fresh>`; whether a fresh
  value is refreshed early is the strategy's own ``should_refresh`` (XFetch's
  :func:`~stampede.strategies.xfetch.should_refresh_early`, fixed_cutoff's cut-off), called
  once per request with the simulator's seeded ``random.Random``.

What each strategy does on a miss (:data:`MODELS`) follows its ``get``: naive reads the origin
(``GET``, ``EXISTS`` of the negative cache, the read, ``SET``); local_lock lets one request per
pod read; single_flight's winner claims the lock and the others wait, polling (``GET`` every
``poll_ms``, a failed poll claims again) or woken by the pub/sub message; swr serves stale and
refreshes in the background. Round trips are counted as those code paths send them (a Lua
script is one trip).

Not modelled: faults, origin errors and slow reads, a pod's CPU queue (only the order in which a
pod answers the waiters one refresh woke), a lock lease that expires mid-read.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, cast

import numpy as np
from redis.asyncio import Redis

from stampede.cache import CacheStore, jittered_ttl
from stampede.config import StrategyConfig
from stampede.envelope import Entry
from stampede.metrics import OUTCOMES
from stampede.registry import strategy_class
from stampede.sim.timing import Array, Timing

if TYPE_CHECKING:
    from stampede.sim.online import OriginQueue
from stampede.strategies.base import Deps, Strategy
from stampede.strategies.early import EarlyRefresh

__all__ = [
    "CODES",
    "LAB_ONLY",
    "MODELS",
    "KeyTrace",
    "Model",
    "decision_strategy",
    "model_of",
    "simulate_key",
    "unmodelled",
]

CODES = OUTCOMES  # the outcomes every summary counts, in the metric table's order
"""Outcome codes of :attr:`KeyTrace.outcome`: the index into this tuple."""
HIT, MISS, WAIT_HIT, STALE, EARLY, ERROR = range(len(CODES))


@dataclass(frozen=True)
class Model:
    """How a strategy's ``get`` is put together: its miss path, stale path, early path."""

    miss: Literal["naive", "local", "flight"]
    stale: bool = False  # serves a value past its soft expiry while one pod refreshes (swr)
    early: bool = False  # asks should_refresh on every fresh value (xfetch, fixed_cutoff)


MODELS: dict[str, Model] = {
    "naive": Model("naive"),
    "jitter": Model("naive"),
    "local_lock": Model("local"),
    "single_flight": Model("flight"),
    "swr": Model("flight", stale=True),
    "xfetch": Model("flight", early=True),
    "fixed_cutoff": Model("flight", early=True),
    "recommended": Model("flight", stale=True, early=True),
}
"""Every built-in strategy's model; tests fail when a registered name has neither this nor
:data:`LAB_ONLY`."""

LAB_ONLY = frozenset({"cashews_lock", "cashews_early", "dogpile", "aiocache"})
"""The peer libraries: their Redis protocols are their own, so only the lab measures them."""


def unmodelled() -> list[str]:
    """Registered strategies with neither a model nor a place in :data:`LAB_ONLY`."""
    from stampede.registry import strategy_names

    return [n for n in strategy_names() if n not in MODELS and n not in LAB_ONLY]


def model_of(name: str) -> Model:
    try:
        return MODELS[name]
    except KeyError:
        from stampede.errors import ConfigError

        where = "is lab-only (a peer library)" if name in LAB_ONLY else "has no model"
        raise ConfigError(
            f"strategy {name!r} {where}; the simulator models: {', '.join(MODELS)}"
        ) from None


def decision_strategy(config: StrategyConfig, rng: random.Random) -> Strategy:
    """The strategy object itself, with no Redis: the simulator only calls its decisions."""
    cls = strategy_class(config.strategy)
    deps = Deps(redis=cast(Redis, None), store=cast(CacheStore, None), rng=rng)
    return cls(deps, config)


@dataclass
class KeyTrace:
    """What one key's requests got, and what its strategy did to the origin and Redis."""

    outcome: Array  # int8 codes into CODES, one per request
    latency_s: Array  # client-side latency, s
    chunks: list[Array] = field(default_factory=list, repr=False)
    episodes: list[int] = field(default_factory=list)  # origin reads per refresh episode
    episode_starts: list[float] = field(default_factory=list)
    trips: int = 0  # Redis round trips of the pods' client
    # Commands a script ran inside it, which INFO commandstats counts beside the script's own
    # EVALSHA (so commands = trips + inner): the cold path's CLAIM and FILL, and the FILL of
    # swr's and the early strategies' background refreshes. Naive and local_lock run none.
    inner: int = 0
    messages: int = 0  # pub/sub deliveries (one per subscribed pod per message)
    early_attempts: int = 0
    head_starts: list[float] = field(default_factory=list)  # soft expiry - first early refresh

    def reset(self, n: int) -> KeyTrace:
        """Fresh per-request arrays for the next ``n`` requests; the counts and reads go on.

        The online engine (:mod:`stampede.sim.online`) steps a key one request at a time and
        keeps one trace per key across the steps.
        """
        self.outcome, self.latency_s = np.zeros(n, np.int8), np.zeros(n)
        return self

    @property
    def reads(self) -> Array:
        """Origin reads, one row each: start, end, pod (s; pod as a float)."""
        return np.concatenate(self.chunks) if self.chunks else np.empty((0, 3))


class _Walk:
    """The state of one key while its requests are walked in time order."""

    def __init__(
        self,
        strategy: Strategy,
        model: Model,
        timing: Timing,
        pods: int,
        rng: random.Random,
        nprng: np.random.Generator,
        early_lock: bool,
    ) -> None:
        self.s, self.m, self.tm, self.pods = strategy, model, timing, pods
        self.config = strategy.config
        self.rng, self.nprng, self.early_lock = rng, nprng, early_lock
        self.rtt = timing.redis_rtt_s
        self.neg = 1 if self.config.negative_ttl_s else 0  # EXISTS before a plain read
        self.entry: Entry | None = None
        self.hard_exp = -np.inf
        self.pending: list[tuple[float, float, Entry]] = []  # (visible at, hard expiry, entry)
        self.lock_until = -np.inf  # the single-flight lock is held until this refresh ends
        self.refreshing_pod = -1
        self.episode_until = -np.inf
        # Set by the online engine (:mod:`stampede.sim.online`), None in the batch walk, whose
        # results they must not change: the origin's queue (its concurrency limit), and each
        # pod's local_lock read in flight (visible at, waiters so far), which the batch walk
        # finds by looking ahead at the key's later arrivals instead; and the waiters one
        # notify fill has woken so far on each pod (the fill's time, pod -> count), which the
        # batch walk ranks in one call (:meth:`wake_ranks`).
        self.origin: OriginQueue | None = None
        self.pod_reads: dict[int, list[float]] | None = None
        self.woken: tuple[float, dict[int, int]] | None = None

    # ---- state ---------------------------------------------------------------------------
    def new_entry(self, end: float, delta: float) -> Entry:
        ttl = jittered_ttl(self.config.ttl_s, self.s.jitter, self.rng)
        return Entry(value=b"", created_at=end, delta=delta, soft_expiry=end + ttl)

    def write(self, visible: float, entry: Entry, written: float | None = None) -> None:
        """``entry`` is in Redis from ``visible``; its hard TTL runs from ``written``."""
        hard = (visible if written is None else written) + self.s.hard_ttl_s(entry)
        bisect.insort(self.pending, (visible, hard, entry), key=lambda w: w[0])

    def apply(self, now: float) -> None:
        while self.pending and self.pending[0][0] <= now:
            _, self.hard_exp, self.entry = self.pending.pop(0)

    def queued(self, start: float, delta: float) -> float:
        """How long a read asked for at ``start`` waits for an origin slot, s (0.0: no limit)."""
        return 0.0 if self.origin is None else self.origin.admit(start, delta)

    def delta(self) -> float:
        """One origin read's duration, s."""
        return float(self.tm.origin_latency(self.config.origin_latency_ms / 1000, self.nprng, 1)[0])

    def next_write(self) -> float:
        return self.pending[0][0] if self.pending else np.inf

    def read(self, tr: KeyTrace, start: float, end: float, pod: int, visible: float) -> None:
        self.reads(tr, np.array([start]), np.array([end]), np.array([pod]), visible)

    def reads(self, tr: KeyTrace, start: Array, end: Array, pod: Array, visible: float) -> None:
        """Reads that all begin before the first of them is written: one refresh episode.

        An episode is every read of the key that starts before the first of its writes lands:
        the herd of one expiry (1 + λL of them under naive cache-aside).
        """
        tr.chunks.append(np.column_stack([start, end, pod.astype(float)]))
        if start[0] >= self.episode_until:  # the first read since the last value was written
            tr.episodes.append(0)
            tr.episode_starts.append(float(start[0]))
            self.episode_until = visible
        self.episode_until = min(self.episode_until, visible)
        tr.episodes[-1] += len(start)

    # ---- the walk ------------------------------------------------------------------------
    def run(self, t: Array, pod: Array, trace: KeyTrace | None = None) -> KeyTrace:
        """Walk the sorted ``t`` (with their pods); ``trace`` goes on from earlier steps."""
        n = len(t)
        tr = KeyTrace(np.zeros(n, np.int8), np.zeros(n)) if trace is None else trace.reset(n)
        base, rtt = self.tm.base_s, self.rtt
        i = 0
        while i < n:
            a = float(t[i])
            self.apply(a)
            e = self.entry
            if e is not None and a < self.hard_exp:
                if e.is_fresh(a):
                    if self.m.early:
                        self.early(tr, i, a, int(pod[i]), e)
                        i += 1
                        continue
                    end = min(e.soft_expiry, self.hard_exp, self.next_write())
                    j = max(int(np.searchsorted(t, end, "left")), i + 1)
                    tr.outcome[i:j] = HIT
                    tr.latency_s[i:j] = base + rtt
                    tr.trips += j - i
                    i = j
                    continue
                if self.m.stale:
                    self.stale(tr, i, a, int(pod[i]))
                    i += 1
                    continue
            i = self.miss(tr, t, pod, i)
        return tr

    def early(self, tr: KeyTrace, i: int, a: float, p: int, e: Entry) -> None:
        base, rtt = self.tm.base_s, self.rtt
        tr.trips += 1  # GET
        tr.outcome[i], tr.latency_s[i] = HIT, base + rtt
        if not cast(EarlyRefresh, self.s).should_refresh(e, a):
            return
        tr.early_attempts += 1
        if not self.early_lock:  # the closed-form variant: every "yes" recomputes
            if a >= self.episode_until:
                tr.head_starts.append(e.soft_expiry - a)
            delta = self.delta()
            start = a + rtt
            start += self.queued(start, delta)
            self.read(tr, start, start + delta, p, start + delta + rtt)
            self.write(start + delta + rtt, self.new_entry(start + delta, delta))
            tr.trips += 1  # its SET
            tr.outcome[i] = EARLY
            return
        if p == self.refreshing_pod and a < self.lock_until:
            return  # this pod already runs one: no lock attempt
        tr.trips += 1  # SET NX
        tr.latency_s[i] += rtt
        if a < self.lock_until:
            return
        tr.head_starts.append(e.soft_expiry - a)
        self.background(tr, i, a, p)
        tr.outcome[i] = EARLY

    def stale(self, tr: KeyTrace, i: int, a: float, p: int) -> None:
        base, rtt = self.tm.base_s, self.rtt
        tr.trips += 1  # GET
        tr.outcome[i], tr.latency_s[i] = STALE, base + rtt
        if p == self.refreshing_pod and a < self.lock_until:
            return
        tr.trips += 1  # SET NX
        tr.latency_s[i] += rtt
        if a >= self.lock_until:
            self.background(tr, i, a, p)

    def background(self, tr: KeyTrace, i: int, a: float, p: int) -> None:
        """The lock was ours: GET (newer value?), spawn the refresh; it fills in one trip."""
        rtt = self.rtt
        tr.trips += 2  # GET, and the refresh's fill script
        tr.inner += _FILL_NOTIFY if self.config.wait == "notify" else _FILL_POLL
        tr.latency_s[i] += rtt
        delta = self.delta()
        start = a + 3 * rtt
        start += self.queued(start, delta)
        visible = start + delta + rtt
        self.read(tr, start, start + delta, p, visible)
        self.write(visible, self.new_entry(start + delta, delta))
        self.lock_until, self.refreshing_pod = visible, p
        if self.config.wait == "notify":
            tr.messages += self.pods

    # ---- the miss paths ------------------------------------------------------------------
    def miss(self, tr: KeyTrace, t: Array, pod: Array, i: int) -> int:
        if self.m.miss == "flight":
            return self.flight(tr, t, pod, i)
        if self.pod_reads is not None and self.m.miss == "local":
            reading = self.pod_reads.get(int(pod[i]))
            if reading is not None and t[i] < reading[0]:  # its pod's lock: wait, then GET
                reading[1] += 1
                tr.outcome[i] = WAIT_HIT
                tr.latency_s[i] = self.tm.base_s + reading[0] + reading[1] * self.rtt - t[i]
                tr.trips += 2
                return i + 1
        return self.herd(tr, t, pod, i, per_pod=self.m.miss == "local")

    def herd(self, tr: KeyTrace, t: Array, pod: Array, i: int, per_pod: bool) -> int:
        """Naive (every request reads) or local_lock (the first request of each pod reads).

        The herd is every request that arrives before the first of its reads has written the
        value; a read's write lands ``SET``'s round trip after it ends.
        """
        base, rtt = self.tm.base_s, self.rtt
        injected = self.config.origin_latency_ms / 1000
        pre = (1 + self.neg) * rtt if not per_pod else (2 + self.neg) * rtt  # GET(s), EXISTS
        # the herd lies inside [t_i, t_i's own write): sample every candidate's read
        first = float(self.tm.origin_latency(injected, self.nprng, 1)[0])
        hi = min(int(np.searchsorted(t, t[i] + pre + first + rtt, "left")), len(t))
        hi = max(hi, i + 1)
        cand = t[i:hi]
        delta = self.tm.origin_latency(injected, self.nprng, len(cand))
        delta[0] = first
        visible = cand + pre + delta + rtt
        wait = np.zeros(len(cand))
        if self.origin is not None:  # online: one request at a time, so one candidate
            wait[:] = self.queued(float(cand[0] + pre), first)
            visible = visible + wait
        limit = min(self.next_write(), self.lock_until if self.lock_until > t[i] else np.inf)
        if per_pod:
            pods_c = pod[i:hi]
            _, starters = np.unique(pods_c, return_index=True)
            starters.sort()
        else:
            starters = np.arange(len(cand))
        cm = np.minimum.accumulate(visible[starters])
        # starter k reads if it arrives before every earlier starter's write (and a pending one)
        ok = np.ones(len(starters), bool)
        ok[1:] = cand[starters[1:]] < cm[:-1]
        ok &= cand[starters] < limit
        ok[0] = True
        k = int(np.argmin(ok)) if not ok.all() else len(starters)
        members = starters[:k]
        window_end = min(float(cm[k - 1]), limit)
        end_idx = i + int(np.searchsorted(cand, window_end, "left"))
        end_idx = max(end_idx, i + members[-1] + 1)
        last = int(members[np.argmax(visible[members])])
        starts = cand[members] + pre + wait[members]
        self.reads(tr, starts, starts + delta[members], pod[i + members], window_end)
        tr.outcome[i + members] = MISS
        tr.latency_s[i + members] = base + pre + delta[members] + rtt + wait[members]
        if self.pod_reads is not None and per_pod:
            for m in members:
                self.pod_reads[int(pod[i + m])] = [float(visible[m]), 0.0]
        tr.trips += len(members) * (2 + self.neg + (1 if per_pod else 0))
        if per_pod:
            # the others on a reading pod wait for its lock, then GET one after another
            is_member = np.zeros(end_idx - i, bool)
            is_member[members] = True
            pod_visible = {int(pod[i + m]): float(visible[m]) for m in members}
            rank: dict[int, int] = {}
            for r in np.flatnonzero(~is_member):
                p = int(pod[i + r])
                if p not in pod_visible:  # cannot happen: its pod's first request read
                    raise AssertionError(f"request {i + r} on pod {p} joined no reader")
                rank[p] = rank.get(p, 0) + 1
                done = pod_visible[p] + rank[p] * rtt
                tr.outcome[i + r] = WAIT_HIT
                tr.latency_s[i + r] = base + done - float(cand[r])
                tr.trips += 2
        # every writer's SET lands; the latest one's entry is the one left in Redis
        end_read = float(cand[last] + pre + wait[last] + delta[last])
        entry = self.new_entry(end_read, float(delta[last]))
        self.write(window_end, entry, written=float(visible[last]))
        return int(end_idx)

    def flight(self, tr: KeyTrace, t: Array, pod: Array, i: int) -> int:
        """Single-flight: one winner reads, everyone else until its fill waits (poll/notify)."""
        base, rtt, cfg = self.tm.base_s, self.rtt, self.config
        a = float(t[i])
        if self.lock_until - rtt <= a < self.lock_until:  # the claim finds the fill: a hit
            tr.outcome[i], tr.latency_s[i] = HIT, base + 2 * rtt
            tr.trips += 2
            tr.inner += _CLAIM_FOUND
            return i + 1
        if self.lock_until > a:  # a background refresh holds the lock: everyone waits
            visible = self.lock_until
            lo = i
        else:
            delta = self.delta()
            wait = self.queued(a + 2 * rtt, delta)
            start = a + 2 * rtt + wait  # GET, claim, the origin's queue
            visible = start + delta + rtt  # the fill script
            self.read(tr, start, start + delta, int(pod[i]), visible)
            self.write(visible, self.new_entry(start + delta, delta))
            self.lock_until, self.refreshing_pod = visible, int(pod[i])
            tr.outcome[i], tr.latency_s[i] = MISS, base + 3 * rtt + delta + wait
            tr.trips += 3
            tr.inner += _CLAIM_TAKEN + (_FILL_NOTIFY if cfg.wait == "notify" else _FILL_POLL)
            if cfg.wait == "notify":
                tr.messages += self.pods
            lo = i + 1
        hi = max(int(np.searchsorted(t, visible - rtt, "left")), lo)  # claims before the fill
        w = t[lo:hi]
        if len(w):
            if cfg.wait == "notify":
                ranks = self.wake_ranks(visible, pod[lo:hi])
                done = visible + rtt / 2 + (ranks + 1) * self.tm.pod_wake_s
                trips = np.full(len(w), 2)
                inner = np.full(len(w), _CLAIM_REFUSED)  # the one claim that found the lock
            else:
                poll, first = cfg.poll_ms / 1000, w + 2 * rtt + cfg.poll_ms / 1000
                k = 1 + np.maximum(0, np.ceil((visible - first) / (poll + 2 * rtt))).astype(int)
                done = first + (k - 1) * (poll + 2 * rtt) + rtt
                trips = 2 * k + 1
                inner = _CLAIM_REFUSED * k  # a claim after the first GET and after each miss
            latency = base + done - w
            timed_out = latency > cfg.wait_timeout_s + base
            tr.outcome[lo:hi] = np.where(timed_out, ERROR, WAIT_HIT)
            tr.latency_s[lo:hi] = np.minimum(latency, cfg.wait_timeout_s + base)
            tr.trips += int(trips.sum())
            tr.inner += int(inner.sum())
        return max(hi, i + 1)

    def wake_ranks(self, visible: float, pods: Array) -> Array:
        """Each waiter's place among those the fill at ``visible`` wakes on its pod (0-based).

        A pod answers the waiters one message woke one after another, ``pod_wake_s`` apart.
        The batch walk has every waiter of a fill in one call; online, one a step, so the
        count goes on from the steps before (:attr:`woken`).
        """
        ranks = _rank_within(pods)
        if self.woken is None:
            return ranks
        if self.woken[0] != visible:  # the first waiter of a new fill
            self.woken = (visible, {})
        counts = self.woken[1]
        for k, p in enumerate(pods.tolist()):
            ranks[k] = counts.get(p, 0)
            counts[p] = int(ranks[k]) + 1
        return ranks


# Commands inside stampede.lock's scripts beyond the EVALSHA itself (INFO commandstats counts
# both): CLAIM refused = SET NX; CLAIM taken = SET NX, GET, EXISTS; CLAIM that finds the value
# = SET NX, GET, DEL; FILL = GET, SET, DEL, and PUBLISH when waiters are notified.
_CLAIM_REFUSED, _CLAIM_TAKEN, _CLAIM_FOUND = 1, 3, 3
_FILL_POLL, _FILL_NOTIFY = 3, 4


def _rank_within(pods: Array) -> Array:
    """Each element's position among the earlier elements with the same pod (0-based)."""
    order = np.argsort(pods, kind="stable")
    sorted_pods = pods[order]
    starts = np.flatnonzero(np.r_[True, sorted_pods[1:] != sorted_pods[:-1]])
    counts = np.diff(np.r_[starts, len(pods)])
    ranks_sorted = np.arange(len(pods)) - np.repeat(starts, counts)
    ranks = np.empty(len(pods), int)
    ranks[order] = ranks_sorted
    return ranks


def simulate_key(
    config: StrategyConfig,
    times: Array,
    pods: Array,
    *,
    n_pods: int,
    timing: Timing,
    rng: random.Random,
    nprng: np.random.Generator,
    warm_at: float | None = None,
    early_lock: bool = True,
    strategy: Strategy | None = None,
) -> KeyTrace:
    """Walk one key's sorted request ``times`` (and the pod of each) through ``config``.

    ``warm_at``: the value was written at that time (bulk warm) instead of the cache starting
    empty. ``early_lock=False`` lets every early "yes" recompute (XFetch without its lock).
    """
    strat = strategy or decision_strategy(config, rng)
    walk = _Walk(strat, model_of(config.strategy), timing, n_pods, rng, nprng, early_lock)
    if warm_at is not None:
        walk.write(warm_at, walk.new_entry(warm_at, config.origin_latency_ms / 1000))
    return walk.run(np.asarray(times, float), np.asarray(pods, np.int64))
