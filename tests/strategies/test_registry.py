"""One registry: every name is selectable, unknown names are refused, none skips the contract."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import pkgutil
import subprocess
import sys

import pytest
from pydantic import ValidationError

import tests.peers
import tests.strategies
from stampede import registry
from stampede.config import StrategyConfig
from stampede.errors import ConfigError, StrategyUnavailable
from stampede.registry import register_strategy, strategy_class
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


IMPORTS_PROBE = """
import sys
{statement}
print(sorted(m for m in sys.modules if m.startswith(("stampede.strategies", "stampede.peers"))))
"""


def imported_after(statement: str) -> list[str]:
    probe = IMPORTS_PROBE.format(statement=statement)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    modules: list[str] = ast.literal_eval(result.stdout.strip())
    return modules


def test_config_validates_a_name_without_importing_any_strategy() -> None:
    loaded = imported_after(
        "from stampede.config import StrategyConfig; StrategyConfig(strategy='cashews_lock')"
    )
    assert loaded == []


def test_the_strategies_package_never_imports_the_peers() -> None:
    loaded = imported_after("import stampede.strategies; import stampede.pod")
    assert loaded and not [m for m in loaded if m.startswith("stampede.peers")]
    assert "stampede.strategies.swr" not in loaded  # imported on first use, by name


def test_a_missing_library_makes_only_its_peer_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = registry._REGISTRY["cashews_lock"]
    monkeypatch.setitem(
        registry._REGISTRY,
        "cashews_lock",
        dataclasses.replace(entry, requires="no_such_library_xyz", package="no-such-library"),
    )
    with pytest.raises(StrategyUnavailable, match=r"no-such-library.*pip install -e '\.\[peers\]'"):
        strategy_class("cashews_lock")
    assert "cashews_lock" in strategy_names()  # still listed, still a valid config value
    assert StrategyConfig(strategy="cashews_lock").strategy == "cashews_lock"
    assert strategy_class("cashews_early").name == "cashews_early"  # the others still load
    assert strategy_class("swr").name == "swr"


def test_a_path_must_name_module_and_class() -> None:
    with pytest.raises(ValueError, match="module:Class"):
        register_strategy("broken", "stampede.strategies.naive")
    assert "broken" not in strategy_names()
