"""The closed forms of ``stampede.theory``, checked against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

import stampede.theory as theory
from stampede.errors import ConfigError


def test_naive_reads_per_window_is_one_plus_the_herd() -> None:
    # 380 req/s x 0.95 = 361 hot req/s; a 200 ms read: 72.2 arrive during it
    assert theory.hot_rate(380, 0.95) == pytest.approx(361)
    assert theory.herd(380, 0.95, 200) == pytest.approx(72.2)
    assert theory.naive_reads_per_window(380, 0.95, 200) == pytest.approx(73.2)
    assert theory.naive_reads_per_window(100, 1.0, 500) == pytest.approx(51)


def test_a_lock_per_pod_reads_at_most_once_per_pod() -> None:
    assert theory.local_lock_reads_per_window(380, 0.95, 200, pods=1) == 1
    # every pod sees 24 of the herd: all three read
    assert theory.local_lock_reads_per_window(380, 0.95, 200, pods=3) == pytest.approx(3, abs=1e-9)
    # a herd of 0.5 over 6 pods: 1 + 5 x (1 - e^(-1/12))
    expected = 1 + 5 * (1 - math.exp(-0.5 / 6))
    assert theory.local_lock_reads_per_window(5, 1.0, 100, pods=6) == pytest.approx(expected)
    for pods in range(1, 17):
        assert 1 <= theory.local_lock_reads_per_window(380, 0.95, 200, pods) <= pods


def test_the_naive_hit_rate_floor() -> None:
    # 0.95 - 2 x 73.2 / 5.2 / 380
    floor = theory.naive_hit_rate_floor(380, 0.95, 5.0, 200)
    assert floor == pytest.approx(0.95 - 2 * 73.2 / 5.2 / 380)
    assert theory.naive_hit_rate_floor(380, 0.95, 5.0, 200, margin=1) > floor


def test_single_flight_waiters_set_the_p99() -> None:
    # share of hot requests that wait: 0.2 / 5.2; p99 = 200 x (1 - 0.01 x 26)
    assert theory.single_flight_hot_p99_ms(5.0, 200) == pytest.approx(200 * (1 - 0.01 * 26))
    # waiters under 1% of the requests: the p99 is a hit's
    assert theory.single_flight_hot_p99_ms(5.0, 40) == 0.0


def test_xfetch_head_start_and_attempts() -> None:
    # delta 0.2 s, beta 1, 361 req/s: 0.2 ln(72.2)
    assert theory.xfetch_head_start_s(0.2, 1.0, 361) == pytest.approx(0.2 * math.log(72.2))
    assert theory.xfetch_head_start_s(0.2, 0.0, 361) == 0.0  # beta 0: never early
    assert theory.xfetch_head_start_s(0.001, 1.0, 10) == 0.0  # draws too rare to start early
    gap = theory.xfetch_read_gap_s(5.0, 0.2, 1.0, 361)
    assert gap == pytest.approx(5.2 - 0.2 * (math.log(72.2) - math.log(math.log(2))))
    assert theory.xfetch_read_gap_s(5.0, 0.2, 0.0, 361) == pytest.approx(5.2)
    assert theory.xfetch_read_gap_s(1.0, 0.2, 100.0, 361) == pytest.approx(0.2)  # floor: delta
    assert theory.xfetch_attempts_per_refresh(1.0) == pytest.approx(math.e)
    assert theory.xfetch_attempts_per_refresh(0.5) == pytest.approx(math.e**2)


@pytest.mark.parametrize(
    ("call", "bad"),
    [
        (lambda: theory.hot_rate(0, 0.95), "rate=0"),
        (lambda: theory.hot_rate(380, 1.5), "hot_share=1.5"),
        (lambda: theory.herd(380, 0.95, -1), "origin_latency_ms=-1"),
        (lambda: theory.local_lock_reads_per_window(380, 0.95, 200, 0), "pods=0"),
        (lambda: theory.xfetch_attempts_per_refresh(0), "beta=0"),
        (lambda: theory.single_flight_hot_p99_ms(math.inf, 200), "ttl_s=inf"),
    ],
)
def test_bad_input_names_the_value(call: object, bad: str) -> None:
    with pytest.raises(ConfigError, match=bad):
        call()  # type: ignore[operator]


def test_naive_reads_over_bound_adds_the_herds_to_the_cold_reads() -> None:
    # 60 s / 5.2 s = 11.54 hot windows of 73.2 reads; the rest of a bound of 592 is cold
    windows = 60 / 5.2
    expected = (windows * 73.2 + 592 - windows) / 592
    assert theory.naive_reads_over_bound(380, 0.95, 5.0, 200, 60, 592) == pytest.approx(expected)
    # only the hot key: every window of the bound is a herd
    assert theory.naive_reads_over_bound(380, 1.0, 5.0, 200, 52, 10) == pytest.approx(77)
    with pytest.raises(ConfigError, match="lower_bound=0"):
        theory.naive_reads_over_bound(380, 0.95, 5.0, 200, 60, 0)


def test_jitter_spreads_a_cohort_over_ttl_times_spread() -> None:
    assert theory.jitter_peak_ratio(5.0, 1.0) == pytest.approx(0.2)
    assert theory.jitter_peak_ratio(5.0, 0.2) == 1.0  # one second: the 1-s peak stays
    assert theory.jitter_peak_ratio(5.0, 0.05) == 1.0
    assert theory.jitter_peak_ratio(5.0, 0.0) == 1.0
    with pytest.raises(ConfigError, match="spread=-1"):
        theory.jitter_peak_ratio(5.0, -1)


def test_the_first_hill_after_a_bulk_warm_is_a_compound_poisson() -> None:
    mean, sd = theory.jitter_hill(100, 380, 5.0, 1.0, 200)
    # 20 expiries a second, each 1 + Poisson(3.8 x 0.2) reads
    assert mean == pytest.approx(20 * 1.76)
    assert sd == pytest.approx(math.sqrt(20 * (0.76 + 1.76**2)))
    rng = np.random.default_rng(0)  # the same sum drawn: expiries, then each one's reads
    expiries = rng.poisson(20, 20_000)
    reads = np.array([n + rng.poisson(0.76 * n) for n in expiries])
    assert reads.mean() == pytest.approx(mean, rel=0.02)
    assert reads.std() == pytest.approx(sd, rel=0.03)
    # a spread under one second: the whole cohort in one bucket
    assert theory.jitter_hill(100, 380, 5.0, 0.1, 200)[0] == pytest.approx(176)
    with pytest.raises(ConfigError, match=r"spread=-0\.5"):
        theory.jitter_hill(100, 380, 5.0, -0.5, 200)
    with pytest.raises(ConfigError, match="items"):
        theory.jitter_hill(0, 380, 5.0, 1.0, 200)


def test_seconds_above_a_line_follow_the_hill_against_the_line() -> None:
    args = (100, 380, 5.0, 1.0, 200, 60)
    at_defaults = theory.jitter_seconds_above(50, *args)
    assert 0.05 < at_defaults < 0.5  # 50 is 1.7 sd above a 35-read mean: a rare burst
    assert theory.jitter_seconds_above(30, *args) > 2 > at_defaults  # under the mean: most
    assert theory.jitter_seconds_above(200, *args) < 1e-6
    # a slow origin lifts the hill over the line: every second of the first hill, most later
    slow = theory.jitter_seconds_above(50, 100, 760, 5.0, 1.0, 500, 25)
    assert 10 < slow <= 25 - 5
    # a run that ends within its first TTL has no steady second
    assert theory.jitter_seconds_above(30, 100, 380, 5.0, 1.0, 200, 5) == 0


def test_a_lock_whose_waiters_wait_in_one_process_only() -> None:
    # two pods of three read their whole share of the herd: 1 + 2/3 x 72.2
    assert theory.per_process_lock_reads_per_window(380, 0.95, 200, 3) == pytest.approx(
        1 + 2 / 3 * 72.2
    )
    assert theory.per_process_lock_reads_per_window(380, 0.95, 200, 1) == 1
    with pytest.raises(ConfigError, match="pods=0"):
        theory.per_process_lock_reads_per_window(380, 0.95, 200, 0)


def test_periodic_refreshes_per_window() -> None:
    # early_ttl 1.65 s: one read per 1.85 s over a 5.2 s window
    assert theory.periodic_reads_per_window(5.0, 1.65, 200) == pytest.approx(5.2 / 1.85)
    assert theory.periodic_reads_per_window(5.0, 9.0, 200) == 1  # a period past the TTL: one


def test_a_closed_loop_caps_the_herd_at_the_clients() -> None:
    assert theory.closed_loop_rate(50, 130, 1.5) == pytest.approx(50_000 / 131.5)
    assert theory.closed_loop_reads_per_window(380, 0.95, 200, clients=50) == 50
    assert theory.closed_loop_reads_per_window(100, 0.95, 200, clients=50) == pytest.approx(20)
    with pytest.raises(ConfigError, match="clients=0"):
        theory.closed_loop_rate(0, 130, 1)


def test_the_think_time_that_matches_an_open_loop_rate() -> None:
    # the chapters' defaults: 50 clients at 380 req/s with 1.5 ms answers think 130 ms
    assert round(theory.closed_loop_think_ms(50, 380, 1.5)) == 130
    think = theory.closed_loop_think_ms(50, 200, 1.5)
    assert theory.closed_loop_rate(50, think, 1.5) == pytest.approx(200)
    with pytest.raises(ConfigError, match="cannot send"):
        theory.closed_loop_think_ms(5, 10_000, 1.5)


def test_xfetch_s_extra_reads_over_swr_follow_its_head_start() -> None:
    # a minute at the defaults (200 ms, 361 hot requests/s): about 2.5 more; at 100 ms and
    # 190/s the head start is a third as long and so is the excess
    assert theory.xfetch_extra_reads(60, 5, 0.2, 1.0, 361) == pytest.approx(2.51, abs=0.01)
    assert theory.xfetch_extra_reads(60, 5, 0.1, 1.0, 190) == pytest.approx(0.82, abs=0.01)
    assert theory.xfetch_extra_reads(60, 5, 0.2, 0.0, 361) == pytest.approx(0)  # beta 0: none


def test_the_stack_s_extra_reads_are_xfetch_s_less_what_its_jitter_saves() -> None:
    # a minute at the defaults: the head start (0.93 s) outweighs jitter's half-second longer
    # TTL, about one more read than SWR; at 50 ms and 95 hot requests/s the head start is 0.1 s
    # and the stack reads about one fewer
    assert theory.stack_extra_reads(60, 5, 0.2, 1.0, 361, 0.2) == pytest.approx(1.04, abs=0.01)
    assert theory.stack_extra_reads(60, 5, 0.05, 1.0, 95, 0.2) == pytest.approx(-0.88, abs=0.01)
    assert theory.stack_extra_reads(60, 5, 0.2, 1.0, 361, 0.0) == pytest.approx(
        theory.xfetch_extra_reads(60, 5, 0.2, 1.0, 361)
    )
    with pytest.raises(ConfigError, match="spread"):
        theory.stack_extra_reads(60, 5, 0.2, 1.0, 361, -0.1)


def test_polling_costs_its_waiters_polls_less_notification_s_publishes() -> None:
    # chapter 2 at pods=6, 100 ms, 200 req/s, 30 s (measured on the lab: +0.0082): 102 waiters
    # of 1.5 GETs and 0.5 re-claims each, 213 refreshes announced, 5989 requests
    assert theory.poll_extra_commands_per_request(102, 213, 5989, 100, 50) == pytest.approx(
        (102 * 2.5 - 213) / 5989
    )
    assert theory.poll_extra_commands_per_request(0, 10, 100, 200, 50) < 0  # nobody waits
    with pytest.raises(ConfigError, match="requests=0"):
        theory.poll_extra_commands_per_request(1, 1, 0, 200, 50)


def test_poisson_upper_quantiles() -> None:
    assert theory.poisson_upper(0, 0.99) == 0
    assert theory.poisson_upper(1, 0.5) == 1  # P(<= 0) = 0.37, P(<= 1) = 0.74
    assert theory.poisson_upper(10, 0.95) == 15  # P(<= 14) = 0.917, P(<= 15) = 0.951
    assert theory.poisson_upper(2000, 0.5) == 2000  # log-space sum holds a large mean
    with pytest.raises(ConfigError):
        theory.poisson_upper(3, 1.0)


def test_cold_reads_per_s_is_one_read_per_window_and_wait_per_cold_key() -> None:
    # 380 x 0.05 = 19 req/s over 99 keys: 0.192 per key, a request every 5.21 s after 5.2 s
    per_key = 19 / 99
    assert theory.cold_reads_per_s(380, 0.95, 5, 200) == pytest.approx(99 / (5.2 + 1 / per_key))
    assert theory.cold_reads_per_s(380, 1.0, 5, 200) == 0.0
    # a busy cold key is read once per window: the rate tends to (items - 1) / (TTL + L)
    assert theory.cold_reads_per_s(1e9, 0.5, 5, 200) == pytest.approx(99 / 5.2, rel=1e-6)


def test_busiest_second_noise_and_waiting_share() -> None:
    # 9.5 reads/s over 55 s: the busiest exceeds poisson_upper(9.5, 1 - 0.05 / 55) rarely
    assert theory.busiest_second_noise(9.5, 55) == theory.poisson_upper(9.5, 1 - 0.05 / 55) - 9.5
    assert 5 < theory.busiest_second_noise(9.5, 55) < 15
    assert theory.busiest_second_noise(9.5, 10) < theory.busiest_second_noise(9.5, 100)
    assert theory.waiting_share(0.95, 5, 200) == pytest.approx(0.95 * 0.2 / 5.2)


def test_naive_miss_share_runs_from_all_requests_to_l_over_ttl_plus_l() -> None:
    # a key asked once a minute misses nearly every time; a hot one L / (TTL + L)
    assert theory.naive_miss_share(1 / 60, 5.0, 200.0) == pytest.approx(1.0, abs=0.1)
    assert theory.naive_miss_share(1e6, 5.0, 200.0) == pytest.approx(0.2 / 5.2, rel=1e-4)
    # one cycle by hand: lambda 1/s, L 0.2 s, TTL 5 s: 1.2 misses of 6.2 requests
    assert theory.naive_miss_share(1.0, 5.0, 200.0) == pytest.approx(1.2 / 6.2)
    with pytest.raises(ConfigError):
        theory.naive_miss_share(0.0, 5.0, 200.0)


def test_naive_hit_rate_adds_the_hot_key_and_the_cold_keys() -> None:
    hot = 0.95 * theory.naive_miss_share(361.0, 5.0, 200.0)
    cold = 0.05 * theory.naive_miss_share(19.0 / 99, 5.0, 200.0)
    assert theory.naive_hit_rate(380.0, 0.95, 5.0, 200.0) == pytest.approx(1 - hot - cold)
    assert theory.naive_hit_rate(380.0, 1.0, 5.0, 200.0) == pytest.approx(
        1 - theory.naive_miss_share(380.0, 5.0, 200.0)
    )
    # a lower rate: the cold keys miss more, the hot key about the same
    assert theory.naive_hit_rate(100.0, 0.95, 5.0, 200.0) < theory.naive_hit_rate(
        380.0, 0.95, 5.0, 200.0
    )


def test_an_overloading_limit_is_under_naive_s_demand_or_zero() -> None:
    demand = theory.naive_origin_reads_per_s(380.0, 0.95, 5.0, 200.0)
    hot = 73.2 / 5.2
    assert demand == pytest.approx(hot + theory.cold_reads_per_s(380.0, 0.95, 5.0, 200.0))
    assert 23 < demand < 24  # 14.1 hot + 9.5 cold reads/s
    assert theory.overloading_limit(380.0, 0.95, 5.0, 200.0) == 4  # 20 reads/s of 23.6
    limit = theory.overloading_limit(760.0, 0.95, 5.0, 500.0)
    assert limit / 0.5 < theory.naive_origin_reads_per_s(760.0, 0.95, 5.0, 500.0)
    assert theory.overloading_limit(100.0, 0.95, 5.0, 50.0) == 0  # one read at a time keeps up


def test_xfetch_attempts_are_a_geometric_count_around_e_to_the_one_over_beta() -> None:
    extra = math.e - 1
    assert theory.xfetch_attempts_sd(1.0) == pytest.approx(math.sqrt(extra + extra**2))
    # simulated: first success of intensity lam * exp(t / s), then Poisson(extra * remaining)
    rng = np.random.default_rng(0)
    remaining = rng.exponential(1.0, 200_000)
    attempts = 1 + rng.poisson(extra * remaining)
    assert attempts.mean() == pytest.approx(theory.xfetch_attempts_per_refresh(1.0), rel=0.02)
    assert attempts.std() == pytest.approx(theory.xfetch_attempts_sd(1.0), rel=0.03)
