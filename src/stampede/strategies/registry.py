"""Strategies by name: the pods, the command line and the notebooks all pick from here."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from stampede.errors import ConfigError

if TYPE_CHECKING:
    from stampede.config import StrategyConfig
    from stampede.strategies.base import Deps, Strategy

__all__ = ["create_strategy", "register", "strategy_names"]

S = TypeVar("S", bound="type[Strategy]")

_REGISTRY: dict[str, type[Strategy]] = {}


def register(cls: S) -> S:
    """Class decorator: make ``cls`` selectable by its ``name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"strategy name {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def strategy_names() -> list[str]:
    return sorted(_REGISTRY)


def create_strategy(config: StrategyConfig, deps: Deps) -> Strategy:
    try:
        cls = _REGISTRY[config.strategy]
    except KeyError:
        valid = ", ".join(strategy_names())
        raise ConfigError(f"unknown strategy {config.strategy!r}; valid: {valid}") from None
    return cls(deps, config)
