"""The runner without a lab: parameter sorting, the run cache key, save/load, compare.

The guards that need real pods (code hash, Redis version, the pods' counts) are in
``tests/test_run_guards.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from stampede import registry, runner, source
from stampede.config import LabConfig, LoadConfig, StrategyConfig
from stampede.errors import ConfigError, StrategyUnavailable
from stampede.metrics import COLUMNS, HEADLINE, RunShape, summarize
from stampede.runner import RunResult, compare, coordination, split_params
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


CODE, REDIS = "0123456789abcdef", "7.0.15"


def key(params: dict[str, object], code: str = CODE, redis: str = REDIS) -> str:
    return runner._cache_key(params, code, redis)


def test_the_cache_key_is_stable_and_names_the_strategy() -> None:
    assert key(all_params(strategy="swr")) == key(all_params(strategy="swr"))
    assert key(all_params(strategy="swr")).startswith("swr-")


def test_any_parameter_change_makes_a_new_key() -> None:
    base = key(all_params())
    for change in ({"ttl_s": 5.5}, {"seed": 1}, {"pods": 2}, {"beta": 2.0}, {"rate": 100.0}):
        assert key(all_params(**change)) != base, change


def test_a_code_change_makes_a_new_key() -> None:
    assert key(all_params(), code="fedcba9876543210") != key(all_params())


def test_another_redis_server_version_makes_a_new_key() -> None:
    assert key(all_params(), redis="7.2.4") != key(all_params(), redis="7.0.15")


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of the package's source, to edit."""
    copy = tmp_path / "stampede"
    shutil.copytree(source.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_the_copy_hashes_like_the_package(package_copy: Path) -> None:
    assert source.source_hash(package_copy) == source.code_version()
    assert len(source.code_version()) == 16


@pytest.mark.parametrize("module", source.PRESENTATION)
def test_editing_a_presentation_module_keeps_the_key(package_copy: Path, module: str) -> None:
    before = source.source_hash(package_copy)
    with (package_copy / module).open("a") as fh:
        fh.write("\n# a new chart, a new option: nothing a run measures\n")
    assert source.source_hash(package_copy) == before
    assert key(all_params(), code=source.source_hash(package_copy)) == key(
        all_params(), code=before
    )


@pytest.mark.parametrize(
    "module",
    ["strategies/single_flight.py", "pod.py", "load.py", "origin.py", "metrics.py", "lab.py",
     "runner.py", "config.py", "peers/cashews_lock.py"],
)  # fmt: skip
def test_editing_measured_code_changes_the_key(package_copy: Path, module: str) -> None:
    before = source.source_hash(package_copy)
    with (package_copy / module).open("a") as fh:
        fh.write("\n# a fix that could change a measurement\n")
    assert source.source_hash(package_copy) != before
    assert key(all_params(), code=source.source_hash(package_copy)) != key(
        all_params(), code=before
    )


def test_a_new_module_is_measured_unless_named_presentation(package_copy: Path) -> None:
    before = source.source_hash(package_copy)
    (package_copy / "strategies" / "brand_new.py").write_text("X = 1\n")
    assert source.source_hash(package_copy) != before


def test_every_presentation_module_exists_and_nothing_a_run_imports_is_one() -> None:
    assert all((source.PACKAGE / name).is_file() for name in source.PRESENTATION)
    probe = (
        "import json, sys, stampede.runner, stampede.pod, stampede.workers, stampede.load; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('stampede.'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    modules = json.loads(loaded.stdout)
    assert "stampede.runner" in modules and "stampede.pod" in modules
    files = {f"{m.removeprefix('stampede.').replace('.', '/')}.py" for m in modules}
    assert not files & set(source.PRESENTATION), sorted(files & set(source.PRESENTATION))


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


def test_coordination_is_the_delta_without_the_labs_bookkeeping() -> None:
    """One node's commands between two INFO snapshots: set-up and topology look-ups removed."""
    before = {"get": 10, "info": 3, "cluster|slots": 2, "evalsha": 1}
    after = {
        "get": 25, "info": 5, "cluster|slots": 4, "cluster|nodes": 1, "client|setinfo": 6,
        "command": 2, "hello": 3, "evalsha": 1, "spublish": 2,
    }  # fmt: skip
    assert coordination(before, after) == {"get": 15, "spublish": 2}
