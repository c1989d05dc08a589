"""The libraries people would pick instead, as strategies: the optional ``peers`` extra.

Each adapter uses its library the way the library's documentation says, points it at the
pod's Redis with the run's TTL, creates the library's client lazily in the pod's process and
closes it in ``close()``; a library is imported on a pod's first request, not here.
:mod:`stampede.registry` names the four adapters (``cashews_lock``, ``cashews_early``,
``dogpile``, ``aiocache``) and imports one when it is first asked for; a missing library makes
only its own adapters unavailable, with an error saying what to install
(``pip install -e '.[peers]'``). :func:`stampede.cold_burst` shows each one's cold-key herd.
"""

from __future__ import annotations

from typing import Any, cast

from stampede.config import StrategyConfig
from stampede.peers._common import Peer
from stampede.registry import strategy_class

__all__ = ["PEERS", "library_settings"]

PEERS = ("cashews_lock", "cashews_early", "dogpile", "aiocache")


def library_settings(name: str, config: StrategyConfig | None = None) -> dict[str, Any]:
    """What the adapter ``name`` sets on its library for ``config`` (no connection is made)."""
    peer = cast("type[Peer]", strategy_class(name))
    return peer.library_settings(config or StrategyConfig(strategy=name))
