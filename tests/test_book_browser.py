"""The built book draws every chart and formula in headless Chromium with the network cut off.

The first tests prove the checker itself can fail (a page that needs a CDN, a chart that cannot
draw) on tiny pages made here; the last one runs it on ``book/_build/html``, and is skipped
until the book has been built (``make book``).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import altair as alt
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "book" / "_static"
BUILT = ROOT / "book" / "_build" / "html"


def load_check_book() -> ModuleType:
    """Import tools/check_book.py (tools/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("check_book", ROOT / "tools" / "check_book.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_book"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


check_book = load_check_book()

needs_chromium = pytest.mark.skipif(
    not any(shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")),
    reason="no Chromium on PATH (apt-get install chromium)",
)


def page(head: str, body: str) -> str:
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


def chart_output(spec: dict[str, object]) -> str:
    """What myst-nb writes for one chart rendered by stampede.charts.enable_offline()."""
    return (
        '<script type="application/javascript">'
        f"(window.stampedeChart||function(s){{}})(document.currentScript,{json.dumps(spec)});"
        "</script>"
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A two-folder mini site with the book's vendored scripts in _static."""
    html = tmp_path / "html"
    shutil.copytree(STATIC, html / "_static")
    (html / "chapters").mkdir()
    return html


SPEC = (
    alt.Chart(pd.DataFrame({"second": [0, 1, 2], "value": [1.0, 40.0, 2.0]}))
    .mark_bar()
    .encode(x="second:Q", y="value:Q")
    .to_dict()
)
SCRIPTS = (
    '<script src="../_static/vega-bundle.js"></script>'
    '<script src="../_static/stampede-charts.js"></script>'
)


@needs_chromium
def test_checker_passes_a_page_whose_chart_draws_offline(site: Path, tmp_path: Path) -> None:
    (site / "chapters" / "good.html").write_text(page(SCRIPTS, chart_output(SPEC)))
    (report,) = check_book.check_book(site, tmp_path / "shots")
    assert report.charts == 1 and not report.problems
    assert report.screenshot.stat().st_size > 1_000


@needs_chromium
def test_checker_fails_pages_that_need_the_network_or_do_not_draw(
    site: Path, tmp_path: Path
) -> None:
    cdn = '<script src="https://cdn.jsdelivr.net/npm/vega@6"></script>'
    (site / "chapters" / "cdn.html").write_text(page(cdn + SCRIPTS, chart_output(SPEC)))
    broken = {**SPEC, "mark": "no-such-mark"}
    (site / "chapters" / "broken.html").write_text(page(SCRIPTS, chart_output(broken)))
    (site / "chapters" / "no_bundle.html").write_text(
        page('<script src="../_static/stampede-charts.js"></script>', chart_output(SPEC))
    )
    with pytest.raises(check_book.BookCheckError) as failure:
        check_book.check_book(site, tmp_path / "shots")
    message = str(failure.value)
    assert "3 of 3 book pages failed" in message
    assert "network request (the book must work offline): https://cdn.jsdelivr.net" in message
    assert "chapters/broken.html" in message and "did not draw: state=error" in message
    assert "vegaEmbed is not loaded" in message


@needs_chromium
def test_built_book_draws_every_chart_offline() -> None:
    if not BUILT.is_dir() or not check_book.book_pages(BUILT):
        pytest.skip("book not built: run `make book` (jupyter-book build ...) before this test")
    reports = check_book.check_book(BUILT)
    assert sum(r.charts for r in reports) > 0, "the built book has no charts at all"
