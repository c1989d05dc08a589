"""Behaviour of the chart module on small hand-made per-second frames."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import pytest

from stampede import charts

ROOT = Path(__file__).resolve().parent.parent


def per_second(strategy: str | None = None, seconds: int = 12, spike: float = 40.0) -> pd.DataFrame:
    """A tidy frame: a hot-key needle every 5 s, a little cold traffic, latency to match."""
    rows = []
    for second in range(seconds):
        expiring = second > 0 and second % 5 == 0
        values = {
            "origin_reads_hot": spike if expiring else 0.0,
            "origin_reads_cold": 2.0,
            "lower_bound": 1.0 if expiring else 0.0,
            "hot_latency_p50_ms": 5.0,
            "hot_latency_p99_ms": 200.0 if expiring else 20.0,
            "requests": 500.0,
        }
        values["origin_reads"] = values["origin_reads_hot"] + values["origin_reads_cold"]
        for metric, value in values.items():
            row: dict[str, Any] = {"second": second, "metric": metric, "value": value}
            if strategy:
                row["strategy"] = strategy
            rows.append(row)
    return pd.DataFrame(rows)


def units(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every unit (single-mark) view in a compiled Vega-Lite spec, depth first."""
    if "mark" in spec:
        yield spec
    for key in ("vconcat", "hconcat", "concat", "layer"):
        for child in spec.get(key, []):
            yield from units(child)
    if "spec" in spec:
        yield from units(spec["spec"])


def mark_type(unit: dict[str, Any]) -> str:
    mark = unit["mark"]
    return str(mark["type"] if isinstance(mark, dict) else mark)


def rows_of(spec: dict[str, Any], unit: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = spec["datasets"][unit["data"]["name"]]
    return rows


@pytest.fixture
def offline_renderer() -> Iterator[None]:
    before = alt.renderers.active
    charts.enable_offline()
    yield
    alt.renderers.enable(before)


def test_timeseries_is_two_panels_stacked_vertically() -> None:
    spec = charts.timeseries(per_second(), title="naive").to_dict()
    assert len(spec["vconcat"]) == 2
    top, bottom = spec["vconcat"]
    assert "layer" in top, "origin panel layers bars, lower bound and expiry rules"
    assert {mark_type(u) for u in units(top)} >= {"bar", "line"}
    assert bottom["encoding"]["y"]["title"] == "hot-key latency (ms)"


def test_expiry_rules_sit_at_the_given_seconds() -> None:
    spec = charts.timeseries(per_second(), title="t", expiries=[5.0, 10.0]).to_dict()
    rules = [u for u in units(spec) if mark_type(u) == "rule"]
    assert len(rules) == 1
    assert [row["t"] for row in rows_of(spec, rules[0])] == [5.0, 10.0]
    assert rules[0]["encoding"]["x"]["field"] == "t"


def test_no_expiry_rules_when_none_are_given() -> None:
    spec = charts.timeseries(per_second(), title="t").to_dict()
    assert not [u for u in units(spec) if mark_type(u) == "rule"]


def test_panels_share_one_zoomable_x_scale() -> None:
    spec = charts.timeseries(per_second(seconds=12), title="t", expiries=[5]).to_dict()
    assert spec["resolve"]["scale"]["x"] == "shared"
    (zoom,) = spec["params"]
    assert zoom["bind"] == "scales"
    assert zoom["select"]["encodings"] == ["x"]
    assert len(zoom["views"]) == 2, "dragging either panel must pan both"
    xs = [u["encoding"]["x"] for u in units(spec)]
    # One field and one domain everywhere, or the zoom moves only the panel under the mouse.
    assert {x["field"] for x in xs} == {"t"}
    assert {tuple(x["scale"]["domain"]) for x in xs} == {(0, 12)}


def test_every_mark_has_a_tooltip() -> None:
    spec = charts.timeseries(per_second(), title="t", expiries=[5]).to_dict()
    for unit in units(spec):
        assert unit["encoding"].get("tooltip"), f"{mark_type(unit)} has no tooltip"


def test_hot_key_bars_stack_on_top_of_other_keys() -> None:
    spec = charts.timeseries(per_second(spike=40), title="t").to_dict()
    bars = next(u for u in units(spec) if mark_type(u) == "bar")
    at_five = {r["series"]: r for r in rows_of(spec, bars) if r["second"] == 5}
    assert at_five["other keys"]["y0"] == 0 and at_five["other keys"]["y1"] == 2
    assert at_five["hot key"]["y0"] == 2 and at_five["hot key"]["y1"] == 42
    assert {(r["t"], r["t_end"]) for r in at_five.values()} == {(5, 6)}


def test_total_origin_reads_are_drawn_when_there_is_no_hot_cold_split() -> None:
    frame = per_second()
    frame = frame[~frame["metric"].isin(["origin_reads_hot", "origin_reads_cold"])]
    spec = charts.timeseries(frame, title="t").to_dict()
    bars = next(u for u in units(spec) if mark_type(u) == "bar")
    assert {r["series"] for r in rows_of(spec, bars)} == {"origin reads"}
    assert max(r["y1"] for r in rows_of(spec, bars)) == 42


def test_lower_bound_is_a_dashed_line() -> None:
    spec = charts.timeseries(per_second(), title="t").to_dict()
    lines = [u for u in units(spec) if mark_type(u) == "line" and "strokeDash" in u["mark"]]
    assert len(lines) == 1
    assert {r["series"] for r in rows_of(spec, lines[0])} == {"lower bound"}


def test_latency_falls_back_to_all_keys_without_hot_key_series() -> None:
    frame = per_second()
    frame["metric"] = frame["metric"].str.replace("hot_latency", "latency")
    spec = charts.timeseries(frame, title="t").to_dict()
    assert spec["vconcat"][1]["encoding"]["y"]["title"] == "latency, all keys (ms)"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.concat([per_second("naive"), per_second("swr")]), "compare_timeseries"),
        (pd.concat([per_second(), per_second()]), "raw per-request rows"),
        (per_second().drop(columns="value"), "lacks columns"),
        (per_second().iloc[:0], "empty"),
    ],
)
def test_timeseries_refuses_frames_it_cannot_draw_honestly(
    frame: pd.DataFrame, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        charts.timeseries(frame, title="t")


def test_compare_timeseries_has_one_row_per_strategy_on_shared_scales() -> None:
    frame = pd.concat([per_second("naive", spike=60), per_second("single_flight", spike=1)])
    spec = charts.compare_timeseries(
        frame, title="t", expiries={"naive": [5, 10], "single_flight": [5]}
    ).to_dict()
    rows = spec["vconcat"]
    assert [row["hconcat"][0]["title"] for row in rows] == [
        "naive: origin reads/s",
        "single_flight: origin reads/s",
    ]
    origin_domains = {
        tuple(u["encoding"]["y"]["scale"]["domain"])
        for row in rows
        for u in units(row["hconcat"][0])
        if "y" in u["encoding"]
    }
    assert origin_domains == {(0, 62)}, "every row's origin axis reaches the tallest needle"
    rules = [[r["t"] for r in rows_of(spec, u)] for u in units(spec) if mark_type(u) == "rule"]
    assert rules == [[5, 10], [5]]
    (zoom,) = spec["params"]
    assert len(zoom["views"]) == 4


def test_compare_timeseries_needs_a_strategy_column() -> None:
    with pytest.raises(ValueError, match="strategy"):
        charts.compare_timeseries(per_second(), title="t")


SUMMARY = pd.DataFrame(
    {
        "strategy": ["naive", "single_flight", "swr"],
        "max_origin_per_s_steady": [61, 8, 7],
        "origin_reads": [689, 111, 111],
        "hot_latency_steady_p99_ms": [223.0, 213.0, 28.0],
    }
)


def test_comparison_has_one_panel_per_metric_with_independent_y() -> None:
    metrics = ["max_origin_per_s_steady", "origin_reads", "hot_latency_steady_p99_ms"]
    chart = charts.comparison(SUMMARY, metrics=metrics)
    assert isinstance(chart, alt.Chart)
    spec = chart.to_dict()
    facet = spec["encoding"]["facet"]
    assert facet["field"] == "metric" and facet["columns"] == 3
    assert spec["resolve"]["scale"]["y"] == "independent"
    rows = spec["datasets"][spec["data"]["name"]]
    assert len({r["metric"] for r in rows}) == 3
    assert spec["encoding"]["x"]["sort"] == ["naive", "single_flight", "swr"]
    assert {"max origin reads/s (steady)", "hot-key p99 ms (steady)"} <= set(facet["sort"])


def test_comparison_accepts_strategy_as_index_and_rejects_unknown_metrics() -> None:
    indexed = SUMMARY.set_index("strategy")
    assert charts.comparison(indexed, metrics=["origin_reads"]).to_dict()
    with pytest.raises(ValueError, match="origin_reads"):
        charts.comparison(SUMMARY, metrics=["p42"])


def test_save_writes_svg_and_png(tmp_path: Path) -> None:
    chart = charts.timeseries(per_second(), title="saved", expiries=[5])
    svg, png = charts.save(chart, tmp_path / "figures", "naive")
    assert svg == tmp_path / "figures" / "naive.svg"
    assert svg.read_text(encoding="utf-8").lstrip().startswith("<svg")
    assert "saved" in svg.read_text(encoding="utf-8")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 5_000


def test_offline_renderer_gives_the_book_a_script_and_jupyterlab_vega(
    offline_renderer: None,
) -> None:
    chart = charts.timeseries(per_second(), title="a </script> in a title", expiries=[5])
    bundle, metadata = chart._repr_mimebundle_()
    script = bundle["application/javascript"]
    assert script.startswith("(window.stampedeChart||")
    assert "</script>" not in script, "a string in the spec must not close the script element"
    spec = json.loads(script[script.index(",{") + 1 : script.rindex(");")])
    assert len(spec["vconcat"]) == 2
    vega = bundle[charts.VEGA_MIME]
    assert vega["$schema"].endswith("/vega/v5.json")
    assert any(mark.get("type") == "group" for mark in vega["marks"])
    assert metadata[charts.VEGA_MIME]["embed_options"]["actions"]["editor"] is False


def test_enable_offline_is_idempotent(offline_renderer: None) -> None:
    charts.enable_offline()
    assert alt.renderers.active == charts.RENDERER


def test_importing_changes_no_altair_state() -> None:
    code = (
        "import altair as alt; before = alt.renderers.active; import stampede.charts; "
        "assert alt.renderers.active == before, alt.renderers.active; "
        "assert 'stampede-offline' not in alt.renderers.names()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_vendored_bundle_matches_the_vega_lite_altair_writes() -> None:
    header = (ROOT / "book" / "_static" / "vega-bundle.js").read_text(encoding="utf-8")[:300]
    major, minor = alt.SCHEMA_VERSION.lstrip("v").split(".")[:2]
    assert f"Vega-Lite {major}.{minor}," in header, "run python tools/vendor_vega.py"
