"""Metric definitions (the book's appendix) on small hand-made frames, hand-computed answers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stampede.load import RECORD_FIELDS
from stampede.machine import verdict
from stampede.metrics import (
    COLUMNS,
    HEADLINE,
    METRICS,
    OUTCOMES,
    SERVED_WITH_ORIGIN_OR_NOT_AT_ALL,
    SERVED_WITHOUT_ORIGIN,
    RunShape,
    cover_windows,
    hot_read_gap_median_s,
    hot_reads_per_window,
    lower_bound,
    max_per_second,
    mean_or_nan,
    negative_cache_windows,
    outcome_mismatches,
    per_second,
    percentiles,
    row,
    summarize,
    unexpected,
)
from stampede.outcomes import Outcome

SHAPE = RunShape(duration_s=12, ttl_s=5, origin_latency_s=0.2, hot_item=1)


def records(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Requests with sensible defaults: a 200 ``hit`` on the hot item, 1 ms, first attempt."""
    base = {"client": 0, "item": 1, "pod": 0, "t_sched": 0.0, "t_send": 0.0, "latency_ms": 1.0,
            "status": 200, "outcome": "hit", "error": "", "attempt": 0,
            "server_ms": 0.5}  # fmt: skip
    frame = pd.DataFrame([{**base, **row} for row in rows])
    return frame[[*RECORD_FIELDS, "t"]]


def reads(times: Sequence[float], item: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "start": list(times),
            "end": [t + 0.2 for t in times],
            "item": item,
            "ok": True,
            "pod": "pod-1",
            "t": list(times),
        }
    ).astype({"item": int, "t": float})


def every(step: float, until: float, item: int = 1) -> list[dict[str, Any]]:
    """One request for ``item`` every ``step`` seconds from 0 up to ``until`` (excluded)."""
    return [{"t": round(i * step, 6), "item": item} for i in range(round(until / step))]


# ---- buckets -------------------------------------------------------------------------------
def test_buckets_are_aligned_to_the_run_start() -> None:
    times = pd.Series([0.0, 0.999, 1.0, 1.5, 2.999])
    assert max_per_second(times, 3) == 2
    frame = per_second(records([{"t": 0.0}]), reads(times), RunShape(3, 5, 0.2, 1))
    origin = frame[frame["metric"] == "origin_reads"].set_index("second")["value"]
    assert origin.to_dict() == {0: 2, 1: 2, 2: 1}  # 0.999 in bucket 0, 1.0 in bucket 1


def test_times_before_the_start_or_past_the_duration_are_excluded() -> None:
    times = pd.Series([-0.5, -0.001, 0.5, 2.5, 3.0, 7.2])
    frame = per_second(records([{"t": 0.0}]), reads(times), RunShape(3, 5, 0.2, 1))
    origin = frame[frame["metric"] == "origin_reads"].set_index("second")["value"]
    assert origin.to_dict() == {0: 1, 1: 0, 2: 1}
    assert max_per_second(pd.Series([-0.1, -0.2, 3.0, 3.5]), 3) == 0


def test_a_fractional_duration_excludes_times_past_its_end() -> None:
    assert max_per_second(pd.Series([2.6, 2.7, 2.8]), 2.5) == 0


def test_max_per_second_and_its_steady_variant() -> None:
    # a cold-start burst of 9 reads in second 0, then needles of 3 and 4 at expiries
    times = [0.1] * 9 + [5.3, 5.4, 5.5] + [10.6, 10.7, 10.8, 10.9]
    assert max_per_second(pd.Series(times), 12) == 9
    assert max_per_second(pd.Series(times), 12, SHAPE.steady_from) == 4
    assert SHAPE.steady_from == 5  # ceil(ttl): buckets 0..4 are the cold start
    assert RunShape(12, 2.5, 0.2, 1).steady_from == 3
    summary = summarize(records(every(0.5, 12)), reads(times), SHAPE)
    assert summary["max_origin_per_s"] == 9
    assert summary["max_origin_per_s_steady"] == 4


def test_steady_variant_of_a_run_shorter_than_the_ttl_is_zero() -> None:
    assert max_per_second(pd.Series([0.1, 0.2]), 3, steady_from=5) == 0


def test_seconds_above_threshold_counts_strictly_greater_buckets() -> None:
    shape = RunShape(duration_s=4, ttl_s=5, origin_latency_s=0.2, hot_item=1, threshold=3)
    times = [0.1] * 4 + [1.1] * 3 + [3.5] * 10  # 4 > 3, 3 is not, 10 > 3
    summary = summarize(records(every(0.5, 4)), reads(times), shape)
    assert summary["seconds_above_threshold"] == 2
    assert RunShape(1, 1, 0, 1).threshold == 50.0  # the documented default


# ---- lower bound ---------------------------------------------------------------------------
def test_cover_windows_one_key_every_tenth_of_a_second() -> None:
    times = [i * 0.1 for i in range(120)]  # 12 s of requests
    starts = cover_windows(times, 5.2)
    assert len(starts) == 3
    assert starts[0] == 0.0
    assert starts[1] == pytest.approx(5.2, abs=0.1)
    assert starts[2] == pytest.approx(10.4, abs=0.2)


def test_cover_windows_is_order_free_and_skips_gaps() -> None:
    assert cover_windows([9.0, 0.0, 1.0, 20.0], 5.0) == [0.0, 9.0, 20.0]
    assert cover_windows([], 5.0) == []
    assert cover_windows([3.0, 8.0], 5.0) == [3.0, 8.0]  # t == start + span opens a new one


def test_lower_bound_sums_one_cover_per_key() -> None:
    others = [(1.0, 2), (2.0, 2), (7.0, 2), (4.0, 3)]
    rows = [*every(0.1, 12, item=1), *({"t": t, "item": i} for t, i in others)]
    frame = records(rows)
    assert lower_bound(frame, 5.2) == 3 + 2 + 1
    summary = summarize(frame, reads([0.0, 5.3, 10.5, 1.0, 7.0, 4.0, 4.5]), SHAPE)
    assert summary["lower_bound"] == 6
    assert summary["reads_over_bound"] == pytest.approx(7 / 6)


def test_reads_over_bound_without_requests_is_nan() -> None:
    empty = records([{"t": 0.0}]).iloc[0:0]
    summary = summarize(empty, reads([]), SHAPE)
    assert summary["lower_bound"] == 0
    assert math.isnan(summary["reads_over_bound"])


# ---- hot reads per window ------------------------------------------------------------------
def test_hot_reads_per_window_drops_the_last_incomplete_window() -> None:
    frame = records(every(0.1, 12))  # windows start at 0, ~5.2, ~10.4; the last ends at ~15.6
    hot = reads([0.0, 0.01, 5.25, 5.3, 5.35, 10.45])
    assert hot_reads_per_window(frame, hot, SHAPE) == [2, 3]


def test_hot_reads_per_window_ignores_other_items() -> None:
    frame = records(every(0.1, 12))
    mixed = pd.concat([reads([0.0, 5.25]), reads([0.5, 5.3, 5.4], item=2)], ignore_index=True)
    assert hot_reads_per_window(frame, mixed, SHAPE) == [1, 1]


def test_a_run_that_ends_exactly_at_a_window_end_keeps_it() -> None:
    shape = RunShape(duration_s=10.4, ttl_s=5, origin_latency_s=0.2, hot_item=1)
    frame = records([{"t": 0.0}, {"t": 5.2}])
    assert hot_reads_per_window(frame, reads([0.0, 5.2]), shape) == [1, 1]


# ---- latency, hit rate, outcomes, lost -----------------------------------------------------
def test_percentiles() -> None:
    values = list(range(1, 101))  # 1..100 ms
    p = percentiles(values)
    assert p["p50"] == pytest.approx(50.5)
    assert p["p90"] == pytest.approx(90.1)
    assert p["p99"] == pytest.approx(99.01)
    assert p["max"] == 100
    assert set(p) == {"p50", "p90", "p99", "max"}
    assert all(math.isnan(v) for v in percentiles([]).values())


def outcome_rows() -> list[dict[str, Any]]:
    spec = [("hit", 200, 1.0), ("hit", 200, 2.0), ("miss", 200, 200.0), ("wait_hit", 200, 150.0),
            ("stale", 200, 3.0), ("early_refresh", 200, 4.0), ("error", 503, 5.0),
            ("error", 0, 10_000.0)]  # fmt: skip
    rows = []
    for i, (outcome, status, latency) in enumerate(spec):
        error = "timeout" if status == 0 else ""
        rows.append({"t": i * 0.5, "outcome": outcome, "status": status, "latency_ms": latency,
                     "error": error, "item": 1 if i % 2 == 0 else 2})  # fmt: skip
    return rows


def test_hit_rate_counts_responses_served_without_this_request_reading() -> None:
    summary = summarize(records(outcome_rows()), reads([1.0]), SHAPE)
    # hit, hit, wait_hit, stale, early_refresh of 8 requests
    assert summary["hit_rate"] == pytest.approx(5 / 8)


def test_outcomes_list_all_six_keys_even_when_absent() -> None:
    summary = summarize(records([{"t": 0.0, "outcome": "miss"}]), reads([0.0]), SHAPE)
    assert set(OUTCOMES) == {"hit", "miss", "wait_hit", "stale", "early_refresh", "error"}
    assert set(OUTCOMES) <= set(summary["outcomes"])
    assert summary["outcomes"]["miss"] == 1
    assert sum(summary["outcomes"].values()) == 1


def test_latency_uses_answered_requests_only() -> None:
    summary = summarize(records(outcome_rows()), reads([1.0]), SHAPE)
    assert summary["latency_ms"]["max"] == 200.0  # the 10 s timeout had no answer
    hot = [1.0, 200.0, 3.0, 5.0]  # items 1: indexes 0, 2, 4, 6
    assert summary["hot_latency_ms"]["max"] == max(hot)
    assert summary["hot_latency_ms"]["p50"] == pytest.approx(float(np.percentile(hot, 50)))


def test_lost_is_sent_minus_accounted_records() -> None:
    frame = records(outcome_rows())
    assert summarize(frame, reads([]), SHAPE, sent=8)["lost"] == 0
    assert summarize(frame, reads([]), SHAPE, sent=10)["lost"] == 2
    assert summarize(frame, reads([]), SHAPE)["lost"] == 0


def test_requests_rps_and_origin_read_totals() -> None:
    frame = records(every(0.5, 12))
    summary = summarize(frame, pd.concat([reads([0.1, 5.3]), reads([2.0], item=7)]), SHAPE)
    assert summary["requests"] == 24
    assert summary["rps"] == pytest.approx(2.0)
    assert (summary["origin_reads"], summary["origin_reads_hot"]) == (3, 2)


# ---- per-second frame ----------------------------------------------------------------------
PER_SECOND_METRICS = {
    "origin_reads", "origin_reads_hot", "origin_reads_cold", "lower_bound", "requests", "errors",
    "latency_p50_ms", "latency_p99_ms", "hot_latency_p50_ms", "hot_latency_p99_ms",
}  # fmt: skip


def test_per_second_frame_is_tidy() -> None:
    frame = per_second(
        records(outcome_rows()), reads([0.2, 1.2, 3.5], item=2), RunShape(4, 5, 0.2, 1)
    )
    assert list(frame.columns) == ["second", "metric", "value"]
    assert set(frame["metric"]) == PER_SECOND_METRICS
    assert frame.duplicated(["second", "metric"]).sum() == 0
    assert frame["value"].notna().all()
    counts = frame[frame["metric"] != "latency_p50_ms"]  # every count series has all 4 seconds
    for metric in {"origin_reads", "requests", "errors", "lower_bound"}:
        assert sorted(counts.loc[counts["metric"] == metric, "second"]) == [0, 1, 2, 3]
    value = frame.set_index(["metric", "second"])["value"]
    assert value["origin_reads_cold", 0] == 1 and value["origin_reads_hot", 0] == 0
    assert value["requests", 0] == 2 and value["errors", 3] == 2  # the 503 and the timeout


def test_per_second_lists_its_metrics_in_the_docstring() -> None:
    doc = per_second.__doc__ or ""
    missing = sorted(m for m in PER_SECOND_METRICS if m not in doc)
    assert not missing, f"per_second's docstring does not name {missing}"


# ---- the metric table ----------------------------------------------------------------------
def test_every_outcome_is_classified_served_without_origin_or_not() -> None:
    both = SERVED_WITHOUT_ORIGIN & SERVED_WITH_ORIGIN_OR_NOT_AT_ALL
    neither = set(Outcome) - SERVED_WITHOUT_ORIGIN - SERVED_WITH_ORIGIN_OR_NOT_AT_ALL
    assert not both, f"outcomes counted both ways: {sorted(both)}"
    assert not neither, f"outcomes the metrics do not classify: {sorted(neither)}"
    assert set(OUTCOMES) <= set(Outcome)


def test_summarize_computes_exactly_the_table_entries_it_owns() -> None:
    summary = summarize(records(outcome_rows()), reads([1.0]), SHAPE)
    own = {name for name, m in METRICS.items() if m.compute is not None}
    assert set(summary) == own
    runner = {name for name, m in METRICS.items() if m.compute is None}
    assert runner == {
        "redis_commands",
        "redis_commands_per_request",
        "redis_commands_by_shard",
        "hot_shard_command_share",
        "redis_round_trips_per_request",
        "unexpected",
        "machine",
    }


def test_every_column_reads_a_summary() -> None:
    summary = summarize(records(outcome_rows()), reads([1.0]), SHAPE)
    summary |= {"redis_commands": 8, "redis_commands_per_request": 1.0}
    summary |= {"redis_commands_by_shard": {"redis": 8}, "hot_shard_command_share": 1.0}
    summary |= {"redis_round_trips_per_request": 1.0, "machine": verdict(1.0, 0.5, 2)}
    values = row(summary, COLUMNS)
    assert values["machine_bound"] is False
    assert set(values) == set(COLUMNS)
    assert values["hot_latency_p99_ms"] == summary["hot_latency_ms"]["p99"]
    assert values["n_wait_hit"] == 1 and values["n_fail_open"] == 0
    assert set(HEADLINE) <= set(COLUMNS)
    assert all(c.label and c.unit for c in COLUMNS.values())
    with pytest.raises(KeyError, match="hot_p99_st"):
        row(summary, ["hot_p99_st"])


def test_max_origin_per_s_hot_steady_counts_the_hot_key_only() -> None:
    times = [0.1] * 9 + [5.3, 5.4] + [10.6, 10.7, 10.8]
    mixed = pd.concat([reads(times), reads([6.1] * 5, item=2)], ignore_index=True)
    summary = summarize(records(every(0.5, 12)), mixed, SHAPE)
    assert summary["max_origin_per_s_steady"] == 5  # item 2's burst in second 6
    assert summary["max_origin_per_s_hot_steady"] == 3  # the hot key's needle at ~10.7


def test_send_lag_is_send_minus_schedule_in_ms() -> None:
    rows = [
        {"t": i, "t_sched": float(i), "t_send": i + lag} for i, lag in enumerate([0, 0.002, 0.1])
    ]
    lag = summarize(records(rows), reads([]), SHAPE)["send_lag_ms"]
    assert lag["p50"] == pytest.approx(2.0)
    assert lag["max"] == pytest.approx(100.0)
    assert lag["p99"] == pytest.approx(float(np.percentile([0, 2, 100], 99)))


def test_hot_read_gap_and_window_mean() -> None:
    frame = records(every(0.1, 12))
    hot = reads([0.0, 0.01, 5.25, 5.3, 5.35, 10.45])
    assert hot_read_gap_median_s(hot, SHAPE) == pytest.approx(
        float(np.median([0.01, 5.24, 0.05, 0.05, 5.1]))
    )
    assert math.isnan(hot_read_gap_median_s(reads([1.0]), SHAPE))
    summary = summarize(frame, hot, SHAPE)
    assert summary["hot_reads_per_window"] == [2, 3]
    assert summary["hot_reads_per_window_mean"] == 2.5
    assert math.isnan(mean_or_nan([]))


def test_negative_cache_windows_cover_unknown_ids_by_negative_ttl_plus_latency() -> None:
    shape = RunShape(12, 5, 0.2, 1, negative_ttl_s=2.0, origin_items=100)
    rows = [*every(0.5, 12), *({"t": t, "item": 101} for t in (0.0, 1.0, 2.1, 2.3, 5.0))]
    frame = records([*rows, {"t": 3.0, "item": 150}])
    # item 101: windows at 0.0 (to 2.2) and 2.3 (to 4.5), then 5.0; item 150: one
    assert negative_cache_windows(frame, shape) == 4
    assert negative_cache_windows(frame, SHAPE) == 0  # every id exists
    unknown = pd.concat([reads([0.0]), reads([0.0, 2.3], item=101)], ignore_index=True)
    summary = summarize(frame, unknown, shape)
    assert (summary["origin_reads_unknown"], summary["negative_cache_windows"]) == (2, 4)


# ---- nothing lost, from the pods' side ----------------------------------------------------------
def answers() -> pd.DataFrame:
    """Pod 0: two hits, a miss, a 404 (X-Cache miss); pod 1: a hit and a timeout."""
    return records(
        [{"t": 0.1}, {"t": 0.2}, {"t": 0.3, "outcome": "miss"},
         {"t": 0.4, "status": 404, "outcome": "miss", "item": 999},
         {"t": 0.5, "pod": 1}, {"t": 0.6, "pod": 1, "status": 0, "outcome": "error",
                                "error": "timeout"}]
    )  # fmt: skip


def test_pods_that_counted_what_the_generator_got_agree() -> None:
    pods = {0: {"hit": 2, "miss": 1, "not_found": 1}, 1: {"hit": 1}}
    assert outcome_mismatches(answers(), pods) == []
    # pod 1 answered the timed-out request after the client gave up: one extra, one unanswered
    assert outcome_mismatches(answers(), {**pods, 1: {"hit": 2}}) == []


def test_a_pod_count_off_by_one_either_way_is_a_mismatch() -> None:
    one_more = {0: {"hit": 3, "miss": 1, "not_found": 1}}  # pod 0 had no unanswered request
    (problem,) = outcome_mismatches(answers(), one_more)
    assert problem.startswith("pod 0 counted") and "0 unanswered" in problem
    never_counted = {0: {"hit": 2, "not_found": 1}}
    (problem,) = outcome_mismatches(answers(), never_counted)
    assert "answers the pod never counted: {'miss': 1}" in problem
    assert "(first: t=0.30 s item 1 status 200)" in problem
    beyond_the_slack = {1: {"hit": 3}}  # two extra for one unanswered request
    assert len(outcome_mismatches(answers(), beyond_the_slack)) == 1
    a_404_counted_as_a_miss = {0: {"hit": 2, "miss": 2}}
    assert len(outcome_mismatches(answers(), a_404_counted_as_a_miss)) == 1


def test_a_pod_left_out_is_not_checked() -> None:
    assert outcome_mismatches(answers(), {1: {"hit": 1}}) == []


# ---- unexpected failures ----------------------------------------------------------------------
def test_fail_open_errors_and_redis_errors_mark_a_run_without_injected_faults() -> None:
    frame = records(
        [{"t": 0.1}, {"t": 0.2, "outcome": "fail_open"}, {"t": 0.3, "status": 503,
         "outcome": "error"}, {"t": 0.4, "status": 0, "outcome": "error", "error": "connect"}]
    )  # fmt: skip
    counters = {"redis_errors:ConnectionError": 3, "waits": 7, "redis_errors:TimeoutError": 1}
    found = unexpected(frame, counters, injected=False)
    assert found == {
        "marked": True, "injected": False, "fail_open": 1, "errors": 2,
        "redis_errors:ConnectionError": 3, "redis_errors:TimeoutError": 1,
    }  # fmt: skip
    assert unexpected(frame, counters, injected=True)["marked"] is False
    assert row({"unexpected": found}, ["unexpected"]) == {"unexpected": True}


def test_a_clean_run_is_not_marked_and_a_redis_error_alone_marks_one() -> None:
    clean = records([{"t": 0.1}, {"t": 0.2, "status": 404, "outcome": "miss"}])
    assert unexpected(clean, {"waits": 2}, injected=False) == {
        "marked": False, "injected": False, "fail_open": 0, "errors": 0,
    }  # fmt: skip
    assert unexpected(clean, {"redis_errors:ResponseError": 1}, injected=False)["marked"]
    assert METRICS["unexpected"].source == "runner" and METRICS["unexpected"].compute is None


def test_labelled_names_columns_by_label_and_unit() -> None:
    from stampede.metrics import labelled, with_unit

    table = pd.DataFrame(
        {"max_origin_per_s_steady": [17], "lower_bound": [592], "hit_rate": [0.97], "x_y": [1]}
    )
    assert list(labelled(table).columns) == [
        "max origin reads/s (steady)",  # the label says its unit already
        "lower bound (reads)",
        "hit rate (share)",
        "x y",  # not a metric: spaces for underscores
    ]
    assert with_unit("hot_latency_steady_p99_ms") == "hot-key p99 ms (steady)"
    assert labelled(table)["lower bound (reads)"].tolist() == [592]


def test_hot_waited_steady_counts_hot_requests_answered_by_a_read_after_the_first_ttl() -> None:
    rows = [
        {"t": 1.0, "outcome": "miss"},  # the cold start: not steady
        {"t": 5.0, "outcome": "wait_hit"},
        {"t": 6.0, "outcome": "miss"},
        {"t": 7.0, "outcome": "fail_open"},
        {"t": 8.0, "outcome": "stale"},  # served at once
        {"t": 9.0, "outcome": "early_refresh"},
        {"t": 9.5, "outcome": "wait_hit", "item": 2},  # not the hot key
    ]
    assert summarize(records(rows), reads([]), SHAPE)["hot_waited_steady"] == 3


def test_hot_waiters_per_read_counts_the_hot_keys_wait_hits_per_hot_read() -> None:
    rows = [
        {"t": 5.0, "outcome": "miss"},
        *({"t": 5.0 + i / 100, "outcome": "wait_hit"} for i in range(1, 7)),
        {"t": 5.1, "outcome": "wait_hit", "status": 0, "error": "timeout"},  # never answered
        *({"t": 6.0, "outcome": "wait_hit", "item": 2} for _ in range(4)),  # a cold key's waiters
    ]
    both = pd.concat([reads([0.0, 5.0]), reads([6.0], item=2)], ignore_index=True)
    assert summarize(records(rows), both, SHAPE)["hot_waiters_per_read"] == 3.0  # 6 over 2
    assert math.isnan(summarize(records(rows), reads([6.0], item=2), SHAPE)["hot_waiters_per_read"])
