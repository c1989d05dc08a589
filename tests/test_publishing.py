"""What a teacher or a reader needs before adopting the book: licences, a citation, a changelog.

Everything here is offline: ``CITATION.cff`` is validated against the CFF 1.2.0 schema that
``check-jsonschema`` ships (``vendor.citation-file-format``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    """Run check-jsonschema with one of its bundled (offline) schemas."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


# ---- licences -------------------------------------------------------------------------------
def test_code_is_mit() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_prose_is_cc_by_4_with_the_whole_legal_code() -> None:
    text = (ROOT / "LICENSE-content").read_text()
    assert "Creative Commons Attribution 4.0 International Public License" in text
    for section in range(1, 9):
        assert f"Section {section} -- " in text, f"section {section} of the legal code is missing"
    assert "LICENSE" in text and "MIT" in text, "it must say that code is under LICENSE (MIT)"


def test_pyproject_names_both_licences_as_spdx() -> None:
    project = pyproject()["project"]
    assert project["license"] == "MIT AND CC-BY-4.0"
    assert project["license-files"] == ["LICENSE", "LICENSE-content"]
    for name in project["license-files"]:
        assert (ROOT / name).is_file()
    # PEP 639: license classifiers next to an SPDX expression are an error in setuptools.
    assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")]
    requires = pyproject()["build-system"]["requires"]
    floors = [int(m[1]) for r in requires if (m := re.fullmatch(r"setuptools>=(\d+)", r))]
    assert len(floors) == 1 and floors[0] >= 77, "an SPDX `license` needs setuptools>=77"


# ---- citation -------------------------------------------------------------------------------
def test_citation_cff_is_valid_cff_1_2_0() -> None:
    result = check_jsonschema("vendor.citation-file-format", ROOT / "CITATION.cff")
    assert result.returncode == 0, result.stdout + result.stderr


def test_citation_check_can_fail(tmp_path: Path) -> None:
    """The validator is not a rubber stamp: a CFF without authors is rejected."""
    broken = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    del broken["authors"]
    path = tmp_path / "CITATION.cff"
    path.write_text(yaml.safe_dump(broken))
    result = check_jsonschema("vendor.citation-file-format", path)
    assert result.returncode != 0
    assert "authors" in result.stdout + result.stderr


def test_citation_agrees_with_pyproject() -> None:
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    project = pyproject()["project"]
    assert cff["cff-version"] == "1.2.0"
    assert cff["version"] == project["version"]
    assert " AND ".join(cff["license"]) == project["license"]
    assert cff["repository-code"] == project["urls"]["Repository"]


# ---- changelog ------------------------------------------------------------------------------
KEEP_A_CHANGELOG_SECTIONS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_changelog_follows_keep_a_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog")
    assert "keepachangelog.com" in text
    releases = re.findall(r"^## \[([^\]]+)\]", text, flags=re.M)
    assert releases and releases[0] == "Unreleased"
    sections = set(re.findall(r"^### (.+)$", text, flags=re.M))
    assert sections and sections <= KEEP_A_CHANGELOG_SECTIONS, sections
