"""``tools/off_defaults.py``: what it refuses, how it names a set, and the table it prints.

Executing a chapter is minutes of load and is not tested here (``figures.execute`` is the
book's own papermill call); these are the parts that decide what a row says.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_tool() -> ModuleType:
    sys.path.insert(0, str(ROOT / "tools"))
    spec = importlib.util.spec_from_file_location(
        "off_defaults", ROOT / "tools" / "off_defaults.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["off_defaults"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


tool = load_tool()


def test_values_are_literals_or_strings() -> None:
    assert tool.parse_assignment("pods=6") == ("pods", 6)
    assert tool.parse_assignment("rate=200.0") == ("rate", 200.0)
    assert tool.parse_assignment("strategy=naive") == ("strategy", "naive")
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=VALUE"):
        tool.parse_assignment("pods")


def test_a_set_is_named_the_same_whatever_the_order() -> None:
    a = tool.set_name({"rate": 200, "pods": 6})
    assert a == tool.set_name({"pods": 6, "rate": 200}) == "pods=6,rate=200"


def test_a_parameter_the_chapter_does_not_carry_fails_its_row(tmp_path: Path) -> None:
    row = tool.run_chapter(
        ROOT / "chapters" / "01_naive.ipynb", {"pods": 6, "no_such_parameter": 1}, tmp_path,
        where_present=False, expect_fail=False,
    )  # fmt: skip
    assert row.outcome == "missing parameter" and not row.as_expected
    assert "no_such_parameter" in row.message
    assert not list(tmp_path.iterdir())  # nothing was executed


def test_the_table_says_whether_each_row_is_what_was_expected() -> None:
    rows = [
        tool.Row("03_swr", "strategy=naive", "fail", "fail", 6.0, "claim: a | b"),
        tool.Row("04_xfetch", "strategy=naive", "pass", "fail", 5.0),
    ]
    text = tool.table(rows)
    assert "| 03_swr | strategy=naive | fails, as it should | 6 s | claim: a \\| b |" in text
    assert "PASS (should fail)" in text
