"""Chapter 9's charts: each draws one sweep of :mod:`stampede.sim.sweeps`, closed form beside.

Built from the sweep's tidy frame and returned, never shown or saved (like
:mod:`stampede.charts`); every title ends in "(simulated)".
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from stampede.sim.backend import titled

__all__ = ["head_start_chart", "herd_chart", "jitter_chart", "pods_chart", "redis_cost_chart"]

WIDTH, HEIGHT = 420, 260


def _measured_and_closed(
    frame: pd.DataFrame,
    x: str,
    y: str,
    color: str,
    *,
    log: bool,
    title: str,
    x_title: str,
    y_title: str,
) -> alt.LayerChart:
    scale = alt.Scale(type="log") if log else alt.Scale()
    base = alt.Chart(frame).encode(
        x=alt.X(f"{x}:Q", title=x_title, scale=scale),
        color=alt.Color(f"{color}:N", title=color.replace("_", " ")),
    )
    points = base.mark_point(filled=True, size=60).encode(
        y=alt.Y(f"{y}:Q", title=y_title, scale=scale),
        tooltip=[
            alt.Tooltip(f"{x}:Q"),
            alt.Tooltip(f"{y}:Q", format=",.3~f"),
            alt.Tooltip("closed_form:Q", format=",.3~f"),
        ],
    )
    lines = base.mark_line(strokeDash=[5, 3]).encode(y=alt.Y("closed_form:Q", scale=scale))
    chart = alt.LayerChart(layer=[lines, points], title=titled(title), width=WIDTH, height=HEIGHT)
    return chart


def herd_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """Naive reads per expiry against λ, one colour per origin latency; dashed: 1 + λL."""
    data = frame.assign(latency=frame["latency_s"].map(lambda s: f"L = {s * 1000:g} ms"))
    return _measured_and_closed(
        data,
        "rate",
        "reads_per_expiry",
        "latency",
        log=True,
        title="naive: origin reads per expiry against traffic (dashed: 1 + λL)",
        x_title="requests/s on the key (λ)",
        y_title="origin reads per expiry",
    )


def pods_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """local_lock reads per expiry against the number of pods; dashed: min(P, 1 + λL)."""
    data = frame.assign(series="local_lock")
    return _measured_and_closed(
        data,
        "pods",
        "reads_per_expiry",
        "series",
        log=True,
        title="local_lock: one origin read per pod per expiry",
        x_title="pods (P)",
        y_title="origin reads per expiry",
    )


def head_start_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """XFetch's head start against λ, one colour per β; dashed: δβ(ln λδβ + 0.577)."""
    data = frame.assign(beta_=frame["beta"].map(lambda b: f"β = {b:g}")).rename(
        columns={"beta_": "β"}
    )
    return _measured_and_closed(
        data,
        "rate",
        "head_start_s",
        "β",
        log=False,
        title="XFetch: how long before expiry the refresh starts (dashed: δβ(ln λδβ + 0.577))",
        x_title="requests/s on the key (λ)",
        y_title="head start (s)",
    )


def redis_cost_chart(frame: pd.DataFrame) -> alt.Chart:
    """single_flight's Redis commands per expiry against λ: polling against notification."""
    chart: alt.Chart = (
        alt.Chart(frame, title=titled("single_flight: Redis commands per expiry, poll vs notify"))
        .mark_line(point=True)
        .encode(
            x=alt.X("rate:Q", title="requests/s on the key (λ)", scale=alt.Scale(type="log")),
            y=alt.Y(
                "redis_per_expiry:Q",
                title="Redis commands + deliveries per expiry",
                scale=alt.Scale(type="log"),
            ),
            color=alt.Color("wait:N", title="waiters learn by"),
            tooltip=[
                "rate",
                "wait",
                alt.Tooltip("redis_per_expiry:Q", format=",.0f"),
                alt.Tooltip("shard_utilisation:Q", format=".2f"),
            ],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )
    return chart


def jitter_chart(frame: pd.DataFrame) -> alt.Chart:
    """The busiest second after a bulk warm-up, per jitter spread, beside K / (T·J)."""
    data = frame.assign(spread=frame["jitter"].map(lambda j: f"J = {j:g}"))
    long = data.melt(
        id_vars=["spread"],
        value_vars=["peak_reads_per_s", "closed_form"],
        var_name="series",
        value_name="reads_per_s",
    )
    long["series"] = long["series"].map(
        {"peak_reads_per_s": "simulated", "closed_form": "K / (T·J)"}
    )
    chart: alt.Chart = (
        alt.Chart(long, title=titled("a million keys warmed at once: the busiest second"))
        .mark_bar()
        .encode(
            x=alt.X("spread:N", title="TTL jitter", sort=list(data["spread"])),
            xOffset="series:N",
            y=alt.Y("reads_per_s:Q", title="origin reads in the busiest second"),
            color=alt.Color("series:N", title=None),
            tooltip=["spread", "series", alt.Tooltip("reads_per_s:Q", format=",.0f")],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )
    return chart
