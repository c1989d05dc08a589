"""The machine-wide run lock: one load run at a time, for every user of the machine."""

from __future__ import annotations

import stat
import tempfile
from pathlib import Path

import pytest

from stampede.runner import machine_exclusive


def test_the_lock_file_is_writable_by_every_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever creates it first must not lock the others out (a 0644 file did, on a hub)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with machine_exclusive():
        mode = stat.S_IMODE((tmp_path / "stampede-lab-load.lock").stat().st_mode)
    assert mode == 0o666


def test_an_existing_0644_lock_file_is_opened_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    lock = tmp_path / "stampede-lab-load.lock"
    lock.touch(mode=0o644)
    lock.chmod(0o644)
    with machine_exclusive():
        pass
    assert stat.S_IMODE(lock.stat().st_mode) == 0o666
