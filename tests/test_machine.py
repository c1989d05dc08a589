"""Knowing when a run measured the machine: the verdict and the busy-share meter."""

from __future__ import annotations

import math
import os
import time

from stampede.machine import ADVICE, MachineLimits, MachineMeter, cpu_ticks, verdict


def test_a_quiet_run_is_not_machine_bound() -> None:
    got = verdict(send_lag_p99_ms=1.2, busy_share=0.55, cpus=2)
    assert got["machine_bound"] is False
    assert got["reasons"] == [] and got["advice"] == ""


def test_a_late_generator_makes_the_run_machine_bound_and_says_why() -> None:
    got = verdict(send_lag_p99_ms=42.0, busy_share=0.5, cpus=2)
    assert got["machine_bound"] is True
    (reason,) = got["reasons"]
    assert "42 ms late" in reason and "10 ms" in reason
    assert got["advice"] == ADVICE


def test_busy_cpus_make_the_run_machine_bound_and_say_how_busy() -> None:
    got = verdict(send_lag_p99_ms=2.0, busy_share=0.97, cpus=1)
    assert got["machine_bound"] is True
    assert "1 CPU(s)" in got["reasons"][0] and "97% busy" in got["reasons"][0]


def test_both_signals_give_two_reasons_and_the_limits_are_settings() -> None:
    assert len(verdict(50.0, 0.99, 2)["reasons"]) == 2
    assert not verdict(50.0, 0.99, 2, MachineLimits(send_lag_p99_ms=100, busy_share=1.0))[
        "machine_bound"
    ]


def test_an_unknown_busy_share_counts_only_the_lag() -> None:
    assert not verdict(2.0, math.nan, 2)["machine_bound"]


def test_the_meter_sees_this_process_keep_a_cpu_busy() -> None:
    """Spin on one allowed CPU for 0.3 s: that CPU was busy, the meter reads a share > 0."""
    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        with MachineMeter({cpu}) as meter:
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                pass
        assert 0.5 < meter.busy_share <= 1.0
    finally:
        os.sched_setaffinity(0, before)


def test_cpu_ticks_count_only_the_cpus_asked_for() -> None:
    busy, total = cpu_ticks({min(os.sched_getaffinity(0))})
    assert 0 <= busy <= total
    assert cpu_ticks(set()) == (0, 0)
