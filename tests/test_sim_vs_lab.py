"""The simulator against the live lab, short: two strategies, 16 s each, the robust figures.

``bench/sim_vs_lab.py`` sets every strategy beside the lab for 60 s at three settings; this is
its short version in the suite. One live naive run and one single_flight run at the lab
defaults (3 pods, 380 req/s, 200 ms origin, 5 s TTL): 16 s hold three complete TTL windows of
the hot key (each about TTL + L = 5.2 s long). The simulator replays the load generator's own
schedule (the same seed), so both see the same requests. Checked are the figures that do not
hang on this machine's timing: hot reads per window (single_flight: the same counts; naive:
the median within :mod:`stampede.sim.versus`' derived tolerance), reads over the lower bound,
and single_flight's wait_hit answers. The busiest second and the p99 need the bench's 60 s.
The check can fail: a simulation of the other strategy does not agree with either run.
"""

from __future__ import annotations

import pytest

from stampede import run, sim
from stampede.lab import Lab
from stampede.runner import RunResult
from stampede.sim.versus import Agreement, agreement

DURATION_S = 16.0
ROBUST = ("hot reads/window (median)", "reads / lower bound", "wait_hit answers")


@pytest.fixture(scope="module")
def live(lab: Lab) -> dict[str, RunResult]:
    return {
        name: run(name, lab=lab, fresh=True, progress=False, duration_s=DURATION_S)
        for name in ("naive", "single_flight")
    }


def robust(rows: list[Agreement]) -> dict[str, Agreement]:
    return {r.metric: r for r in rows if r.metric in ROBUST}


@pytest.mark.parametrize("strategy", ["naive", "single_flight"])
def test_the_simulator_agrees_with_the_lab(live: dict[str, RunResult], strategy: str) -> None:
    lab_run = live[strategy]
    simulated = sim.simulate(strategy, duration_s=DURATION_S)
    assert len(lab_run.summary["hot_reads_per_window"]) == 3  # 16 s: three complete windows
    assert lab_run.summary["requests"] == simulated.summary["requests"]  # the same schedule
    rows = robust(agreement(strategy, lab_run, simulated))
    expected = {"hot reads/window (median)", "reads / lower bound"}
    if strategy == "single_flight":
        expected.add("wait_hit answers")
        assert rows["hot reads/window (median)"].lab == rows["hot reads/window (median)"].sim == 1
    assert set(rows) == expected
    assert all(r.agree for r in rows.values()), [r for r in rows.values() if not r.agree]


@pytest.mark.parametrize(
    ("measured", "simulated"), [("naive", "single_flight"), ("single_flight", "naive")]
)
def test_the_check_fails_when_the_simulator_runs_another_strategy(
    live: dict[str, RunResult], measured: str, simulated: str
) -> None:
    other = sim.simulate(simulated, duration_s=DURATION_S)
    rows = robust(agreement(measured, live[measured], other))
    assert not rows["hot reads/window (median)"].agree
    assert not rows["reads / lower bound"].agree
