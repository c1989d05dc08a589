"""One registry: every name is selectable, unknown names are refused, none skips the contract."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from pydantic import ValidationError

import tests.peers
import tests.strategies
from stampede.config import StrategyConfig
from stampede.errors import ConfigError
from stampede.strategies import create_strategy, register, strategy_names
from stampede.strategies.naive import Naive
from tests.helpers import MakeStrategy
from tests.strategies.contract import StrategyContract

DOCUMENTED = {"naive", "local_lock", "single_flight", "swr", "xfetch", "jitter"}


def contract_subclasses() -> set[type[StrategyContract]]:
    for package in (tests.strategies, tests.peers):
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("test_"):
                importlib.import_module(f"{package.__name__}.{info.name}")
    found: set[type[StrategyContract]] = set()
    todo = list(StrategyContract.__subclasses__())
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_registered_strategy_runs_the_contract() -> None:
    covered = {cls.strategy for cls in contract_subclasses() if cls.__name__.startswith("Test")}
    missing = set(strategy_names()) - covered
    assert not missing, f"strategies without a StrategyContract subclass: {sorted(missing)}"


def test_the_design_table_strategies_are_registered() -> None:
    assert set(strategy_names()) >= DOCUMENTED
    assert strategy_names() == sorted(strategy_names())


def test_each_name_builds_its_own_class(make_strategy: MakeStrategy) -> None:
    for name in strategy_names():
        assert make_strategy(name).name == name


def test_an_unknown_name_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(ValidationError, match=r"unknown strategy 'nope'; valid: .*single_flight"):
        StrategyConfig(strategy="nope")
    bad = StrategyConfig.model_construct(strategy="nope")  # skips validation, as a typo in code
    with pytest.raises(ConfigError, match=r"valid: .*naive"):
        create_strategy(bad, deps=None)  # type: ignore[arg-type]


def test_a_name_cannot_be_registered_twice() -> None:
    class Impostor(Naive):
        name = "naive"

    with pytest.raises(ValueError, match="registered twice"):
        register(Impostor)
    assert register(Naive) is Naive  # re-registering the same class is harmless
