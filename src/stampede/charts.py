"""Charts for the book: built from tidy per-second frames and returned, never shown or saved.

Every chart reads a *pre-aggregated* frame (one row per second per metric, optionally per
strategy; see the book's appendix): Altair never sees raw per-request rows, so specs stay
small and a notebook output stays a few dozen kilobytes. Duplicate rows per second and
metric are refused.

The two-panel time series is the lesson of the reference write-up: origin reads/s on top (the
needles at every hot-key expiry), hot-key latency below (what users felt). ``save`` is the one
function that writes files; ``enable_offline`` is the one that changes Altair's global state.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import vl_convert as vlc

from stampede import metrics as metrics_table

__all__ = [
    "RENDERER",
    "compare_timeseries",
    "comparison",
    "enable_offline",
    "save",
    "timeseries",
]

RENDERER = "stampede-offline"
"""Name of the Altair renderer that ``enable_offline`` registers and enables."""

X_TITLE = "seconds since start"
REQUIRED = ("second", "metric", "value")

# One colour per series everywhere in the book, so a reader learns them once.
ORIGIN_COLORS = {
    "origin reads": "#4c78a8",
    "hot key": "#e45756",
    "other keys": "#9ecae9",
    "lower bound": "#222222",
}
LATENCY_COLORS = {"p50": "#54a24b", "p99": "#f58518"}
LATENCY_METRICS = {
    "hot": {"hot_latency_p50_ms": "p50", "hot_latency_p99_ms": "p99"},
    "all": {"latency_p50_ms": "p50", "latency_p99_ms": "p99"},
}
SUMMARY_LABELS = {name: column.label for name, column in metrics_table.COLUMNS.items()}
"""Panel titles of ``comparison``: the metric table's labels, one per ``compare`` column."""
EMBED_ACTIONS = {"export": True, "source": False, "compiled": False, "editor": False}
VEGA_MIME = "application/vnd.vega.v5+json"


def timeseries(
    frame: pd.DataFrame,
    *,
    title: str,
    expiries: Sequence[float] = (),
    width: int = 640,
    height: int = 200,
) -> alt.VConcatChart:
    """Origin reads/s above hot-key latency, for one run, on one zoomable time axis.

    Top: origin reads per 1-s bucket as bars spanning the bucket (stacked hot key / other keys
    when ``origin_reads_hot`` and ``origin_reads_cold`` are present, else ``origin_reads``), the
    ``lower_bound`` as a dashed line and a grey rule at each hot-key TTL expiry (``expiries``,
    seconds since start). Bottom: hot-key p50 and p99 latency (ms) per second, falling back to
    all-key latency when the frame has no hot-key series. Drag or scroll either panel to pan or
    zoom both. A frame holding several strategies is refused: use ``compare_timeseries``.
    """
    data = _prepare(frame)
    if "strategy" in data.columns and data["strategy"].nunique() > 1:
        names = ", ".join(map(str, data["strategy"].unique()))
        raise ValueError(
            f"timeseries draws one run but the frame holds strategies {names}: "
            "filter it to one, or call compare_timeseries"
        )
    x_domain = _x_domain(data)
    zoom = _zoom()
    top = _origin_panel(
        data, expiries, x_domain, None, "origin reads/s", width, height, zoom, legend=True
    )
    bottom = _latency_panel(
        data, x_domain, None, _latency_title(data), width, max(height * 3 // 4, 80), zoom, True
    )
    chart: alt.VConcatChart = _shared_x(alt.vconcat, top, bottom, title=title, spacing=12)
    return chart


def compare_timeseries(
    frame: pd.DataFrame,
    *,
    title: str,
    expiries: Sequence[float] | Mapping[str, Sequence[float]] = (),
    width: int = 290,
    height: int = 110,
) -> alt.VConcatChart:
    """One row per strategy (origin reads/s left, hot-key latency right), scales shared.

    The y scales are fixed to the largest value over *all* strategies, so a short bar really is
    fewer origin reads than a tall one in another row; the x axis zooms and pans together.
    ``expiries`` is either one list for every strategy or a mapping ``strategy -> list``.
    Rows follow the order in which strategies first appear in the frame.
    """
    data = _prepare(frame)
    if "strategy" not in data.columns:
        raise ValueError("compare_timeseries needs a 'strategy' column; use timeseries for one run")
    x_domain = _x_domain(data)
    origin_max = _origin_max(data)
    latency_max = _latency_max(data)
    latency_title = _latency_title(data)
    zoom = _zoom()
    rows = []
    for index, strategy in enumerate(pd.unique(data["strategy"])):
        part = data[data["strategy"] == strategy]
        marks = expiries.get(strategy, ()) if isinstance(expiries, Mapping) else expiries
        legend = index == 0
        origin = _origin_panel(
            part, marks, x_domain, origin_max, "origin reads/s", width, height, zoom, legend
        )
        latency = _latency_panel(
            part, x_domain, latency_max, latency_title, width, height, zoom, legend
        )
        rows.append(
            _shared_x(
                alt.hconcat,
                origin.properties(title=f"{strategy}: origin reads/s"),
                latency.properties(title=f"{strategy}: {latency_title}"),
                spacing=16,
            )
        )
    chart: alt.VConcatChart = _shared_x(alt.vconcat, *rows, title=title, spacing=8)
    return chart


def comparison(
    summary: pd.DataFrame,
    *,
    metrics: Sequence[str],
    title: str | None = None,
    width: int = 150,
    height: int = 180,
) -> alt.Chart:
    """Small multiples: one bar panel per summary metric, one bar per strategy.

    ``summary`` has one row per strategy (a ``strategy`` column, or the index) and a numeric
    column per metric. Each panel has its own y scale, because reads/s and milliseconds share no
    unit; strategies keep the row order of ``summary`` in every panel.
    """
    table = summary if "strategy" in summary.columns else summary.reset_index()
    if "strategy" not in table.columns:
        raise ValueError("comparison needs a 'strategy' column or an index named 'strategy'")
    missing = [m for m in metrics if m not in table.columns]
    if missing or not metrics:
        raise ValueError(
            f"comparison metrics {missing or list(metrics)} are not columns of the summary; "
            f"valid: {[c for c in table.columns if c != 'strategy']}"
        )
    labels = [metrics_table.label(m) for m in metrics]
    long = table.melt(
        id_vars=["strategy"], value_vars=list(metrics), var_name="metric", value_name="value"
    )
    long["metric"] = long["metric"].map(dict(zip(metrics, labels, strict=True)))
    long["value"] = pd.to_numeric(long["value"], errors="raise").astype(float)
    long["strategy"] = long["strategy"].astype(str)
    order = list(pd.unique(table["strategy"].astype(str)))
    chart: alt.Chart = (
        alt.Chart(long, title=title or alt.Undefined)
        .mark_bar()
        .encode(
            x=alt.X("strategy:N", sort=order, title=None, axis=alt.Axis(labelAngle=-40)),
            y=alt.Y("value:Q", title=None),
            color=alt.Color("strategy:N", sort=order, legend=None),
            facet=alt.Facet("metric:N", sort=labels, columns=len(labels), title=None),
            tooltip=[
                alt.Tooltip("strategy:N"),
                alt.Tooltip("metric:N"),
                alt.Tooltip("value:Q", format=",.4~f"),
            ],
        )
        .properties(width=width, height=height)
        .resolve_scale(y="independent")
    )
    return chart


def save(chart: alt.TopLevelMixin, directory: str | Path, name: str) -> list[Path]:
    """Write ``name.svg`` and ``name.png`` (2x) into ``directory`` with vl-convert, offline.

    The only charting function with a side effect; notebooks call it for ``book/figures/``.
    """
    spec = chart.to_dict()
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    svg_path, png_path = folder / f"{name}.svg", folder / f"{name}.png"
    svg_path.write_text(vlc.vegalite_to_svg(spec, vl_version=_vl_version()), encoding="utf-8")
    png_path.write_bytes(vlc.vegalite_to_png(spec, vl_version=_vl_version(), scale=2))
    return [svg_path, png_path]


def enable_offline() -> None:
    """Make every Altair chart display without the network, in the book and in JupyterLab.

    Registers and enables the ``stampede-offline`` renderer. Each chart output then carries two
    representations of the same chart, and each front end picks the one it can draw:

    - ``application/javascript``: a one-line script calling ``window.stampedeChart``, which the
      book's ``book/_static/stampede-charts.js`` defines on top of the vendored
      ``vega-bundle.js`` (Vega 6 / Vega-Lite 6 / vega-embed from vl-convert-python, loaded via
      ``html_js_files``). myst-nb ranks this type first for HTML, so the built book draws the
      interactive Vega-Lite 6 chart with no CDN.
    - ``application/vnd.vega.v5+json``: the spec compiled to Vega by vl-convert. JupyterLab
      4.6's built-in renderer only knows Vega-Lite up to 5, so Altair 6's own Vega-Lite 6 output
      shows nothing there; it does draw compiled Vega with the Vega it bundles, offline, with
      tooltips and zoom, and picks this type over JavaScript.

    Call it once in each notebook's import cell. Idempotent. For static files use ``save``.
    """
    if RENDERER not in alt.renderers.names():
        alt.renderers.register(RENDERER, _offline_renderer)
    alt.renderers.enable(RENDERER)


# --- renderer ----------------------------------------------------------------------------------


def _offline_renderer(spec: dict[str, Any], **_: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Mime bundle for one chart: a script for the book, compiled Vega for JupyterLab."""
    vega = vlc.vegalite_to_vega(spec, vl_version=_vl_version())
    # Same spec format; the v5 schema keeps JupyterLab's Vega 5 from warning about a mismatch.
    vega["$schema"] = "https://vega.github.io/schema/vega/v5.json"
    # "<" escaped so no string in the data can close the <script> element early.
    payload = json.dumps(spec, separators=(",", ":")).replace("<", "\\u003c")
    script = (
        "(window.stampedeChart||function(s){var d=document.createElement('pre');"
        "d.textContent='This chart needs book/_static/stampede-charts.js and vega-bundle.js';"
        f"s&&s.parentNode.insertBefore(d,s)}})(document.currentScript,{payload});"
    )
    title = spec.get("title")
    text = title.get("text") if isinstance(title, dict) else title
    bundle = {
        VEGA_MIME: vega,
        "application/javascript": script,
        "text/plain": f"<chart: {text or 'untitled'}>",
    }
    return bundle, {VEGA_MIME: {"embed_options": {"actions": EMBED_ACTIONS}}}


def _vl_version() -> str:
    """The ``major.minor`` Vega-Lite version Altair writes, which vl-convert must compile."""
    major, minor = alt.SCHEMA_VERSION.lstrip("v").split(".")[:2]
    return f"{major}.{minor}"


# --- panels -----------------------------------------------------------------------------------


def _prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """Check the tidy per-second shape and add ``t``, the x position every mark plots at."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing or frame.empty:
        raise ValueError(
            f"per-second frame is empty or lacks columns {missing}; expected rows with "
            f"{list(REQUIRED)} (+ optional 'strategy')"
        )
    keys = ["second", "metric", *(["strategy"] if "strategy" in frame.columns else [])]
    if frame.duplicated(keys).any():
        raise ValueError(
            f"frame has several rows per {keys}: pass the per-second aggregate "
            "(one row per second per metric), never raw per-request rows"
        )
    data = frame.copy()
    data["second"] = data["second"].astype(int)
    data["value"] = data["value"].astype(float)
    # Every layer plots against one field, "t": the zoom parameter is bound per field, so
    # panels whose x fields differed would not move together. Points sit mid-bucket.
    data["t"] = data["second"] + 0.5
    return data


def _x_domain(data: pd.DataFrame) -> list[int]:
    return [int(data["second"].min()) if len(data) else 0, int(data["second"].max()) + 1]


def _zoom() -> alt.Parameter:
    """Scroll to zoom, drag to pan; bound to the shared x scale of every panel."""
    return alt.selection_interval(bind="scales", encodings=["x"])


def _shared_x(concat: Any, *charts: Any, **kwargs: Any) -> Any:
    """Concatenate panels that share the x scale (and its zoom) but keep their own colours.

    Every panel carries the same zoom parameter so dragging any of them pans all; Altair merges
    the copies into one parameter and warns that it did, which is exactly what we want here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Automatically deduplicated selection parameter")
        chart = concat(*charts, **kwargs)
    return chart.resolve_scale(x="shared", color="independent").resolve_legend(color="independent")


def _x(domain: list[int]) -> alt.X:
    return alt.X("t:Q", title=X_TITLE, scale=alt.Scale(domain=domain, nice=False))


def _origin_bars(data: pd.DataFrame) -> pd.DataFrame:
    """Bars as explicit y ranges: other keys at the bottom, hot key stacked on top."""
    metrics = set(data["metric"])
    split = {"origin_reads_hot", "origin_reads_cold"} <= metrics
    if split:
        wide = data[data["metric"].isin(["origin_reads_hot", "origin_reads_cold"])].pivot_table(
            index="second", columns="metric", values="value", fill_value=0.0
        )
        wide = wide.reset_index()
        cold = wide.assign(series="other keys", value=wide["origin_reads_cold"], y0=0.0)
        cold["y1"] = cold["value"]
        hot = wide.assign(series="hot key", value=wide["origin_reads_hot"])
        hot["y0"] = wide["origin_reads_cold"]
        hot["y1"] = hot["y0"] + hot["value"]
        bars = pd.concat([cold, hot], ignore_index=True)
    else:
        bars = data[data["metric"] == "origin_reads"].assign(series="origin reads", y0=0.0)
        bars["y1"] = bars["value"]
    # Bars span their bucket [second, second + 1).
    bars = bars.assign(t=bars["second"].astype(float), t_end=bars["second"] + 1.0)
    return bars[["second", "t", "t_end", "series", "value", "y0", "y1"]]


def _origin_panel(
    data: pd.DataFrame,
    expiries: Sequence[float],
    x_domain: list[int],
    y_max: float | None,
    y_title: str,
    width: int,
    height: int,
    zoom: alt.Parameter,
    legend: bool,
) -> alt.LayerChart:
    bars = _origin_bars(data)
    bound = data[data["metric"] == "lower_bound"].assign(series="lower bound")
    present = [s for s in ORIGIN_COLORS if s in set(bars["series"]) | set(bound["series"])]
    color = alt.Color(
        "series:N",
        title=None,
        scale=alt.Scale(domain=present, range=[ORIGIN_COLORS[s] for s in present]),
        legend=alt.Legend(orient="top") if legend else None,
    )
    y_scale = alt.Scale(domain=[0, y_max], nice=True) if y_max is not None else alt.Scale()
    layers: list[alt.Chart] = [
        alt.Chart(bars)
        .mark_bar(stroke="white", strokeWidth=0.5, clip=True)
        .encode(
            x=_x(x_domain),
            x2="t_end:Q",
            y=alt.Y("y1:Q", title=y_title, scale=y_scale),
            y2="y0:Q",
            color=color,
            tooltip=[
                alt.Tooltip("second:Q", title="second"),
                alt.Tooltip("series:N", title="reads of"),
                alt.Tooltip("value:Q", title="origin reads", format=",.0f"),
            ],
        )
        .add_params(zoom)
    ]
    if len(bound):
        layers.append(
            alt.Chart(bound)
            .mark_line(interpolate="step", strokeDash=[6, 4], strokeWidth=1.5, clip=True)
            .encode(
                x=_x(x_domain),
                y=alt.Y("value:Q", title=y_title, scale=y_scale),
                color=color,
                tooltip=[
                    alt.Tooltip("second:Q", title="second"),
                    alt.Tooltip("value:Q", title="lower bound (reads/s)", format=",.2~f"),
                ],
            )
        )
    if len(expiries):
        rules = pd.DataFrame({"t": [float(t) for t in expiries]})
        layers.append(
            alt.Chart(rules)
            .mark_rule(color="#888888", strokeDash=[2, 3], strokeWidth=1, clip=True)
            .encode(
                x=_x(x_domain),
                tooltip=[alt.Tooltip("t:Q", title="hot-key TTL expiry (s)", format=".2f")],
            )
        )
    return alt.LayerChart(layer=layers, width=width, height=height)


def _latency_series(data: pd.DataFrame) -> dict[str, str]:
    metrics = set(data["metric"])
    hot = LATENCY_METRICS["hot"]
    return hot if metrics & set(hot) else LATENCY_METRICS["all"]


def _latency_title(data: pd.DataFrame) -> str:
    hot = _latency_series(data) is LATENCY_METRICS["hot"]
    return "hot-key latency (ms)" if hot else "latency, all keys (ms)"


def _latency_max(data: pd.DataFrame) -> float:
    values = data.loc[data["metric"].isin(_latency_series(data)), "value"]
    return float(values.max()) if len(values) else 1.0


def _origin_max(data: pd.DataFrame) -> float:
    bars = [
        _origin_bars(data[data["strategy"] == s])["y1"].max() for s in pd.unique(data["strategy"])
    ]
    bound = data.loc[data["metric"] == "lower_bound", "value"]
    peaks = [float(b) for b in bars if pd.notna(b)] + ([float(bound.max())] if len(bound) else [])
    return max(peaks, default=1.0) or 1.0


def _latency_panel(
    data: pd.DataFrame,
    x_domain: list[int],
    y_max: float | None,
    y_title: str,
    width: int,
    height: int,
    zoom: alt.Parameter,
    legend: bool,
) -> alt.Chart:
    names = _latency_series(data)
    lines = data[data["metric"].isin(names)].assign(series=lambda d: d["metric"].map(names))
    present = [s for s in LATENCY_COLORS if s in set(lines["series"])]
    y_scale = alt.Scale(domain=[0, y_max], nice=True) if y_max is not None else alt.Scale(zero=True)
    chart: alt.Chart = (
        alt.Chart(lines)
        .mark_line(point=alt.OverlayMarkDef(size=14, clip=True), strokeWidth=1.5, clip=True)
        .encode(
            x=_x(x_domain),
            y=alt.Y("value:Q", title=y_title, scale=y_scale),
            color=alt.Color(
                "series:N",
                title=None,
                scale=alt.Scale(domain=present, range=[LATENCY_COLORS[s] for s in present]),
                legend=alt.Legend(orient="top") if legend else None,
            ),
            tooltip=[
                alt.Tooltip("second:Q", title="second"),
                alt.Tooltip("series:N", title="percentile"),
                alt.Tooltip("value:Q", title="latency (ms)", format=",.1f"),
            ],
        )
        .add_params(zoom)
        .properties(width=width, height=height)
    )
    return chart
