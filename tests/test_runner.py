"""The runner without a lab: parameter sorting, the run cache key, save/load, compare."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from stampede import registry, runner
from stampede.config import LabConfig, LoadConfig, StrategyConfig
from stampede.errors import ConfigError, StrategyUnavailable
from stampede.metrics import COLUMNS, HEADLINE, RunShape, summarize
from stampede.runner import RunResult, compare, split_params
from tests.test_metrics import every, reads, records


# ---- split_params ---------------------------------------------------------------------------
def test_split_params_sorts_each_name_into_its_model() -> None:
    config, load, lab = split_params({"strategy": "swr", "ttl_s": 2.0, "clients": 7, "pods": 2})
    assert (config.strategy, config.ttl_s) == ("swr", 2.0)
    assert load.clients == 7 and lab.pods == 2
    assert (type(config), type(load), type(lab)) == (StrategyConfig, LoadConfig, LabConfig)


def test_split_params_refuses_unknown_names_and_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['tll_s'\]; valid: .*ttl_s"):
        split_params({"tll_s": 5})


def test_split_params_refuses_a_peer_whose_library_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = registry._REGISTRY["aiocache"]
    missing = dataclasses.replace(entry, requires="no_such_library_xyz", package="aiocache")
    monkeypatch.setitem(registry._REGISTRY, "aiocache", missing)
    with pytest.raises(StrategyUnavailable, match=r"aiocache.*pip install"):
        split_params({"strategy": "aiocache"})


def test_split_params_refuses_bad_values_with_one_line() -> None:
    with pytest.raises(ConfigError, match="clients"):
        split_params({"clients": 0})


# ---- the cache key ---------------------------------------------------------------------------
def all_params(**changes: object) -> dict[str, object]:
    config, load, lab = split_params(dict(changes))
    return {**config.model_dump(), **load.model_dump(), **lab.model_dump()}


def test_the_cache_key_is_stable_and_names_the_strategy() -> None:
    key = runner._cache_key(all_params(strategy="swr"))
    assert key == runner._cache_key(all_params(strategy="swr"))
    assert key.startswith("swr-")


def test_any_parameter_change_makes_a_new_key() -> None:
    base = runner._cache_key(all_params())
    for change in ({"ttl_s": 5.5}, {"seed": 1}, {"pods": 2}, {"beta": 2.0}, {"rate": 100.0}):
        assert runner._cache_key(all_params(**change)) != base, change


def test_a_code_change_makes_a_new_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = runner._cache_key(all_params())
    monkeypatch.setattr(runner, "code_version", lambda: "another-version")
    assert runner._cache_key(all_params()) != before


def test_code_version_hashes_the_package_source() -> None:
    version = runner.code_version()
    assert len(version) == 16 and version == runner.code_version()


# ---- save and load ---------------------------------------------------------------------------
def result(strategy: str = "naive", hot_reads: tuple[float, ...] = (0.1, 5.3)) -> RunResult:
    params = all_params(strategy=strategy, duration_s=12.0, origin_latency_ms=200.0)
    frame = records(every(0.5, 12))
    origin = reads(list(hot_reads))
    summary = summarize(frame, origin, RunShape.of(params), sent=len(frame))
    summary |= {"redis_commands": 48, "redis_commands_per_request": 2.0}
    return RunResult(strategy, params, frame, origin, summary, {"origin_calls": 2}, {"get": 48})


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    original = result()
    path = tmp_path / "run.json.gz"
    runner._save(original, path)
    loaded = runner._load(path)
    assert loaded.strategy == original.strategy
    assert loaded.params == json.loads(json.dumps(original.params))  # JSON: tuples become lists
    assert (loaded.counters, loaded.commands) == (original.counters, original.commands)
    pd.testing.assert_frame_equal(loaded.records, original.records, check_dtype=False)
    pd.testing.assert_frame_equal(loaded.reads, original.reads, check_dtype=False)
    for key, value in original.summary.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(loaded.summary[key]), key
        elif not isinstance(value, dict):
            assert loaded.summary[key] == value, key
    assert loaded.summary["latency_ms"]["p50"] == original.summary["latency_ms"]["p50"]
    assert not list(tmp_path.glob("*.tmp*"))  # written to a temporary name, then renamed
    assert loaded.shape == original.shape
    assert loaded.to_json()["strategy"] == "naive"


# ---- compare ---------------------------------------------------------------------------------
def test_compare_has_one_row_per_run_and_the_asked_columns_in_order() -> None:
    runs = [result("naive", (0.1, 5.3, 5.35)), result("swr")]
    table = compare(runs, columns=[*HEADLINE, "n_hit"])
    assert list(table.index) == ["naive", "swr"]
    assert list(table.columns) == [*HEADLINE, "n_hit"]
    assert table.loc["naive", "origin_reads"] == 3 and table.loc["swr", "origin_reads"] == 2
    steady = runs[0].summary["hot_latency_ms_steady"]["p99"]
    assert table.loc["naive", "hot_latency_steady_p99_ms"] == steady


def test_compare_without_columns_lists_table_columns_only() -> None:
    table = compare([result()])
    assert set(table.columns) <= set(COLUMNS)
    assert {"requests", "hot_latency_steady_p99_ms", "latency_p50_ms", "n_wait_hit"} <= set(
        table.columns
    )
    assert not [c for c in table.columns if "_ms_steady_" in c]  # the old, doubled spelling


def test_compare_refuses_a_column_the_table_does_not_have() -> None:
    with pytest.raises(KeyError, match="hot_latency_ms_steady_p99_ms"):
        compare([result()], columns=["hot_latency_ms_steady_p99_ms"])
