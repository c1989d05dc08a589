"""A generated part of a hand-written page: the text between two marker comments.

``tools/metric_table.py`` (the appendix's metric table) and ``tools/glossary.py`` (the
glossary's entries) both keep a page whose head and tail are prose and whose middle the
package writes; ``tests/test_docs.py`` checks that each page is current.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["render", "update"]


def render(page: str, begin: str, end: str, body: str, where: Path) -> str:
    """``page`` with the part between ``begin`` and ``end`` replaced by ``body``."""
    head, _, rest = page.partition(begin)
    _, _, tail = rest.partition(end)
    if not rest:
        raise SystemExit(f"{where} lacks the marker {begin!r}")
    return f"{head}{begin}\n{body}\n{end}{tail}"


def update(where: Path, rendered: str) -> int:
    """Write ``rendered`` to ``where`` if it differs; says so. Exit status 0."""
    text = where.read_text(encoding="utf-8")
    if rendered != text:
        where.write_text(rendered, encoding="utf-8")
        print(f"updated {where}")
    return 0
