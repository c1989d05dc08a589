"""What a teacher or a reader needs before adopting the book: licences, a citation, a changelog,
a repository link and launch buttons on every chapter.

Everything here is offline: ``CITATION.cff`` is validated against the CFF 1.2.0 schema that
``check-jsonschema`` ships (``vendor.citation-file-format``); the launch links are read from a
book built here from the real toc and config with the chapters unexecuted (launch links do not
depend on outputs), and from ``book/_build/html`` when ``make book`` has built it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
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


# ---- the book's repository block and launch buttons ----------------------------------------
CONFIG = ROOT / "book" / "_config.yml"
TEST_HUB = "https://hub.example.edu"
HREF = re.compile(r'href="([^"]+)"')


def book_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return config


def repository_url() -> str:
    url: str = book_config()["repository"]["url"]
    return url


def test_the_repository_url_is_written_once_and_agrees_everywhere() -> None:
    url = repository_url()
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), url
    assert CONFIG.read_text().count(url) == 1, "the book config names the repository once"
    assert pyproject()["project"]["urls"]["Repository"] == url
    assert yaml.safe_load((ROOT / "CITATION.cff").read_text())["repository-code"] == url


def test_launch_buttons_are_configured_for_binder_and_a_hub() -> None:
    config = book_config()
    buttons = config["launch_buttons"]
    assert buttons["binderhub_url"] == "https://mybinder.org"
    assert "jupyterhub_url" in buttons, "the one place a teacher sets the class hub"
    assert buttons["notebook_interface"] == "jupyterlab"
    assert config["html"]["use_repository_button"] is True


def launch_links(html_dir: Path, url: str) -> dict[str, dict[str, str]]:
    """Per chapter page: its Binder link, its JupyterHub link and its repository link."""
    links: dict[str, dict[str, str]] = {}
    for page in sorted((html_dir / "chapters").glob("*.html")):
        hrefs = [h.replace("&amp;", "&") for h in HREF.findall(page.read_text())]
        links[page.stem] = {
            "binder": next((h for h in hrefs if h.startswith("https://mybinder.org/")), ""),
            "hub": next((h for h in hrefs if "/hub/user-redirect/git-pull?" in h), ""),
            "repo": next((h for h in hrefs if h == url), ""),
        }
    return links


def check_links(html_dir: Path, hub: str | None) -> None:
    url = repository_url()
    owner_repo = url.removeprefix("https://github.com/")
    name = owner_repo.split("/")[1]
    branch = book_config()["repository"]["branch"]
    links = launch_links(html_dir, url)
    chapters = sorted(p.stem for p in (ROOT / "chapters").glob("[0-9]*.ipynb"))
    assert sorted(links) == chapters
    for chapter, found in links.items():
        assert found["binder"] == (
            f"https://mybinder.org/v2/gh/{owner_repo}/{branch}"
            f"?urlpath=lab/tree/chapters/{chapter}.ipynb"
        ), chapter
        assert found["repo"] == url, chapter
        if hub is None:
            continue
        link = urlsplit(found["hub"])
        assert f"{link.scheme}://{link.netloc}" == hub, chapter
        query = {k: v[0] for k, v in parse_qs(link.query).items()}
        assert query == {
            "repo": url,
            "urlpath": f"lab/tree/{name}/chapters/{chapter}.ipynb",  # nbgitpuller clones to name/
            "branch": branch,
        }, chapter


def test_built_html_launch_links_name_this_repository(tmp_path: Path) -> None:
    """Build the book from the repository root with the real toc and config (plus a hub URL,
    as a teacher would set it), chapters unexecuted: launch links do not depend on outputs."""
    config = book_config()
    config["launch_buttons"]["jupyterhub_url"] = TEST_HUB
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    built = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT),
         "--toc", str(ROOT / "book" / "_toc.yml"), "--config", str(tmp_path / "_config.yml"),
         "--path-output", str(tmp_path / "out"), "-W", "-q"],
        capture_output=True, text=True, timeout=240, check=False, cwd=ROOT,
    )  # fmt: skip
    assert built.returncode == 0, (built.stdout + built.stderr)[-4000:]
    check_links(tmp_path / "out" / "_build" / "html", hub=TEST_HUB)
    assert (tmp_path / "out" / "_build" / "html" / "book" / "instructors.html").is_file()


def test_make_html_stages_every_book_page_of_the_toc() -> None:
    """``make html`` builds from a staged copy (tools/figures.py): a page left out would fail."""
    import ast

    tree = ast.parse((ROOT / "tools" / "figures.py").read_text())
    staged = next(
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "BOOK_FILES" for t in node.targets)
    )
    toc = (ROOT / "book" / "_toc.yml").read_text()
    pages = re.findall(r"(?:root|file): book/([\w-]+)", toc)
    assert "instructors" in pages
    for page in pages:
        assert f"{page}.md" in staged, f"tools/figures.py does not stage book/{page}.md"


def test_the_built_book_launch_links_name_this_repository() -> None:
    """The book ``make book`` built, if there is one: Binder and repository links."""
    html = ROOT / "book" / "_build" / "html"
    if not (html / "chapters").is_dir():
        if os.environ.get("STAMPEDE_BOOK_BUILT"):  # `make browser` says it built one
            pytest.fail("STAMPEDE_BOOK_BUILT is set but book/_build/html has no chapters")
        pytest.skip("book/_build/html is not built (make book)")
    check_links(html, hub=book_config()["launch_buttons"]["jupyterhub_url"] or None)
