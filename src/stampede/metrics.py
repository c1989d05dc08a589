"""What a run measured, as pure functions of its records and its origin-read log.

**One table** (:data:`METRICS`): each metric's name (its key in the summary and in
``run --json``), label, unit and how it is computed. :func:`summarize` computes the summary
from it, :func:`stampede.runner.compare` takes its columns from it (:data:`COLUMNS`), the
charts take their labels from it and the command line and the benches print rows of it
(:data:`HEADLINE` and the other presets). Adding a metric is one :class:`Metric` entry plus
the function that computes it; ``docs/metrics.md`` in the book lists the table.

Definitions, used everywhere (the book's appendix, ``book/appendix.md``):

- **origin reads**: SELECTs the pods ran for this run, all pods together, from their logs.
- **max origin reads/s**: the most reads *started* in one 1-second bucket, buckets aligned to
  the run start; *steady* skips the buckets before the first TTL (the cold start).
- **lower bound**: the fewest reads any TTL cache could make for these request times: per
  key, a greedy cover of its request times by windows of TTL + origin latency (a read at the
  window's first request serves every request until the value, written one latency later,
  expires one TTL after that).
- **hot reads per window**: origin reads of the hot key started in each of its cover windows
  (the cycles between expiries); the last window is dropped when the run ends inside it.
- **hit rate**: responses served without this request reading the origin
  (:data:`SERVED_WITHOUT_ORIGIN`; every :class:`~stampede.outcomes.Outcome` is classified).
- **latency**: client side, send to last byte, ms.
- **send lag**: how late the generator sent each request against its schedule
  (``t_send - t_sched``, ms): large values mean the machine, not the lab, set the pace.
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd

from stampede.outcomes import Outcome

__all__ = [
    "CLI_ROWS",
    "COLUMNS",
    "HEADLINE",
    "METRICS",
    "OUTCOMES",
    "PERCENTILES",
    "SERVED_WITHOUT_ORIGIN",
    "SERVED_WITH_ORIGIN_OR_NOT_AT_ALL",
    "SUMMARY_COLUMNS",
    "Column",
    "Metric",
    "RunData",
    "RunShape",
    "accounting",
    "bucket_counts",
    "cover_windows",
    "hot_read_gap_median_s",
    "hot_reads_per_window",
    "hot_windows",
    "label",
    "lower_bound",
    "max_per_second",
    "mean_or_nan",
    "negative_cache_windows",
    "per_second",
    "percentiles",
    "row",
    "summarize",
    "unknown_reads",
]

OUTCOMES = (
    Outcome.HIT,
    Outcome.MISS,
    Outcome.WAIT_HIT,
    Outcome.STALE,
    Outcome.EARLY_REFRESH,
    Outcome.ERROR,
)  # always in ``summary["outcomes"]``, 0 when absent; the others only when they occur
SERVED_WITHOUT_ORIGIN = frozenset(
    {Outcome.HIT, Outcome.WAIT_HIT, Outcome.STALE, Outcome.EARLY_REFRESH}
)
SERVED_WITH_ORIGIN_OR_NOT_AT_ALL = frozenset(
    {Outcome.MISS, Outcome.FAIL_OPEN, Outcome.ERROR, Outcome.NOT_FOUND}
)  # the complement: this request read the origin, or got no value


@dataclass(frozen=True)
class RunShape:
    """The facts about a run that the metrics need besides its records."""

    duration_s: float
    ttl_s: float
    origin_latency_s: float
    hot_item: int
    threshold: float = 50.0  # reads/s above which a second counts as "hot"
    negative_ttl_s: float = 0.0  # how long a pod remembers a 404 (0: never)
    origin_items: int | None = None  # ids 1..origin_items exist; None: every id does

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> RunShape:
        """The shape of a run from its full parameters (``RunResult.params``)."""
        return cls(
            duration_s=params["duration_s"],
            ttl_s=params["ttl_s"],
            origin_latency_s=params["origin_latency_ms"] / 1000,
            hot_item=params["hot_item"],
            negative_ttl_s=params.get("negative_ttl_s", 0.0),
            origin_items=params.get("origin_items"),
        )

    @property
    def window_s(self) -> float:
        return self.ttl_s + self.origin_latency_s

    @property
    def negative_window_s(self) -> float:
        """A remembered 404 lives this long after the read that found it began."""
        return self.negative_ttl_s + self.origin_latency_s

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


def mean_or_nan(values: Sequence[float]) -> float:
    """The mean, or NaN for no values (a run shorter than one window has none)."""
    return float(np.mean(values)) if len(values) else math.nan


def hot_read_gap_median_s(reads: pd.DataFrame, shape: RunShape) -> float:
    """Median time between consecutive origin reads of the hot key, s (NaN below two reads).

    Below the TTL: the value was replaced before it expired (early refresh); above it: after.
    """
    times = np.sort(reads.loc[reads["item"] == shape.hot_item, "t"].to_numpy(dtype=float))
    return float(np.median(np.diff(times))) if times.size >= 2 else math.nan


def negative_cache_windows(records: pd.DataFrame, shape: RunShape) -> int:
    """Fewest origin reads for the ids that do not exist, with 404s remembered.

    Per unknown id (above ``shape.origin_items``), a greedy cover of its request times by
    windows of ``negative_ttl_s`` + origin latency: what a pod that remembers each 404 for
    ``negative_ttl_s`` must read at least. 0 when every id exists.
    """
    if shape.origin_items is None:
        return 0
    unknown = records[records["item"] > shape.origin_items]
    return lower_bound(unknown, shape.negative_window_s)


def unknown_reads(reads: pd.DataFrame, shape: RunShape) -> int:
    """Origin reads of ids that do not exist (above ``shape.origin_items``)."""
    return 0 if shape.origin_items is None else int((reads["item"] > shape.origin_items).sum())


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


# ---- the metric table --------------------------------------------------------------------
Kind = Literal["count", "rate", "share", "percentiles", "list", "counts"]
PERCENTILES = ("p50", "p99")  # the percentiles a latency contributes to ``compare`` columns


class RunData:
    """One run's inputs and the sub-frames several metrics share, each computed once."""

    def __init__(
        self, records: pd.DataFrame, reads: pd.DataFrame, shape: RunShape, sent: int | None
    ) -> None:
        self.records, self.reads, self.shape, self.sent = records, reads, shape, sent

    @cached_property
    def answered(self) -> pd.DataFrame:
        return self.records[self.records["status"] > 0]

    @cached_property
    def hot(self) -> pd.DataFrame:
        return self.answered[self.answered["item"] == self.shape.hot_item]

    @cached_property
    def hot_read_times(self) -> pd.Series:
        return self.reads.loc[self.reads["item"] == self.shape.hot_item, "t"]

    @cached_property
    def counts(self) -> pd.Series:
        return bucket_counts(self.reads["t"], self.shape.duration_s)

    @cached_property
    def hot_windows(self) -> list[int]:
        return hot_reads_per_window(self.records, self.reads, self.shape)

    @cached_property
    def bound(self) -> int:
        return lower_bound(self.records, self.shape.window_s)

    @cached_property
    def accounting(self) -> dict[str, int]:
        return accounting(self.records, self.sent)

    def latency(self, rows: pd.DataFrame) -> dict[str, float]:
        return percentiles(rows["latency_ms"])


@dataclass(frozen=True)
class Metric:
    """One entry of the table: a summary key, how to show it, how it is computed.

    ``compute`` takes the run's :class:`RunData`; ``None`` means the runner adds the value
    after the run (``source`` says from where). ``kind`` tells the readers how to flatten it:
    a ``percentiles`` metric is a ``{"p50", "p90", "p99", "max"}`` dict whose ``compare``
    columns are ``{stem}_{pct}_ms``; ``list`` and ``counts`` (a dict) have no column.
    """

    name: str
    label: str
    unit: str
    doc: str
    compute: Callable[[RunData], Any] | None
    kind: Kind = "count"
    stem: str = ""  # percentiles: the column prefix (``hot_latency_steady`` -> ..._p99_ms)
    fmt: str = ",.0f"  # how a table prints it
    source: str = "metrics.summarize"

    def format(self, value: Any) -> str:
        if self.kind == "percentiles":
            return " / ".join(f"{value[p]:.1f}" for p in ("p50", "p99", "max"))
        if self.kind == "counts":
            return " ".join(f"{k}={v}" for k, v in value.items())
        if self.kind == "list":
            return str(list(value))
        return format(value, self.fmt)


@dataclass(frozen=True)
class Column:
    """One ``compare`` column (and chart panel): a flat, numeric view of a metric."""

    name: str
    label: str
    unit: str
    metric: str
    get: Callable[[Mapping[str, Any]], Any]


def _hot_steady(d: RunData) -> pd.DataFrame:
    return d.hot[d.hot["t"] >= d.shape.steady_from]


def _served(d: RunData, outcome: Outcome) -> pd.DataFrame:
    return d.answered[d.answered["outcome"] == outcome]


def _outcomes(d: RunData) -> dict[str, int]:
    counted = {name: 0 for name in OUTCOMES} | d.records["outcome"].value_counts().to_dict()
    return {str(k): int(v) for k, v in counted.items()}


def _send_lag(d: RunData) -> dict[str, float]:
    return percentiles((d.records["t_send"] - d.records["t_sched"]) * 1000)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("requests", "requests", "requests", "requests sent, retries included",
               lambda d: len(d.records)),
        Metric("rps", "requests/s", "req/s", "requests / duration",
               lambda d: len(d.records) / d.shape.duration_s, "rate", fmt=".1f"),
        Metric("origin_reads", "origin reads", "reads", "origin reads of all pods in the run",
               lambda d: len(d.reads)),
        Metric("origin_reads_hot", "hot-key origin reads", "reads", "origin reads of the hot key",
               lambda d: len(d.hot_read_times)),
        Metric("origin_reads_cold", "other keys' origin reads", "reads",
               "origin reads of every other key", lambda d: len(d.reads) - len(d.hot_read_times)),
        Metric("hot_reads_per_window", "hot-key origin reads per TTL window", "reads",
               "hot-key reads started in each complete cycle of the hot key",
               lambda d: d.hot_windows, "list"),
        Metric("hot_reads_per_window_mean", "hot-key reads per TTL window (mean)", "reads",
               "mean of hot_reads_per_window (NaN without a complete window)",
               lambda d: mean_or_nan(d.hot_windows), "rate", fmt=".2f"),
        Metric("hot_read_gap_median_s", "median gap between hot-key reads", "s",
               "median time between consecutive hot-key origin reads",
               lambda d: hot_read_gap_median_s(d.reads, d.shape), "rate", fmt=".2f"),
        Metric("max_origin_per_s", "max origin reads/s", "reads/s",
               "most origin reads started in one 1-s bucket", lambda d: int(d.counts.max())),
        Metric("max_origin_per_s_steady", "max origin reads/s (steady)", "reads/s",
               "max_origin_per_s over the buckets from ceil(TTL) on",
               lambda d: max_per_second(d.reads["t"], d.shape.duration_s, d.shape.steady_from)),
        Metric("max_origin_per_s_hot", "max hot-key origin reads/s", "reads/s",
               "max_origin_per_s counting the hot key's reads only",
               lambda d: max_per_second(d.hot_read_times, d.shape.duration_s)),
        Metric("max_origin_per_s_hot_steady", "max hot-key origin reads/s (steady)", "reads/s",
               "max_origin_per_s_steady counting the hot key's reads only",
               lambda d: max_per_second(d.hot_read_times, d.shape.duration_s,
                                        d.shape.steady_from)),
        Metric("seconds_above_threshold", "seconds above threshold", "s",
               "1-s buckets with more origin reads than the threshold (default 50/s)",
               lambda d: int((d.counts > d.shape.threshold).sum())),
        Metric("lower_bound", "lower bound", "reads",
               "fewest reads any TTL cache could make: per-key cover by TTL + latency windows",
               lambda d: d.bound),
        Metric("reads_over_bound", "origin reads / lower bound", "x",
               "origin_reads / lower_bound (NaN without requests)",
               lambda d: len(d.reads) / d.bound if d.bound else math.nan, "rate", fmt=".2f"),
        Metric("hit_rate", "hit rate", "share",
               "share of requests served without this request reading the origin",
               lambda d: float(d.records["outcome"].isin(SERVED_WITHOUT_ORIGIN).mean()),
               "share", fmt=".1%"),
        Metric("origin_reads_unknown", "origin reads of unknown ids", "reads",
               "origin reads of ids above origin_items", lambda d: unknown_reads(d.reads, d.shape)),
        Metric("negative_cache_windows", "negative-cache windows", "reads",
               "fewest reads of unknown ids with 404s remembered negative_ttl_s",
               lambda d: negative_cache_windows(d.records, d.shape)),
        Metric("latency_ms", "{pct} ms (all keys)", "ms", "client latency of answered requests",
               lambda d: d.latency(d.answered), "percentiles", "latency"),
        Metric("hit_latency_ms", "hit {pct} ms", "ms", "latency of answered hits",
               lambda d: d.latency(_served(d, Outcome.HIT)), "percentiles", "hit_latency"),
        Metric("hot_latency_ms", "hot-key {pct} ms", "ms", "latency of answered hot-key requests",
               lambda d: d.latency(d.hot), "percentiles", "hot_latency"),
        Metric("hot_latency_ms_steady", "hot-key {pct} ms (steady)", "ms",
               "hot_latency_ms over requests sent from ceil(TTL) on",
               lambda d: d.latency(_hot_steady(d)), "percentiles", "hot_latency_steady"),
        Metric("wait_hit_latency_ms", "wait_hit {pct} ms", "ms", "latency of answered wait_hits",
               lambda d: d.latency(_served(d, Outcome.WAIT_HIT)), "percentiles",
               "wait_hit_latency"),
        Metric("send_lag_ms", "send lag {pct} ms", "ms",
               "t_send - t_sched over all requests: how late the generator sent them",
               _send_lag, "percentiles", "send_lag"),
        Metric("outcomes", "outcomes", "requests", "requests per outcome (X-Cache)",
               _outcomes, "counts"),
        Metric("errors", "errors", "requests", "requests with no response or a 5xx",
               lambda d: int((d.records["status"] == 0).sum()
                             + (d.records["status"] >= 500).sum())),
        Metric("retries", "retries", "requests", "requests with attempt > 0",
               lambda d: int((d.records["attempt"] > 0).sum()) if "attempt" in d.records else 0),
        Metric("accounting", "accounting", "requests",
               "sent, responses, errors, timeouts, lost (metrics.accounting)",
               lambda d: d.accounting, "counts"),
        Metric("lost", "lost", "requests", "sent but neither answered, refused nor timed out",
               lambda d: d.accounting["lost"]),
        Metric("redis_commands", "Redis commands", "commands",
               "INFO commandstats delta over the run, the lab's own bookkeeping removed",
               None, source="runner"),
        Metric("redis_commands_per_request", "Redis commands per request", "commands/request",
               "redis_commands / requests", None, "rate", fmt=".3f", source="runner"),
    )
}  # fmt: skip


def _key(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda summary: summary[name]


def _pct(name: str, pct: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda summary: summary[name][pct]


def _count(outcome: Outcome) -> Callable[[Mapping[str, Any]], Any]:
    return lambda summary: summary["outcomes"].get(outcome, 0)


def _columns() -> dict[str, Column]:
    columns: dict[str, Column] = {}
    for m in METRICS.values():
        if m.kind == "percentiles":
            for pct in PERCENTILES:
                name = f"{m.stem}_{pct}_ms"
                columns[name] = Column(
                    name, m.label.format(pct=pct), m.unit, m.name, _pct(m.name, pct)
                )
        elif m.name == "outcomes":
            for outcome in Outcome:
                name = f"n_{outcome}"
                columns[name] = Column(
                    name, f"{outcome} answers", "requests", m.name, _count(outcome)
                )
        elif m.kind not in ("list", "counts"):
            columns[m.name] = Column(m.name, m.label, m.unit, m.name, _key(m.name))
    return columns


COLUMNS: dict[str, Column] = _columns()
"""Every ``compare`` column: scalar metrics by name, ``{stem}_{pct}_ms``, ``n_{outcome}``."""

HEADLINE = (
    "origin_reads",
    "max_origin_per_s_steady",
    "lower_bound",
    "reads_over_bound",
    "hit_rate",
    "hot_latency_steady_p50_ms",
    "hot_latency_steady_p99_ms",
)
"""The headline columns the chapters open their comparison tables with."""

SUMMARY_COLUMNS = (
    "requests",
    "origin_reads",
    "origin_reads_hot",
    "origin_reads_cold",
    "max_origin_per_s",
    "max_origin_per_s_steady",
    "seconds_above_threshold",
    "lower_bound",
    "reads_over_bound",
    "hit_rate",
    "redis_commands_per_request",
)
"""The run-level counts ``compare`` puts first when no columns are asked for."""

CLI_ROWS = (
    "requests", "rps", "origin_reads", "origin_reads_hot", "origin_reads_cold",
    "hot_reads_per_window", "max_origin_per_s", "max_origin_per_s_steady",
    "seconds_above_threshold", "lower_bound", "reads_over_bound", "hit_rate", "latency_ms",
    "hot_latency_ms_steady", "send_lag_ms", "outcomes", "lost",
)  # fmt: skip
"""The rows ``stampede run`` prints (percentiles as p50 / p99 / max)."""


def summarize(
    records: pd.DataFrame, reads: pd.DataFrame, shape: RunShape, *, sent: int | None = None
) -> dict[str, Any]:
    """Every metric of :data:`METRICS` that the records and reads determine, by name."""
    data = RunData(records, reads, shape, sent)
    return {m.name: m.compute(data) for m in METRICS.values() if m.compute is not None}


def row(summary: Mapping[str, Any], columns: Iterable[str]) -> dict[str, Any]:
    """``columns`` of one run's summary, by name (:data:`COLUMNS`); a typo is a KeyError."""
    values: dict[str, Any] = {}
    for name in columns:
        if name not in COLUMNS:
            raise KeyError(f"no metric column {name!r}; valid: {', '.join(COLUMNS)}")
        values[name] = COLUMNS[name].get(summary)
    return values


def label(name: str) -> str:
    """The label of a column or metric name; other names with spaces for underscores."""
    if name in COLUMNS:
        return COLUMNS[name].label
    if name in METRICS:
        return METRICS[name].label.format(pct="latency")
    return name.replace("_", " ")


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
