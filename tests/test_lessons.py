"""A chapter's checks fail when its lesson does, and only then: run on the simulator, in seconds.

Each test executes a chapter's own code cells, from its ``parameters`` cell through its checks
and its exercises' solutions (the text ``make notebooks`` executes), with every ``stampede.run``
sent to the simulator (``backend="sim"``, :mod:`stampede.sim`): the same summaries, from the
strategies' own decision code, without a lab. So the checks are the notebook's, the summaries
are real ones (not hand-made numbers), and the parameter sets are the ones the issue names.

- With the chapter's own strategy the checks hold, at the defaults and away from them
  (``pods=6, origin_latency_ms=100, rate=200`` and a slower origin): a threshold that ignored a
  parameter would fail here for the wrong reason.
- With ``strategy = "naive"`` the chapter's main check fails, with its claim in the message.

What it does not show: that the lab itself holds the checks off the defaults (latencies, a
busy machine). That is ``tools/off_defaults.py``, minutes of real load per chapter, run by hand
under the heavy lock; its tables are in the course note. The simulator has no peer libraries
and no faults, so chapters 7 and 8 are not here; chapter 0's closed loops are simulated
(:mod:`stampede.sim.online`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import nbformat
import pytest

import stampede

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"

OFF_DEFAULTS: list[dict[str, Any]] = [
    {},
    {"pods": 6, "origin_latency_ms": 100.0, "rate": 200.0},
    {"origin_latency_ms": 500.0, "rate": 760.0},
    {"pods": 2, "origin_latency_ms": 50.0, "rate": 100.0},  # the exercises' fast origin, low rate
]

# the chapters whose runs the simulator models (the faults of 7 and the libraries of 8 need
# the lab; chapter 9's live run is the lab beside the simulator)
SIMULATED = [
    "00_measuring", "01_naive", "02_single_flight", "03_swr", "04_xfetch", "05_jitter", "06_stack"
]  # fmt: skip

# (chapter, overrides) -> the claim that fails there, for a reason in the chapter, not the
# lesson; each entry must keep failing until the chapter is fixed. Chapter 0's waiter cap counted
# the cold keys' waiters at a 500 ms origin until it measured the hot key's (fixed).
KNOWN_FAILURES: dict[tuple[str, str], str] = {}
# Chapter 0 was one: at 100 req/s the closed loop's clients, released together by a stall and
# thinking a constant ~500 ms, came back in cohorts (11.5 reads per window against the open
# loop's 5.5); it now claims only that below the cap the closed loop omits no herd, and says why.

# chapter -> (its strategy, words of the main claim that must fail for naive)
LESSONS = {
    "02_single_flight": ("single_flight", "1 read per window"),
    "03_swr": ("swr", "the hot key never waits once warm"),
    "04_xfetch": ("xfetch", "XFetch replaces the hot value before its TTL"),
}


def chapter_cells(chapter: str) -> tuple[str, list[str]]:
    """The chapter's parameters cell and every code cell after it, exercises included."""
    notebook = nbformat.read(CHAPTERS / f"{chapter}.ipynb", as_version=4)
    parameters, cells = None, []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if "parameters" in cell.metadata.get("tags", []):
            parameters = cell.source
        elif parameters is not None:
            cells.append(cell.source)
    assert parameters is not None, f"{chapter}: no cell tagged 'parameters'"
    return parameters, cells


def execute(chapter: str, overrides: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the chapter's cells as papermill would (overrides after the parameters cell)."""
    monkeypatch.setenv("STAMPEDE_DURATION_S", "60")
    monkeypatch.setattr(stampede, "run", functools.partial(stampede.run, backend="sim"))
    parameters, cells = chapter_cells(chapter)
    namespace: dict[str, Any] = {}
    exec(parameters, namespace)
    missing = set(overrides) - set(namespace)
    assert not missing, f"{chapter}: not in the parameters cell: {sorted(missing)}"
    namespace.update(overrides)
    for source in cells:
        exec(source, namespace)


@pytest.mark.parametrize("overrides", OFF_DEFAULTS, ids=lambda o: str(o or "defaults"))
@pytest.mark.parametrize("chapter", SIMULATED)
def test_the_checks_hold_with_the_lesson_s_strategy(
    chapter: str, overrides: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = KNOWN_FAILURES.get((chapter, repr(overrides)))
    if claim is None:
        execute(chapter, overrides, monkeypatch)
        return
    with pytest.raises(AssertionError, match=claim):  # fails once the chapter is fixed: drop it
        execute(chapter, overrides, monkeypatch)


@pytest.mark.parametrize("chapter", sorted(LESSONS))
def test_the_main_check_fails_with_the_strategy_swapped_for_naive(
    chapter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    strategy, claim = LESSONS[chapter]
    assert chapter_cells(chapter)[0].count(f'strategy = "{strategy}"') == 1
    with pytest.raises(AssertionError, match=claim) as failed:
        execute(chapter, {**OFF_DEFAULTS[1], "strategy": "naive"}, monkeypatch)
    assert "measured:" in str(failed.value) and "threshold:" in str(failed.value)
