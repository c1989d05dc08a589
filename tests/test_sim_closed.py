"""The simulator's online engine: closed-loop clients and an origin concurrency limit.

A closed loop's rate is not a parameter but a result: each client sends ``think_ms`` after
its last answer, so the simulated answer times set it (the response-time law,
:func:`stampede.theory.closed_loop_rate`), and a client stuck in a herd sends nothing else,
so naive's herd is capped by the clients (:func:`stampede.theory.
closed_loop_reads_per_window`). An origin limit queues reads FIFO: the answers grow by the
wait, and a limit of one serializes every read. Stepping a key online must not be a second
model: with no overheads (:data:`stampede.sim.ZERO`: no random origin delay) and a limit that
never binds, it reproduces the batch walk request for request.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from stampede import sim, theory
from stampede.config import LoadConfig
from stampede.errors import ConfigError
from stampede.load import item_chooser
from stampede.sim.online import OriginQueue

DURATION_S = 30.0


@pytest.mark.parametrize(
    ("strategy", "clients", "think_ms", "latency_ms"),
    [("naive", 50, 130.0, 200.0), ("single_flight", 50, 130.0, 200.0), ("naive", 20, 10.0, 1000)],
)
def test_closed_loop_rate_follows_the_response_time_law(
    strategy: str, clients: int, think_ms: float, latency_ms: float
) -> None:
    result = sim.simulate(
        strategy, pacing="closed", clients=clients, think_ms=think_ms,
        origin_latency_ms=latency_ms, duration_s=DURATION_S,
    )  # fmt: skip
    answer_ms = float(result.records["latency_ms"].mean())
    expected = theory.closed_loop_rate(clients, think_ms, answer_ms)
    assert result.summary["rps"] == pytest.approx(expected, rel=0.02)
    # the answer times are what set it: the same clients against a 5x slower origin send less
    slower = sim.simulate(
        strategy, pacing="closed", clients=clients, think_ms=think_ms,
        origin_latency_ms=latency_ms * 5, duration_s=DURATION_S,
    )  # fmt: skip
    assert slower.summary["rps"] < result.summary["rps"]


@pytest.mark.parametrize("clients", [5, 10, 20])
def test_closed_loop_naive_herd_is_capped_by_the_clients(clients: int) -> None:
    think_ms = 10.0
    result = sim.simulate(
        "naive", pacing="closed", clients=clients, think_ms=think_ms, duration_s=DURATION_S
    )
    s = result.summary
    load = LoadConfig()
    cap = theory.closed_loop_reads_per_window(s["rps"], load.hot_share, 200.0, clients)
    assert cap == clients  # lambda_hot L (about 70 reads) is far above the clients here
    assert s["hot_reads_per_window_mean"] <= cap
    assert s["hot_reads_per_window_mean"] >= 0.8 * cap
    # the open loop at the same rate has no such cap: its herd is 1 + lambda_hot L
    open_loop = sim.simulate("naive", rate=s["rps"], duration_s=DURATION_S)
    assert open_loop.summary["hot_reads_per_window_mean"] > 3 * cap


def test_closed_loop_same_seed_same_result_and_another_seed_another() -> None:
    kwargs = dict(pacing="closed", clients=20, think_ms=50.0, duration_s=15.0)
    a, b = (sim.simulate("single_flight", **kwargs) for _ in range(2))
    assert a.records.equals(b.records) and a.reads.equals(b.reads)
    c = sim.simulate("single_flight", seed=1, **kwargs)
    assert not a.records["item"].equals(c.records["item"])


def test_closed_loop_clients_ask_for_the_load_generators_items() -> None:
    """Each client's items are the generator's own draw (``item_chooser``, its seed)."""
    kwargs = dict(pacing="closed", clients=4, think_ms=100.0, duration_s=10.0, seed=3)
    records = sim.simulate("naive", **kwargs).records
    load = LoadConfig(**kwargs)
    for client in range(load.clients):
        mine = records.loc[records["client"] == client].sort_values("t_send")
        choose = item_chooser(load, random.Random(f"{load.seed}:{client}"))
        assert mine["item"].tolist() == [choose() for _ in range(len(mine))]
        # and each sends think_ms after its last answer
        answered = (mine["t_send"] + mine["latency_ms"] / 1000).to_numpy()[:-1]
        gaps = mine["t_send"].to_numpy()[1:] - answered
        np.testing.assert_allclose(gaps, load.think_ms / 1000, atol=1e-9)


@pytest.mark.parametrize("strategy", ["naive", "local_lock", "single_flight", "swr"])
def test_the_open_loop_stepped_online_is_the_batch_walk(strategy: str) -> None:
    """No overheads and a limit that never binds: the online engine changes nothing."""
    batch = sim.simulate(strategy, timing=sim.ZERO, duration_s=20.0)
    online = sim.simulate(strategy, timing=sim.ZERO, duration_s=20.0, origin_limit=10**6)
    assert online.summary["sim"]["origin_queued_reads"] == 0
    assert batch.records.equals(online.records)
    assert batch.reads.equals(online.reads)
    unlimited = sim.simulate(strategy, timing=sim.ZERO, duration_s=20.0, origin_limit=None)
    assert unlimited.records.equals(batch.records)  # None: the batch walk itself


@pytest.mark.parametrize("strategy", ["single_flight", "swr"])
def test_stepped_online_a_pod_wakes_its_waiters_one_after_another(strategy: str) -> None:
    """Notify: the waiters one fill woke on a pod are answered ``pod_wake_s`` apart, online too.

    The batch walk ranks a fill's waiters in one call; online they come one a step. With the
    round trips and the wake-up gap (no random origin delay) the two still agree exactly.
    """
    timing = sim.ZERO.with_(
        base_s=sim.MEASURED.base_s,
        redis_rtt_s=sim.MEASURED.redis_rtt_s,
        pod_wake_s=sim.MEASURED.pod_wake_s,
    )
    batch = sim.simulate(strategy, timing=timing, duration_s=20.0)
    online = sim.simulate(strategy, timing=timing, duration_s=20.0, origin_limit=10**6)
    assert batch.records.equals(online.records)
    # and in a closed loop: no two of one fill's waiters on one pod answered at once
    closed = sim.simulate(
        strategy, pacing="closed", clients=50, think_ms=130.0, duration_s=DURATION_S
    ).records
    hot = closed[(closed["outcome"] == "wait_hit") & (closed["item"] == LoadConfig().hot_item)]
    gaps: list[float] = []
    for _, mine in hot.groupby("pod"):
        done = np.sort((mine["t_send"] + mine["latency_ms"] / 1000).to_numpy())
        gaps.extend(g for g in np.diff(done) if g < 0.001)  # within one fill (5 s apart)
    assert gaps  # a zero gap (two answered at once) fails the next line
    np.testing.assert_allclose(gaps, sim.MEASURED.pod_wake_s, rtol=1e-6)


def test_an_origin_limit_of_one_serializes_reads() -> None:
    result = sim.simulate("single_flight", duration_s=20.0, origin_limit=1)
    reads = result.reads.sort_values("start")
    assert len(reads) > 100
    overlap = reads["start"].to_numpy()[1:] - reads["end"].to_numpy()[:-1]
    assert overlap.min() >= -1e-9  # each read starts when the one before it has ended
    assert result.summary["sim"]["origin_queued_reads"] > 0


@pytest.mark.parametrize("limit", [1, 2, 4])
def test_answer_times_grow_by_the_origins_queue(limit: int) -> None:
    """single_flight, no overheads: every miss waits its read's queue, then the read.

    The clients wait as long as it takes (``request_timeout_s`` at its maximum): a limit of
    one queues some misses past the generator's 10 s, and a timeout cuts the answer there.
    """
    kwargs = dict(timing=sim.ZERO, duration_s=20.0, origin_latency_ms=200.0)
    kwargs["request_timeout_s"] = 600.0
    free = sim.simulate("single_flight", origin_limit=10**6, **kwargs).records
    queued = sim.simulate("single_flight", origin_limit=limit, **kwargs)
    misses = queued.records.loc[queued.records["outcome"] == "miss", "latency_ms"]
    wait_ms = queued.summary["sim"]["origin_wait_ms_mean"]
    assert wait_ms > 0
    assert misses.mean() == pytest.approx(200.0 + wait_ms, rel=1e-9)  # one read per miss
    assert queued.records["latency_ms"].mean() > free["latency_ms"].mean()


def test_origin_queue_is_fifo_over_its_slots() -> None:
    queue = OriginQueue(2)
    waits = [queue.admit(0.0, 1.0), queue.admit(0.0, 1.0), queue.admit(0.1, 1.0)]
    assert waits == [0.0, 0.0, 1.0 - 0.1]  # the third waits for the first slot to free


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "2"])
def test_a_bad_origin_limit_is_a_config_error(limit: object) -> None:
    with pytest.raises(ConfigError, match="origin_limit"):
        sim.simulate("naive", duration_s=5.0, origin_limit=limit)


def test_unsupported_closed_loops_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="bulk_warm"):
        sim.simulate("naive", pacing="closed", scenario="bulk_warm", duration_s=5.0)
    with pytest.raises(ConfigError, match="think_ms"):
        sim.simulate("naive", pacing="closed", think_ms=-1, duration_s=5.0)


# ---- the client's timeout and retries: the load generator's parameters and rules ------------
def test_a_client_gives_up_after_the_generators_request_timeout_and_goes_on() -> None:
    """An answer slower than ``request_timeout_s`` is a ``timeout`` record, as the lab's."""
    load = LoadConfig(pacing="closed", clients=20, think_ms=50.0, request_timeout_s=1.0)
    result = sim.simulate(
        "naive", origin_limit=1, duration_s=DURATION_S, **load.model_dump(exclude={"duration_s"})
    )
    records = result.records
    timeouts = records[records["error"] == "timeout"]
    assert len(timeouts) > 0.1 * len(records)  # 20 clients, one read at a time: the queue grows
    assert (timeouts["status"] == 0).all() and (timeouts["outcome"] == "error").all()
    assert (timeouts["latency_ms"] == load.request_timeout_s * 1000).all()
    assert records["latency_ms"].max() <= load.request_timeout_s * 1000
    accounting = result.summary["accounting"]
    assert accounting["timeouts"] == len(timeouts) and accounting["lost"] == 0
    assert result.summary["unexpected"]["errors"] == len(timeouts)
    # and goes on: its next request leaves the timeout plus its think time after the last
    for _, mine in records.groupby("client"):
        mine = mine.sort_values("t_send")
        answered = (mine["t_send"] + mine["latency_ms"] / 1000).to_numpy()[:-1]
        gaps = mine["t_send"].to_numpy()[1:] - answered
        np.testing.assert_allclose(gaps, load.think_ms / 1000, atol=1e-9)
    # the pod's work goes on: every timed-out naive request still read the origin
    assert len(result.reads) == (records["outcome"].isin(["miss", "error"])).sum()


def test_the_default_timeout_is_the_generators_and_binds_only_past_it() -> None:
    """At the defaults (10 s) a 200 ms origin never times out: nothing changes."""
    assert LoadConfig().request_timeout_s == 10.0
    kwargs = dict(pacing="closed", clients=50, think_ms=130.0, duration_s=DURATION_S)
    result = sim.simulate("naive", origin_limit=4, **kwargs)
    assert result.summary["accounting"]["timeouts"] == 0
    patient = sim.simulate("naive", origin_limit=4, request_timeout_s=600.0, **kwargs)
    assert patient.records.equals(result.records)


def test_an_open_loop_past_its_origin_limit_times_out_as_the_lab_would() -> None:
    """Open loop, a limit of one: the queue outgrows the timeout; answers stop at it."""
    result = sim.simulate("naive", origin_limit=1, duration_s=DURATION_S)
    timeout_ms = LoadConfig().request_timeout_s * 1000
    records = result.records
    assert result.summary["sim"]["origin_wait_ms_mean"] > timeout_ms  # the queue's, uncut
    assert records["latency_ms"].max() == timeout_ms
    assert result.summary["accounting"]["timeouts"] == (records["error"] == "timeout").sum() > 0


@pytest.mark.parametrize("retries", [0, 2])
def test_a_503_is_retried_with_the_generators_backoff(retries: int) -> None:
    """A waiter past ``wait_timeout_s`` is a 503; the generator resends it ``retries`` times."""
    load = LoadConfig(
        pacing="closed", clients=10, think_ms=100.0, retries=retries, duration_s=DURATION_S
    )
    result = sim.simulate(
        "single_flight", wait_timeout_s=0.05, origin_latency_ms=500.0, **load.model_dump()
    )
    records = result.records
    failed = records[records["status"] == 503]
    assert len(failed) > 10
    assert result.summary["retries"] == (records["attempt"] > 0).sum()
    if not retries:
        assert (records["attempt"] == 0).all()
        return
    assert records["attempt"].max() == retries
    for _, mine in records.groupby("client"):
        mine = mine.sort_values("t_send").reset_index(drop=True)
        for i in range(len(mine) - 1):
            this, after = mine.loc[i], mine.loc[i + 1]
            gap = after["t_send"] - this["t_send"] - this["latency_ms"] / 1000
            if this["status"] == 503 and this["attempt"] < retries:  # the same item, resent
                assert after["item"] == this["item"]
                assert after["attempt"] == this["attempt"] + 1
                cap = min(load.backoff_cap_ms, load.backoff_ms * 2 ** this["attempt"]) / 1000
                assert 0 <= gap <= cap + 1e-9  # full jitter, no think time between attempts
            else:  # a new request, after the think time
                assert after["attempt"] == 0
                assert gap == pytest.approx(load.think_ms / 1000, abs=1e-9)


def test_a_closed_loop_is_compared_on_its_rate_reads_and_mean_answer() -> None:
    """``sim.agreement`` of closed loops adds req/s, origin reads and the mean answer."""
    kwargs = dict(pacing="closed", clients=50, think_ms=130.0, duration_s=DURATION_S)
    naive, again = sim.simulate("naive", **kwargs), sim.simulate("naive", seed=1, **kwargs)
    rows = {r.metric: r for r in sim.agreement("closed naive", naive, again)}
    assert {"req/s", "origin reads", "mean answer (ms)"} <= set(rows)
    assert all(r.agree for r in rows.values()), [r for r in rows.values() if not r.agree]
    flight = sim.simulate("single_flight", **kwargs)
    rows = {r.metric: r for r in sim.agreement("closed naive", naive, flight)}
    assert not rows["origin reads"].agree  # one read per key and window, not a herd
    assert "hot p99 steady (ms)" not in rows


def test_origin_limit_sweep_has_a_row_per_strategy_limit_and_pacing() -> None:
    from stampede.sim import sweeps

    table = sweeps.origin_limit_sweep(
        ["naive", "single_flight"], [None, 4], clients=20, think_ms=50.0, duration_s=10.0
    )
    assert len(table) == 2 * 2 * 2
    assert set(table["pacing"]) == {"open", "closed"}
    free = table[table["origin_limit"].isna()]
    assert (free["origin_wait_ms_mean"] == 0).all()
    closed = table[table["pacing"] == "closed"]
    assert (closed["rps"] < table.loc[table["pacing"] == "open", "rps"].max()).all()
