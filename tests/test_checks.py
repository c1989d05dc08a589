"""``stampede.checks``: a failed claim says what, how much, against what, and the machine's say."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

import stampede.checks as checks
from stampede.machine import ADVICE, verdict


@dataclass
class FakeRun:
    """Only what checks reads of a RunResult: a strategy name and a summary."""

    strategy: str
    summary: dict[str, Any] = field(default_factory=dict)


def quiet() -> dict[str, Any]:
    return {"machine": verdict(1.0, 0.2, 2), "outcomes": {"hit": 10}}


def busy() -> dict[str, Any]:
    return {"machine": verdict(40.0, 0.97, 2), "outcomes": {"hit": 10, "fail_open": 3}}


def test_a_claim_that_holds_says_nothing() -> None:
    checks.expect(True, "anything", FakeRun("naive", quiet()), measured=1, threshold=">= 0")
    checks.at_least(3, 3, "three", FakeRun("naive", quiet()))
    checks.at_most(3, 3, "three")
    checks.between(3, 1, 5, "three")


def test_a_failed_claim_names_claim_measured_and_threshold() -> None:
    with pytest.raises(AssertionError) as failed:
        checks.at_least(
            20,
            36.6,
            "naive reads the hot key half of 1 + lambda L",
            FakeRun("naive", quiet()),
            unit="reads",
        )
    message = str(failed.value)
    assert "claim: naive reads the hot key half of 1 + lambda L" in message
    assert "measured: 20 reads" in message
    assert "threshold: >= 36.6 reads" in message
    assert "machine" not in message  # a quiet run: the lesson failed, nothing else to say


def test_a_machine_bound_run_fails_and_says_why_and_what_to_do() -> None:
    run = FakeRun("swr", busy())
    with pytest.raises(AssertionError) as failed:
        checks.at_most(
            142.0, 25.0, "SWR's steady hot-key p99", FakeRun("naive", quiet()), run, unit="ms"
        )
    message = str(failed.value)
    assert "measured: 142 ms" in message and "threshold: <= 25 ms" in message
    assert "swr measured the machine, not the lab" in message
    for reason in run.summary["machine"]["reasons"]:
        assert reason in message
    assert "swr answered 3 request(s) fail_open" in message
    assert ADVICE in message
    assert "naive measured" not in message


def test_fail_open_alone_is_reported_with_the_advice() -> None:
    summary = {"machine": verdict(1.0, 0.2, 2), "outcomes": {"fail_open": 1}}
    with pytest.raises(AssertionError, match="fail_open"):
        checks.expect(False, "one read per window", summary, measured=[1, 2], threshold="1 each")
    assert ADVICE in checks.explain("x", 1, 2, [summary])


def test_fail_open_names_the_redis_errors_and_is_silent_when_a_fault_was_injected() -> None:
    seen = {"fail_open": 2, "redis_errors:TimeoutError": 2, "injected": False}
    summary = {"outcomes": {"fail_open": 2}, "unexpected": seen}
    assert "(2 TimeoutError)" in checks.explain("x", 1, 2, [summary])
    injected = {**summary, "unexpected": {**seen, "injected": True}}
    assert checks.machine_notes([injected]) == []


def test_nan_never_passes() -> None:
    for check in (
        lambda: checks.at_least(math.nan, 0, "a figure"),
        lambda: checks.at_most(math.nan, 0, "a figure"),
        lambda: checks.between(math.nan, 0, 1, "a figure"),
    ):
        with pytest.raises(AssertionError, match="measured: NaN"):
            check()


def test_something_that_is_not_a_run_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="RunResult or a run summary"):
        checks.expect(True, "x", 42, measured=1, threshold=1)
