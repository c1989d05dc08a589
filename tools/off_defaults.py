"""Run chapters with parameters away from their defaults; print which checks held and which did not.

Usage::

    python tools/off_defaults.py --set pods=6 --set origin_latency_ms=100 --set rate=200 \\
        --duration 30 chapters/02_single_flight.ipynb
    python tools/off_defaults.py --set strategy=naive --expect-fail chapters/03_swr.ipynb
    python tools/off_defaults.py --set pods=6 --set rate=200 --table     # the table so far

(``make off-defaults SET="pods=6 origin_latency_ms=100 rate=200" DURATION=30``.)

Why: a chapter's checks derive their thresholds from its parameters (``stampede.theory``), so
they must hold at any parameter set the lesson holds at, and fail when the lesson does (the
strategy swapped for ``naive``). ``make notebooks`` and ``make book`` only ever run the
defaults; this runs the same notebooks, through the same papermill call as ``make figures``
(:func:`figures.execute`), at the values given.

- Every ``--set NAME=VALUE`` must be a name in the chapter's ``parameters`` cell (a chapter
  without it fails its row: an exercise cannot change what the cell does not carry), unless
  ``--where-present`` (then it is applied where it exists, e.g. ``strategy``).
- The runs go to a scratch data directory of their own (``STAMPEDE_DATA_DIR``, default
  ``book/_build/off_defaults/data``), so the book's cached runs are never reused and the
  book's cache is never filled with off-default runs; the executed copies go to
  ``book/_build/off_defaults/<set>/``. Within the scratch directory the run cache works as
  usual: re-executing a chapter after a fix to a check costs no new load.
- ``--duration S`` sets ``STAMPEDE_DURATION_S`` for the kernel, which shortens the chapter's
  runs and its exercises' runs alike (the chapters read it in their parameters cell).
- Each chapter's result is kept in ``<set>/results.json``, so one chapter per call (the heavy
  lock is held per chapter) still builds the whole table; ``--table`` prints it without running.

When not to use it: it is minutes of real load per chapter, so it is not part of ``make test``;
run it under the machine's heavy lock, one chapter per hold. Exits 1 when a row is not what was
expected (a failed check, or with ``--expect-fail`` a chapter that passed).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import papermill as pm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from figures import ROOT, execute

SCRATCH = ROOT / "book" / "_build" / "off_defaults"


@dataclass
class Row:
    """One chapter at one parameter set: what happened and, when a check failed, which."""

    chapter: str
    parameters: str
    outcome: str  # "pass", "fail", "missing parameter" or "error"
    expected: str  # "pass" or "fail"
    seconds: float
    message: str = ""
    cell: int | None = None

    @property
    def as_expected(self) -> bool:
        return self.outcome == self.expected

    def verdict(self) -> str:
        if self.expected == "fail":
            return (
                "fails, as it should"
                if self.outcome == "fail"
                else f"{self.outcome.upper()} (should fail)"
            )
        return "pass" if self.outcome == "pass" else self.outcome.upper()


def parse_assignment(text: str) -> tuple[str, Any]:
    """``NAME=VALUE``, VALUE a Python literal (``6``, ``100.0``, ``[1, 2]``) or a bare string."""
    name, sep, raw = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return name, value


def set_name(parameters: dict[str, Any]) -> str:
    """A folder name for a parameter set: ``origin_latency_ms=100,pods=6,rate=200``."""
    text = ",".join(f"{k}={v}" for k, v in sorted(parameters.items())) or "defaults"
    return re.sub(r"[^A-Za-z0-9=,._-]+", "_", text)


def failure_message(error: pm.PapermillExecutionError) -> str:
    """The failed check's message on one line: claim, measured, threshold, the machine's say."""
    lines = [line.strip() for line in str(error.evalue).splitlines() if line.strip()]
    text = "; ".join(lines) or error.ename
    return text if error.ename == "AssertionError" else f"{error.ename}: {text}"


def run_chapter(
    notebook: Path,
    parameters: dict[str, Any],
    out: Path,
    *,
    where_present: bool,
    expect_fail: bool,
) -> Row:
    """Execute one chapter at ``parameters``; the row says whether its checks held."""
    declared = pm.inspect_notebook(str(notebook))
    missing = sorted(set(parameters) - set(declared))
    applied = {k: v for k, v in parameters.items() if k in declared}
    label = ", ".join(f"{k}={v}" for k, v in applied.items()) or "defaults"
    expected = "fail" if expect_fail else "pass"
    if missing and not where_present:
        return Row(
            notebook.stem, label, "missing parameter", expected, 0.0,
            f"not in the parameters cell: {', '.join(missing)}",
        )  # fmt: skip
    started = time.monotonic()
    try:
        execute(notebook, out / notebook.name, None, applied)
    except pm.PapermillExecutionError as error:
        outcome = "fail" if error.ename == "AssertionError" else "error"
        return Row(
            notebook.stem, label, outcome, expected, time.monotonic() - started,
            failure_message(error), error.cell_index,
        )  # fmt: skip
    return Row(notebook.stem, label, "pass", expected, time.monotonic() - started)


def load_rows(path: Path) -> dict[str, Row]:
    if not path.exists():
        return {}
    return {key: Row(**row) for key, row in json.loads(path.read_text()).items()}


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table (the note pastes it as it is)."""
    out = [
        "| chapter | parameters | result | time | failing check |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        where = f"cell {r.cell}: " if r.cell is not None else ""
        message = (where + r.message).replace("|", "\\|")
        out.append(
            f"| {r.chapter} | {r.parameters} | {r.verdict()} | {r.seconds:.0f} s | {message} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="chapters/*.ipynb")
    parser.add_argument(
        "--set", dest="assignments", action="append", type=parse_assignment, default=[],
        metavar="NAME=VALUE", help="a parameter away from its default (repeatable)",
    )  # fmt: skip
    parser.add_argument("--duration", type=float, default=None, help="STAMPEDE_DURATION_S, s")
    parser.add_argument("--data-dir", type=Path, default=SCRATCH / "data", help="STAMPEDE_DATA_DIR")
    parser.add_argument("--out", type=Path, default=SCRATCH, help="executed copies and results")
    parser.add_argument(
        "--where-present", action="store_true",
        help="apply a parameter only where the chapter has it (otherwise a missing one fails)",
    )  # fmt: skip
    parser.add_argument(
        "--expect-fail", action="store_true",
        help="the set breaks the lesson (e.g. strategy=naive): a chapter should fail a check",
    )  # fmt: skip
    parser.add_argument("--table", action="store_true", help="print the table so far; run nothing")
    args = parser.parse_args(argv)
    parameters = dict(args.assignments)
    name = set_name(parameters) + ("+expect-fail" if args.expect_fail else "")
    if args.duration is not None:
        name += f"+{args.duration:g}s"
    out = args.out / name
    results = out / "results.json"
    rows = load_rows(results)
    if not args.table:
        notebooks = [nb.resolve() for nb in args.notebooks]
        if not notebooks:
            parser.error("name the chapters to run (or --table)")
        if missing := [str(nb) for nb in notebooks if not nb.is_file()]:
            parser.error(f"no such notebook(s): {', '.join(missing)}")
        out.mkdir(parents=True, exist_ok=True)
        args.data_dir.mkdir(parents=True, exist_ok=True)
        os.environ["STAMPEDE_DATA_DIR"] = str(args.data_dir.resolve())  # the kernel inherits it
        if args.duration is not None:
            os.environ["STAMPEDE_DURATION_S"] = f"{args.duration:g}"
        for notebook in notebooks:
            row = run_chapter(
                notebook, parameters, out,
                where_present=args.where_present, expect_fail=args.expect_fail,
            )  # fmt: skip
            rows = {**load_rows(results), row.chapter: row}  # another call may have written
            results.write_text(
                json.dumps({k: asdict(v) for k, v in sorted(rows.items())}, indent=1)
            )
            print(
                f"{row.chapter}: {row.verdict()} in {row.seconds:.0f} s {row.message}", flush=True
            )
    ordered = [rows[k] for k in sorted(rows)]
    duration = f", STAMPEDE_DURATION_S={args.duration:g}" if args.duration is not None else ""
    print(f"\n{name}{duration} (executed copies and results.json in {out})\n")
    print(table(ordered))
    return 0 if all(r.as_expected for r in ordered) else 1


if __name__ == "__main__":
    sys.exit(main())
