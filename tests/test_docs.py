"""The in-repository documentation stays true: the appendix's metric table, the book's toc."""

from __future__ import annotations

import re
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


def test_the_glossary_is_current_and_names_every_metric_and_outcome() -> None:
    import tools.glossary as glossary
    from stampede.outcomes import Outcome

    text = (ROOT / "book" / "glossary.md").read_text(encoding="utf-8")
    assert glossary.render(text) == text, "run .venv/bin/python tools/glossary.py"
    terms = {line for line in text.splitlines() if line and not line.startswith((" ", "#"))}
    missing = [name for name in [*METRICS, *(o.value for o in Outcome)] if name not in terms]
    assert not missing, missing


# The chapters written as a course (objectives, timings, exercises, checks through
# stampede.checks); a new chapter joins the list once it has them.
COURSE = [f"{n:02d}_" for n in range(1, 9)]


def course_chapters() -> list[Path]:
    chapters = sorted((ROOT / "chapters").glob("[0-9]*.ipynb"))
    return [p for p in chapters if p.name[:3] in COURSE]


def test_every_chapter_check_goes_through_stampede_checks() -> None:
    """A chapter's claims are checked by ``stampede.checks`` (message: claim, figure, threshold)."""
    import json

    assert len(course_chapters()) == len(COURSE)
    for path in course_chapters():
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        bare = [
            line.strip()
            for source in code
            for line in source.splitlines()
            if line.strip().startswith("assert ") and "duration_s" not in line
        ]
        assert not bare, f"{path.name}: bare asserts, use stampede.checks: {bare}"
        assert any("checks." in source for source in code), f"{path.name} checks nothing"


def test_every_chapter_has_objectives_timing_and_three_exercises() -> None:
    import json

    for path in course_chapters():
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        assert "**Learning objectives.**" in text and "**Time.**" in text, path.name
        assert text.count("{exercise}") >= 3, f"{path.name}: fewer than three exercises"
        assert text.count("{solution-start}") == text.count("{exercise}"), path.name
        params = next(c for c in cells if "parameters" in c["metadata"].get("tags", []))
        source = "".join(params["source"])
        for name in ("pods", "origin_latency_ms"):
            assert f"\n{name} = " in source, f"{path.name}: {name} not in the parameters cell"


def test_the_readmes_docker_section_is_what_the_docker_test_runs() -> None:
    """Every test of ``make docker-test`` is named in README's "What the test runs", and every
    test named there exists: the list a reader trusts cannot drift from the module."""
    import ast

    module = ROOT / "tests" / "test_compose_stack.py"
    tests = {
        node.name
        for node in ast.parse(module.read_text(encoding="utf-8")).body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("**What the test runs**", 1)[1].split("\n\n", 2)[1]
    named = set(re.findall(r"`(test_\w+)`", section))
    assert tests, "no test found in tests/test_compose_stack.py"
    assert tests - named == set(), f"README's docker section leaves out {sorted(tests - named)}"
    assert named - tests == set(), f"README's docker section names no such test: {named - tests}"
