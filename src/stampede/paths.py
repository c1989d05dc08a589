"""Where the lab keeps its files, found through the package, never the working directory.

A checkout (``pip install -e .``) uses the repository's ``data/``; an installed package, or a
reader who sets ``STAMPEDE_DATA_DIR``, uses that directory instead.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "origin_path", "runs_dir", "state_dir"]

_REPO = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    if env := os.environ.get("STAMPEDE_DATA_DIR"):
        path = Path(env)
    elif (_REPO / "pyproject.toml").exists() and (_REPO / "src" / "stampede").is_dir():
        path = _REPO / "data"
    else:
        path = Path.home() / ".cache" / "stampede-lab"
    path.mkdir(parents=True, exist_ok=True)
    return path


def origin_path() -> Path:
    return data_dir() / "origin.sqlite3"


def runs_dir() -> Path:
    path = data_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_dir() -> Path:
    """Logs and the background lab's PID file (``stampede lab up``)."""
    path = Path(os.environ.get("STAMPEDE_STATE_DIR", data_dir() / "lab"))
    path.mkdir(parents=True, exist_ok=True)
    return path
