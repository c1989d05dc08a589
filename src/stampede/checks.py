"""A chapter's checks: one call per claim, and a message that says what failed and why.

Every ``assert`` cell of the book goes through :func:`expect` (or :func:`at_least`,
:func:`at_most`, :func:`between`, which compute ``holds`` for it). A failed check raises
``AssertionError`` with a message that names

- the **claim**, in the words of the prose it holds;
- the **measured** figure and the **threshold** (with the unit), the threshold being one the
  chapter derived from its parameters (:mod:`stampede.theory`);
- for each run involved that measured the machine rather than the lab (``summary['machine']``,
  :func:`stampede.machine.verdict`): that it did, its reasons in plain words and what to do; and
  the ``fail_open`` answers a run counted (a pod fails open only when a Redis call failed or
  timed out, which in this lab means the machine was overloaded).

It never skips: a machine-bound run fails its check like any other (under CI too), and the
message says that the machine, not the lesson, is the likely cause. It does not decide what a
claim is or how wide its margin: that is the chapter's, with the closed forms of
:mod:`stampede.theory`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from stampede.machine import ADVICE

__all__ = ["at_least", "at_most", "between", "expect", "explain", "machine_notes"]


def _summary(run: Any) -> Mapping[str, Any]:
    summary = getattr(run, "summary", run)
    if not isinstance(summary, Mapping):
        raise TypeError(f"expected a RunResult or a run summary, got {type(run).__name__}")
    return summary


def _name(run: Any, index: int) -> str:
    return str(getattr(run, "strategy", None) or f"run {index + 1}")


def _fmt(value: Any, unit: str = "") -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        text = str(value)
    elif isinstance(value, int):
        text = f"{value:,}"
    elif math.isnan(value):
        text = "NaN"
    else:
        text = f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{text} {unit}".rstrip()


def machine_notes(runs: Sequence[Any]) -> list[str]:
    """One line per run that measured the machine or failed open: what it saw, what to do."""
    notes = []
    advice = ""
    for i, run in enumerate(runs):
        summary = _summary(run)
        machine = summary.get("machine") or {}
        unexpected = summary.get("unexpected") or {}
        fail_open = (summary.get("outcomes") or {}).get("fail_open", 0)
        if machine.get("machine_bound"):
            reasons = "; ".join(machine.get("reasons") or ["no reason recorded"])
            notes.append(f"{_name(run, i)} measured the machine, not the lab: {reasons}")
            advice = machine.get("advice") or advice
        if fail_open and not unexpected.get("injected"):  # an injected fault's are expected
            seen = ", ".join(
                f"{count} {kind.removeprefix('redis_errors:')}"
                for kind, count in unexpected.items()
                if kind.startswith("redis_errors:")
            )
            notes.append(
                f"{_name(run, i)} answered {fail_open} request(s) fail_open with no fault "
                f"injected: a Redis call failed or timed out ({seen or 'see the pods log'}), "
                "which in this lab comes from an overloaded machine"
            )
            advice = advice or str(machine.get("advice") or "")
    if notes:
        advice = advice or ADVICE
        notes.append(
            f"So this check most likely failed because of the machine, not the lesson. What to "
            f"do: {advice} (STAMPEDE_FRESH=1 forces new runs)."
        )
    return notes


def explain(claim: str, measured: Any, threshold: Any, runs: Sequence[Any] = ()) -> str:
    """The message of a failed check: claim, measured figure, threshold, the machine's say."""
    lines = [f"claim: {claim}", f"measured: {measured}", f"threshold: {threshold}"]
    return "\n".join([*lines, *machine_notes(runs)])


def expect(holds: bool, claim: str, *runs: Any, measured: Any, threshold: Any) -> None:
    """Raise ``AssertionError`` with :func:`explain`'s message unless ``holds``.

    ``runs`` are the :class:`~stampede.runner.RunResult` objects (or their summaries) the
    figure came from; each is checked for a machine-bound verdict when the claim fails.
    """
    for run in runs:
        _summary(run)  # a wrong argument is a TypeError even when the claim holds
    if not holds:
        raise AssertionError(explain(claim, measured, threshold, runs))


def at_least(measured: float, threshold: float, claim: str, *runs: Any, unit: str = "") -> None:
    """Check ``measured >= threshold`` (NaN fails)."""
    expect(
        measured >= threshold,
        claim,
        *runs,
        measured=_fmt(measured, unit),
        threshold=f">= {_fmt(threshold, unit)}",
    )


def at_most(measured: float, threshold: float, claim: str, *runs: Any, unit: str = "") -> None:
    """Check ``measured <= threshold`` (NaN fails)."""
    expect(
        measured <= threshold,
        claim,
        *runs,
        measured=_fmt(measured, unit),
        threshold=f"<= {_fmt(threshold, unit)}",
    )


def between(
    measured: float, low: float, high: float, claim: str, *runs: Any, unit: str = ""
) -> None:
    """Check ``low <= measured <= high`` (NaN fails)."""
    expect(
        low <= measured <= high,
        claim,
        *runs,
        measured=_fmt(measured, unit),
        threshold=f"between {_fmt(low, unit)} and {_fmt(high, unit)}",
    )
