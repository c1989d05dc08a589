"""Shared plumbing for the bench scripts: arguments, one lab, tables, machine facts.

Each script measures its rows side by side on one ``Lab.embedded()`` and prints one aligned
plain-text table (``--json`` prints the same rows as JSON). The numbers come from
``stampede.run()`` and its summary; nothing here re-defines a metric.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd

from stampede import Lab, ProcessFailed, run
from stampede.runner import RunResult


def parser(doc: str | None, duration: float, quick: float) -> argparse.ArgumentParser:
    """The common command line: ``--duration``, ``--quick``, ``--json``."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=None, help=f"seconds per run ({duration})")
    p.add_argument("--quick", action="store_true", help=f"short runs ({quick} s) to check it works")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    p.set_defaults(default_duration=duration, quick_duration=quick)
    return p


def duration_of(args: argparse.Namespace) -> float:
    if args.duration is not None:
        return float(args.duration)
    return float(args.quick_duration if args.quick else args.default_duration)


@contextmanager
def one_lab(attempts: int = 3) -> Iterator[Lab]:
    """One embedded lab for every run of a script; stopped on exit, error or Ctrl-C.

    A busy 2-core machine can make a pod miss the lab's 20 s readiness deadline (the pods
    import the whole package), so starting is retried a few times before giving up.
    """
    for attempt in range(1, attempts + 1):
        try:
            lab = Lab.embedded()
            break
        except ProcessFailed as exc:
            if attempt == attempts:
                raise
            print(f"[bench] lab did not start ({exc}); retrying", file=sys.stderr)
    with lab:
        yield lab


def measure(lab: Lab, label: str, strategy: str, **params: Any) -> RunResult:
    """One fresh run on ``lab``; prints a one-line note to stderr so stdout stays the table."""
    print(f"[bench] {label}: {strategy} {params}", file=sys.stderr, flush=True)
    return run(strategy, lab=lab, fresh=True, progress=sys.stderr.isatty(), **params)


def machine_facts() -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: nproc={os.cpu_count()} ({platform.machine()}, {platform.python_implementation()}"
        f" {platform.python_version()}), loadavg {load}, date {now}"
    )


def fmt(value: Any) -> str:
    """Numbers for a table: ints as is, floats to 3 significant-ish digits, NaN as '-'."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def table(rows: Sequence[dict[str, Any]]) -> str:
    """Aligned plain text: first column left, the rest right."""
    frame = pd.DataFrame(rows, dtype=object).map(fmt)  # keep ints as ints per cell
    return frame.to_string(index=False, justify="right")


def emit(
    title: str,
    rows: Sequence[dict[str, Any]],
    args: argparse.Namespace,
    notes: Sequence[str] = (),
    extra: Callable[[], None] | None = None,
) -> None:
    """Print one titled table (or its JSON) followed by notes."""
    if args.json:
        print(json.dumps({"title": title, "rows": list(rows), "notes": list(notes)}, default=str))
        return
    print(f"\n== {title} ==")
    print(table(rows))
    for note in notes:
        print(f"  {note}")
    if extra is not None:
        extra()


def steady(result: RunResult) -> pd.DataFrame:
    """Answered records of the steady state (t >= TTL), as the book's appendix defines it."""
    r = result.records
    return r[(r["status"] > 0) & (r["t"] >= result.params["ttl_s"])]


def outcome_counts(result: RunResult) -> dict[str, int]:
    return dict(result.summary["outcomes"])
