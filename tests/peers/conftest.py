"""The peers run on one Redis only: their libraries' own clients are set up for one server.

The pods refuse a peer on a Redis Cluster (``tests/test_cluster.py`` checks that), so the
cluster half of :func:`tests.conftest.cache_url` does not apply here.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def cache_url(redis_url: str) -> str:
    return redis_url
