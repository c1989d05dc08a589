"""The hash of the code a measurement depends on: the run cache's key and the pods' ``/health``.

:func:`code_version` hashes every ``*.py`` file of the package except the modules listed in
:data:`PRESENTATION`, which only show or drive results that were measured already. A pod
reports the hash of the files it was started from (``GET /health``, ``code``); the runner
refuses to measure pods whose hash differs from its own (:class:`~stampede.errors.CodeMismatch`)
and keys its run cache on it, so an edit that could change a measurement (a strategy, the pod,
the load generator, the origin, the lab, the runner, the metrics) makes new runs, and an edit
that cannot (a chart, the command line) keeps every stored run.

What it does not cover: the installed libraries (``requirements.lock`` pins them) and the
Python version; the redis-server version is part of the run key separately
(:func:`stampede.runner.redis_version`).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

__all__ = ["PACKAGE", "PRESENTATION", "code_version", "source_hash"]

PACKAGE = Path(__file__).parent

# Modules that cannot change what a run measures, and stay out of the hash. Each only shows
# results or passes a reader's request on: `charts` builds figures from stored frames, `cli`
# and `__main__` are the command line (they call `run()`, whose code is in the hash), and
# `__init__` re-exports names for notebooks (tests/test_exported_members.py keeps it to that).
# Everything else is in: a module missing here makes extra runs, never a stale one.
PRESENTATION = ("__init__.py", "__main__.py", "charts.py", "cli.py")


def source_hash(root: Path) -> str:
    """Hash of the package's source under ``root``, :data:`PRESENTATION` left out (16 hex)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative in PRESENTATION:
            continue
        digest.update(relative.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@lru_cache
def code_version() -> str:
    """:func:`source_hash` of this process's package, read once: the code it was started from."""
    return source_hash(PACKAGE)
