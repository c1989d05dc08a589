"""Execute the chapters with papermill into a staging site, and export every chart as SVG + PNG.

Usage: ``python tools/figures.py [--duration S] chapters/*.ipynb`` (``make figures``).

1. Stage the book under ``book/_build/site/``, mirroring the repository's layout so the
   chapters' relative paths (``{literalinclude} ../src/...``) resolve: ``book/_config.yml``,
   ``book/_toc.yml``, ``book/intro.md``, ``book/appendix.md`` and ``book/_static/`` go to
   ``site/book/``, the package's sources to ``site/src/``.
2. Run each chapter with papermill (cwd: the repository root; kernel: ``python3``, which
   jupyter_client starts with this interpreter) and write the executed copy to
   ``site/chapters/<name>.ipynb``. ``--duration S`` becomes ``-p duration_s S``; without it a
   chapter reads ``STAMPEDE_DURATION_S`` or uses its default. The committed notebooks are
   never written to.
3. Export the charts: notebooks return charts and never save them, so each chart output's
   compiled Vega spec (``application/vnd.vega.v5+json``, written by
   ``stampede.charts.enable_offline``) is converted with vl-convert to
   ``book/figures/<name>/<nn>-<title>.svg`` and ``.png``.

Runs are cached on disk by the package (same parameters and code: no new run), so executing
the chapters after ``make notebooks`` costs little. Exits 1 and names the chapters that failed.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
import vl_convert as vlc
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "book" / "_build" / "site"
FIGURES = ROOT / "book" / "figures"
BOOK_FILES = (
    "_config.yml",
    "_toc.yml",
    "intro.md",
    "closing.md",
    "glossary.md",
    "references.md",
    "references.bib",
    "instructors.md",
    "appendix.md",
)
VEGA_MIME = "application/vnd.vega.v5+json"
KERNEL = "python3"


def stage_site(site: Path = SITE) -> None:
    """Copy the book's own files and the package sources into a fresh staging site."""
    if site.exists():
        shutil.rmtree(site)
    (site / "book").mkdir(parents=True)
    (site / "chapters").mkdir()
    for name in BOOK_FILES:
        shutil.copy2(ROOT / "book" / name, site / "book" / name)
    shutil.copytree(ROOT / "book" / "_static", site / "book" / "_static")
    shutil.copytree(
        ROOT / "src" / "stampede",
        site / "src" / "stampede",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )


def execute(
    notebook: Path,
    output: Path,
    duration: float | None,
    parameters: dict[str, Any] | None = None,
) -> None:
    """Run one chapter with papermill; the executed copy goes to ``output``.

    ``parameters`` are injected after the chapter's ``parameters`` cell (papermill's rule);
    ``duration`` is ``duration_s`` among them. ``tools/off_defaults.py`` runs chapters away
    from their defaults through here.
    """
    parameters = dict(parameters or {})
    if duration is not None:
        parameters["duration_s"] = float(duration)
    pm.execute_notebook(
        str(notebook),
        str(output),
        parameters=parameters,
        kernel_name=KERNEL,
        cwd=str(ROOT),
        progress_bar={"desc": notebook.stem, "leave": False},
    )


def chart_outputs(executed: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every chart in an executed notebook, in order: (title, compiled Vega spec)."""
    nb = nbformat.read(executed, as_version=4)
    charts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if VEGA_MIME not in data:
                continue
            spec = data[VEGA_MIME]
            spec = json.loads(spec) if isinstance(spec, str) else spec
            text = str(data.get("text/plain", ""))
            match = re.fullmatch(r"<chart: (.*)>", text.strip())
            charts.append((match.group(1) if match else "chart", spec))
    return charts


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "chart"


def export_charts(executed: Path, folder: Path) -> list[Path]:
    """Write ``<nn>-<title>.svg`` and ``.png`` (2x) for every chart; returns the paths."""
    if folder.exists():
        shutil.rmtree(folder)  # a chart removed from the chapter must not linger
    folder.mkdir(parents=True)
    written = []
    for number, (title, spec) in enumerate(chart_outputs(executed), start=1):
        stem = folder / f"{number:02d}-{slug(title)}"
        stem.with_suffix(".svg").write_text(vlc.vega_to_svg(spec), encoding="utf-8")
        stem.with_suffix(".png").write_bytes(vlc.vega_to_png(spec, scale=2))
        written += [stem.with_suffix(".svg"), stem.with_suffix(".png")]
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="chapters/*.ipynb")
    parser.add_argument("--duration", type=float, default=None, help="run length, s")
    args = parser.parse_args(argv)
    notebooks = [nb.resolve() for nb in args.notebooks]
    missing = [str(nb) for nb in notebooks if not nb.is_file()]
    if missing:
        parser.error(f"no such notebook(s): {', '.join(missing)}")
    stage_site()
    failed: list[str] = []
    started = time.monotonic()
    for notebook in tqdm(notebooks, desc="chapters", unit="chapter"):
        output = SITE / "chapters" / notebook.name
        t0 = time.monotonic()
        try:
            execute(notebook, output, args.duration)
        except pm.PapermillExecutionError as error:
            failed.append(notebook.name)
            tqdm.write(f"FAILED {notebook.name}: {error.ename}: {error.evalue}")
            continue
        figures = export_charts(output, FIGURES / notebook.stem)
        tqdm.write(
            f"ok {notebook.name}: {len(figures) // 2} charts to "
            f"{(FIGURES / notebook.stem).relative_to(ROOT)}/ in {time.monotonic() - t0:.0f} s"
        )
    print(
        f"{len(notebooks) - len(failed)} of {len(notebooks)} chapters executed in "
        f"{time.monotonic() - started:.0f} s; staging site {SITE.relative_to(ROOT)}/"
    )
    if failed:
        print(f"failed: {', '.join(failed)} (executed copies kept for reading)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
