"""Shared fixtures: a real redis-server and a real embedded lab, started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stampede.lab import Lab


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """Redis and three uvicorn pods on free 127.0.0.1 ports; stopped by PID at the end."""
    with Lab.embedded() as running:
        yield running
