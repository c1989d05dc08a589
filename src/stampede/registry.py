"""Strategies by name: each name maps to ``"module:Class"``, imported on first use.

The model is dogpile.cache's ``register_backend(name, modulepath, objname)``: the table below
names every built-in strategy and every peer adapter without importing any of them, so
:mod:`stampede.config` validates a name with nothing but this module, a pod imports only the
strategy it runs, and the package of strategies never imports the optional peers. A peer
whose library is missing is the only name that fails, when it is used, with an error that
says what to install (:class:`~stampede.errors.StrategyUnavailable`); every other name works.

    register_strategy("mine", "my_package.mine:Mine")    # a strategy of your own
    strategy_class("mine")                               # imports my_package.mine now

The ``@register`` class decorator that strategy modules carry checks that the class is the
one the table names (a typo or a second class under one name is a ``ValueError``), and adds
a class defined elsewhere under its ``name``.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from stampede.errors import ConfigError, StrategyUnavailable

if TYPE_CHECKING:
    from stampede.config import StrategyConfig
    from stampede.strategies.base import Deps, Strategy

__all__ = [
    "PEERS_INSTALL",
    "create_strategy",
    "register",
    "register_strategy",
    "strategy_class",
    "strategy_names",
]

S = TypeVar("S", bound="type[Strategy]")

PEERS_INSTALL = "pip install -e '.[peers]'"


@dataclass(frozen=True)
class _Entry:
    path: str  # "package.module:Class"
    requires: str | None = None  # import name of the optional library it needs
    package: str | None = None  # its name on PyPI


_REGISTRY: dict[str, _Entry] = {}


def register_strategy(
    name: str, path: str, *, requires: str | None = None, package: str | None = None
) -> None:
    """Make ``path`` (``"module:Class"``) selectable as ``name``; nothing is imported yet.

    ``requires`` names an optional library the class needs (checked on first use, so a
    missing one makes only this name unavailable); ``package`` is what to ``pip install``.
    """
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise ValueError(f"strategy path {path!r} is not 'module:Class'")
    existing = _REGISTRY.get(name)
    if existing is not None and existing.path != path:
        raise ValueError(f"strategy name {name!r} is registered twice: {existing.path} and {path}")
    _REGISTRY[name] = _Entry(path, requires, package or requires)


def register(cls: S) -> S:
    """Class decorator: ``cls`` is the strategy the table names ``cls.name`` (or a new one)."""
    register_strategy(cls.name, f"{cls.__module__}:{cls.__qualname__}")
    return cls


def strategy_names() -> list[str]:
    """Every registered name, sorted; a peer whose library is missing is listed too."""
    return sorted(_REGISTRY)


def strategy_class(name: str) -> type[Strategy]:
    """The class registered as ``name``, importing its module now if need be."""
    try:
        entry = _REGISTRY[name]
    except KeyError:
        valid = ", ".join(strategy_names())
        raise ConfigError(f"unknown strategy {name!r}; valid: {valid}") from None
    if entry.requires is not None and importlib.util.find_spec(entry.requires) is None:
        raise StrategyUnavailable(
            f"strategy {name!r} needs the {entry.package} package, which is not installed: "
            f"{PEERS_INSTALL} (or pip install {entry.package})"
        )
    module, _, attr = entry.path.partition(":")
    cls: type[Strategy] = getattr(importlib.import_module(module), attr)
    return cls


def create_strategy(config: StrategyConfig, deps: Deps) -> Strategy:
    """Build the strategy ``config.strategy`` names, with its dependencies."""
    return strategy_class(config.strategy)(deps, config)


_BUILT_IN = {
    "naive": "stampede.strategies.naive:Naive",
    "jitter": "stampede.strategies.naive:NaiveJitter",
    "local_lock": "stampede.strategies.local_lock:LocalLock",
    "single_flight": "stampede.strategies.single_flight:SingleFlight",
    "swr": "stampede.strategies.swr:StaleWhileRevalidate",
    "xfetch": "stampede.strategies.xfetch:XFetch",
    "fixed_cutoff": "stampede.strategies.fixed_cutoff:FixedCutoff",
    "recommended": "stampede.strategies.recommended:Recommended",
}
for _name, _path in _BUILT_IN.items():
    register_strategy(_name, _path)

# The optional `peers` extra: the libraries people would pick instead.
register_strategy("cashews_lock", "stampede.peers.cashews_lock:CashewsLock", requires="cashews")
register_strategy("cashews_early", "stampede.peers.cashews_early:CashewsEarly", requires="cashews")
register_strategy(
    "dogpile", "stampede.peers.dogpile_redis:DogpileRedis", requires="dogpile",
    package="dogpile.cache",
)  # fmt: skip
register_strategy(
    "aiocache", "stampede.peers.aiocache_redlock:AiocacheRedLock", requires="aiocache"
)
