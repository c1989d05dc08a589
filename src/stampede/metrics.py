"""What a run measured, as pure functions of its records and its origin-read log.

Definitions (DESIGN.md §4), used everywhere:

- **origin reads**: SELECTs the pods ran for this run, all pods together, from their logs.
- **max origin reads/s**: the most reads *started* in one 1-second bucket, buckets aligned to
  the run start; *steady* skips the buckets before the first TTL (the cold start).
- **lower bound**: the fewest reads any TTL cache could make for these request times: per
  key, a greedy cover of its request times by windows of TTL + origin latency (a read at the
  window's first request serves every request until the value, written one latency later,
  expires one TTL after that).
- **hot reads per window**: origin reads of the hot key started in each of its cover windows
  (the cycles between expiries); the last window is dropped when the run ends inside it.
- **hit rate**: responses served without this request reading the origin.
- **latency**: client side, send to last byte, ms.
- **nothing lost**: every request sent is a response (any HTTP status), a connection error or
  a timeout, and carries an outcome; ``lost`` counts the rest and must be 0
  (:func:`accounting`). A retry is a request of its own (``attempt`` > 0), counted in
  ``retries``.

Inputs are two tidy frames: ``records`` (one row per request, :data:`stampede.load.RECORD_FIELDS`
plus ``t``, seconds since the run start) and ``reads`` (``start``, ``end``, ``item``, ``ok``,
``pod``, plus ``t``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "OUTCOMES",
    "RunShape",
    "accounting",
    "cover_windows",
    "hot_reads_per_window",
    "hot_windows",
    "lower_bound",
    "max_per_second",
    "per_second",
    "percentiles",
    "summarize",
]

OUTCOMES = ("hit", "miss", "wait_hit", "stale", "early_refresh", "error")
SERVED_WITHOUT_ORIGIN = {"hit", "wait_hit", "stale", "early_refresh"}


@dataclass(frozen=True)
class RunShape:
    """The facts about a run that the metrics need besides its records."""

    duration_s: float
    ttl_s: float
    origin_latency_s: float
    hot_item: int
    threshold: float = 50.0  # reads/s above which a second counts as "hot"

    @property
    def window_s(self) -> float:
        return self.ttl_s + self.origin_latency_s

    @property
    def steady_from(self) -> int:
        """First 1-s bucket of the steady state: the one after the first TTL."""
        return math.ceil(self.ttl_s)


def cover_windows(times: Iterable[float], span: float) -> list[float]:
    """Greedy cover of sorted-or-not ``times`` by windows ``[start, start + span)``."""
    starts: list[float] = []
    for t in sorted(times):
        if not starts or t >= starts[-1] + span:
            starts.append(t)
    return starts


def lower_bound(records: pd.DataFrame, window_s: float) -> int:
    """Fewest origin reads any TTL cache could make for these requests (per-key cover)."""
    return sum(len(cover_windows(g, window_s)) for _, g in records.groupby("item")["t"])


def hot_windows(records: pd.DataFrame, shape: RunShape) -> list[float]:
    """Start times (s since run start) of the hot key's cycles: where its expiries fall."""
    hot = records.loc[records["item"] == shape.hot_item, "t"]
    return cover_windows(hot, shape.window_s)


def hot_reads_per_window(records: pd.DataFrame, reads: pd.DataFrame, shape: RunShape) -> list[int]:
    """Origin reads of the hot key started in each complete cycle of the hot key."""
    starts = hot_windows(records, shape)
    hot_reads = np.sort(reads.loc[reads["item"] == shape.hot_item, "t"].to_numpy())
    counts = []
    for i, begin in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else begin + shape.window_s
        if end > shape.duration_s:
            break
        lo, hi = np.searchsorted(hot_reads, [begin, end], side="left")
        counts.append(int(hi - lo))
    return counts


def bucket_counts(times: pd.Series, duration_s: float) -> pd.Series:
    """Events per 1-s bucket aligned to the run start, zeros included."""
    n = max(1, math.ceil(duration_s))
    values = times.to_numpy(dtype=float)
    buckets = np.floor(values[(values >= 0) & (values < duration_s)]).astype(int)
    counts = np.bincount(buckets, minlength=n)
    return pd.Series(counts, index=pd.RangeIndex(n, name="second"))


def max_per_second(times: pd.Series, duration_s: float, steady_from: int = 0) -> int:
    counts = bucket_counts(times, duration_s)
    steady = counts.iloc[steady_from:]
    return int(steady.max()) if len(steady) else 0


def percentiles(latencies: Sequence[float] | pd.Series) -> dict[str, float]:
    values = np.asarray(latencies, dtype=float)
    if values.size == 0:
        return {"p50": math.nan, "p90": math.nan, "p99": math.nan, "max": math.nan}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": p50, "p90": p90, "p99": p99, "max": float(values.max())}


def accounting(records: pd.DataFrame, sent: int | None = None) -> dict[str, int]:
    """Sent = responses + connection errors + timeouts; ``lost`` is whatever is neither.

    A record with status 0 and no error kind, or with no outcome, is lost as well: it was sent
    but nobody can say what became of it.
    """
    responses = records["status"] > 0
    timeouts = (records["status"] == 0) & (records["error"] == "timeout")
    errors = (records["status"] == 0) & records["error"].isin(["connect", "protocol"])
    no_outcome = records["outcome"].fillna("").astype(str) == ""
    accounted = (responses | timeouts | errors) & ~no_outcome
    sent = len(records) if sent is None else sent
    return {
        "sent": sent,
        "responses": int(responses.sum()),
        "errors": int(errors.sum()),
        "timeouts": int(timeouts.sum()),
        "lost": sent - int(accounted.sum()),
    }


def summarize(
    records: pd.DataFrame, reads: pd.DataFrame, shape: RunShape, *, sent: int | None = None
) -> dict[str, Any]:
    """Every headline number of a run (DESIGN.md §6 keys), from its records and reads."""
    answered = records[records["status"] > 0]
    hot = answered[answered["item"] == shape.hot_item]
    steady_hot = hot[hot["t"] >= shape.steady_from]
    counts = bucket_counts(reads["t"], shape.duration_s)
    bound = lower_bound(records, shape.window_s)
    outcomes = {name: 0 for name in OUTCOMES} | records["outcome"].value_counts().to_dict()
    hot_reads = int((reads["item"] == shape.hot_item).sum())
    return {
        "requests": len(records),
        "rps": len(records) / shape.duration_s,
        "origin_reads": len(reads),
        "origin_reads_hot": hot_reads,
        "origin_reads_cold": len(reads) - hot_reads,
        "hot_reads_per_window": hot_reads_per_window(records, reads, shape),
        "max_origin_per_s": int(counts.max()),
        "max_origin_per_s_steady": max_per_second(reads["t"], shape.duration_s, shape.steady_from),
        "seconds_above_threshold": int((counts > shape.threshold).sum()),
        "lower_bound": bound,
        "reads_over_bound": len(reads) / bound if bound else math.nan,
        "hit_rate": float(records["outcome"].isin(SERVED_WITHOUT_ORIGIN).mean()),
        "latency_ms": percentiles(answered["latency_ms"]),
        "hit_latency_ms": percentiles(answered.loc[answered["outcome"] == "hit", "latency_ms"]),
        "hot_latency_ms": percentiles(hot["latency_ms"]),
        "hot_latency_ms_steady": percentiles(steady_hot["latency_ms"]),
        "wait_hit_latency_ms": percentiles(
            answered.loc[answered["outcome"] == "wait_hit", "latency_ms"]
        ),
        "outcomes": {k: int(v) for k, v in outcomes.items()},
        "errors": int((records["status"] == 0).sum() + (records["status"] >= 500).sum()),
        "retries": int((records["attempt"] > 0).sum()) if "attempt" in records else 0,
        "accounting": (counted := accounting(records, sent)),
        "lost": counted["lost"],
    }


def per_second(records: pd.DataFrame, reads: pd.DataFrame, shape: RunShape) -> pd.DataFrame:
    """The tidy per-second frame every chart reads: one row per (second, metric).

    Metrics: ``origin_reads``, ``origin_reads_hot``, ``origin_reads_cold`` (reads started in
    that second), ``lower_bound`` (cover windows opened in that second: the reads a perfect TTL
    cache would make), ``requests``, ``errors`` (no response or 5xx), ``latency_p50_ms``,
    ``latency_p99_ms``, ``hot_latency_p50_ms``, ``hot_latency_p99_ms`` (client side, ms, over
    the requests sent in that second).
    """
    n = max(1, math.ceil(shape.duration_s))
    index = pd.RangeIndex(n, name="second")
    series: dict[str, pd.Series] = {
        "origin_reads": bucket_counts(reads["t"], shape.duration_s),
        "origin_reads_hot": bucket_counts(
            reads.loc[reads["item"] == shape.hot_item, "t"], shape.duration_s
        ),
        "origin_reads_cold": bucket_counts(
            reads.loc[reads["item"] != shape.hot_item, "t"], shape.duration_s
        ),
        "lower_bound": bucket_counts(_bound_starts(records, shape.window_s), shape.duration_s),
        "requests": bucket_counts(records["t"], shape.duration_s),
        "errors": bucket_counts(
            records.loc[(records["status"] == 0) | (records["status"] >= 500), "t"],
            shape.duration_s,
        ),
    }
    answered = records[(records["status"] > 0) & (records["t"] >= 0) & (records["t"] < n)]
    second = np.floor(answered["t"]).astype(int)
    for prefix, rows in (("", answered), ("hot_", answered[answered["item"] == shape.hot_item])):
        grouped = rows.groupby(second.loc[rows.index])["latency_ms"]
        series[f"{prefix}latency_p50_ms"] = grouped.quantile(0.5).reindex(index)
        series[f"{prefix}latency_p99_ms"] = grouped.quantile(0.99).reindex(index)
    frame = pd.DataFrame(series, index=index).reset_index()
    return frame.melt(id_vars="second", var_name="metric", value_name="value").dropna()


def _bound_starts(records: pd.DataFrame, window_s: float) -> pd.Series:
    starts: list[float] = []
    for _, times in records.groupby("item")["t"]:
        starts.extend(cover_windows(times, window_s))
    return pd.Series(starts, dtype=float)
