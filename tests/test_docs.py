"""The in-repository documentation stays true: the appendix's metric table, the book's toc."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from stampede.metrics import METRICS

ROOT = Path(__file__).resolve().parent.parent
APPENDIX = ROOT / "book" / "appendix.md"


def test_the_appendix_metric_table_is_current() -> None:
    import tools.metric_table as metric_table

    text = APPENDIX.read_text(encoding="utf-8")
    assert metric_table.render(text) == text, "run .venv/bin/python tools/metric_table.py"
    missing = [name for name in METRICS if f"| `{name}` |" not in text]
    assert not missing, missing


def test_the_appendix_is_in_the_book() -> None:
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text(encoding="utf-8"))
    files = [entry["file"] for entry in toc["chapters"]]
    assert "book/appendix" in files
    assert all(
        (ROOT / f"{name}.ipynb").exists() or (ROOT / f"{name}.md").exists() for name in files
    )


def test_nothing_points_to_a_design_file_that_is_not_in_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = [
        name
        for name in tracked
        if name.endswith((".py", ".md", ".yml", ".ipynb", ".toml"))
        and "DESIGN.md" in (ROOT / name).read_text(encoding="utf-8", errors="replace")
        and name != "tests/test_docs.py"
    ]
    assert not (ROOT / "DESIGN.md").exists() and not offenders, offenders
