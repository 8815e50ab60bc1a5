"""The chart builders are pure functions of DataFrames: checked without a browser or a database."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dashboard import figures
from storage.analytics import DURATION_EDGES, duration_label


def throughput_frame() -> pd.DataFrame:
    buckets = pd.date_range("2024-03-01", periods=4, freq="15min", tz="UTC")
    rows = []
    for i, bucket in enumerate(buckets):
        for status in figures.STATUS_ORDER:
            rows.append({"bucket": bucket, "status": status,
                         "syncs": {"succeeded": 10 + i, "partial": 0, "failed": i % 2, "retrying": 0, "running": 0,
                                   "queued": 0}[status]})
    return pd.DataFrame(rows)


def test_throughput_stacks_only_the_statuses_that_occur():
    frame = throughput_frame()
    before = frame.copy()
    fig = figures.throughput_figure(frame)
    assert [t.name for t in fig.data] == ["succeeded", "failed"]
    assert fig.layout.barmode == "stack"
    assert list(fig.data[0].y) == [10, 11, 12, 13]
    assert fig.data[1].marker.color == figures.STATUS_COLORS["failed"]
    pd.testing.assert_frame_equal(frame, before)  # the input is left alone


def test_empty_frames_give_a_figure_that_says_so():
    for builder, frame in [
        (figures.throughput_figure, pd.DataFrame(columns=["bucket", "status", "syncs"])),
        (figures.duration_figure, pd.DataFrame(columns=["bin", "label", "status", "syncs"])),
        (figures.failures_figure, pd.DataFrame(columns=["error_code", "failures", "users", "last_seen"])),
        (figures.user_value_figure, pd.DataFrame(columns=["at", "wallet_address", "total_value_usd"])),
        (figures.queues_figure, pd.DataFrame(columns=["queue", "waiting", "in_flight", "delayed", "dead"])),
        (figures.scheduler_figure, pd.DataFrame(columns=["schedule", "tick_at", "requested_count",
                                                         "held_back_count", "backlog"])),
    ]:
        fig = builder(frame)
        assert len(fig.data) == 0
        assert fig.layout.annotations and fig.layout.annotations[0].text
    zero = throughput_frame().assign(syncs=0)
    assert len(figures.throughput_figure(zero).data) == 0


def test_duration_bins_keep_their_order():
    frame = pd.DataFrame([
        {"bin": 5, "label": duration_label(5), "status": "succeeded", "syncs": 40},
        {"bin": 2, "label": duration_label(2), "status": "succeeded", "syncs": 10},
        {"bin": 5, "label": duration_label(5), "status": "failed", "syncs": 2},
    ])
    fig = figures.duration_figure(frame)
    assert [t.name for t in fig.data] == ["succeeded", "failed"]
    assert list(fig.layout.xaxis.categoryarray) == ["8–16 ms", "64–128 ms"]
    assert list(fig.data[0].x) == ["8–16 ms", "64–128 ms"]
    assert duration_label(len(DURATION_EDGES)) == "≥ 65.536 s"
    assert duration_label(10) == "2.048–4.096 s" and duration_label(8) == "512–1024 ms"


def test_failures_most_frequent_on_top():
    frame = pd.DataFrame({"error_code": ["provider_timeout", "expired"], "failures": [30, 5], "users": [7, 2],
                          "last_seen": pd.to_datetime(["2024-03-01", "2024-02-29"], utc=True)})
    fig = figures.failures_figure(frame)
    assert len(fig.data) == 1 and list(fig.data[0].y) == ["expired", "provider_timeout"]  # the top is last


def test_trigger_priority_and_chains_have_two_panels():
    frame = pd.DataFrame({"trigger": ["api", "api", "scheduled"], "priority": ["high", "normal", "low"],
                          "syncs": [10, 5, 100], "succeeded": [9, 5, 95], "failed": [1, 0, 4],
                          "queue_wait_p50_ms": [10, 20, 40], "queue_wait_p95_ms": [30, 50, 200]})
    fig = figures.trigger_priority_figure(frame)
    names = [t.name for t in fig.data]
    assert names == ["succeeded", "failed", "in progress", "wait p50", "wait p95"]
    assert list(fig.data[0].x) == ["api", "scheduled"] and list(fig.data[0].y) == [14, 95]
    assert list(fig.data[3].x) == ["api · high", "scheduled · low", "api · normal"]

    chains = pd.DataFrame({"chain_id": [1, 8453], "reads": [100, 50], "ok": [95, 50], "errors": [5, 0],
                           "success_rate": [0.95, 1.0], "latency_p50_ms": [90.0, 120.0],
                           "latency_p95_ms": [200.0, 300.0], "top_error": ["provider_timeout", None]})
    fig = figures.chains_figure(chains)
    assert len(fig.data) == 3 and list(fig.data[0].x) == ["Ethereum (1)", "Base (8453)"]
    assert fig.layout.title.text == "Per chain"


def test_user_figures():
    timeline = pd.DataFrame({
        "operation_id": ["a", "b", "c"], "enqueued_at": pd.to_datetime(["2024-03-01"] * 3, utc=True),
        "status": ["succeeded", "failed", "queued"], "duration_ms": [100, 900, None],
        "wallet_address": ["0x" + "1" * 40] * 3, "trigger": ["api"] * 3, "error_code": [None, "expired", None]})
    fig = figures.user_timeline_figure(timeline)
    assert [t.name for t in fig.data] == ["succeeded", "failed", "queued"]
    assert list(fig.data[2].y) == [1.0]  # not finished: on the axis
    values = pd.DataFrame({"at": pd.to_datetime(["2024-03-01", "2024-03-02", "2024-03-01"], utc=True),
                           "wallet_address": ["0x" + "1" * 40, "0x" + "1" * 40, "0x" + "2" * 40],
                           "total_value_usd": [10.0, 12.0, 5.0]})
    fig = figures.user_value_figure(values)
    assert len(fig.data) == 2 and fig.data[0].name == "0x1111…1111" and list(fig.data[0].y) == [10.0, 12.0]
    holdings = pd.DataFrame({"chain_id": [1, 1, 8453, 1], "symbol": ["ETH", "USDC", "ETH", "SIMX"],
                             "value_usd": [100.0, 50.0, 25.0, None]})
    fig = figures.user_holdings_figure(holdings, top=1)
    assert [t.name for t in fig.data] == ["ETH", "other"]
    assert list(fig.layout.xaxis.categoryarray) == ["Ethereum (1)", "Base (8453)"]


def test_formatters_and_kpis():
    assert figures.fmt_int(1234567) == "1,234,567" and figures.fmt_int(None) == "–"
    assert figures.fmt_pct(0.9634) == "96.3 %" and figures.fmt_pct(float("nan")) == "–"
    assert figures.fmt_ms(128.0) == "128 ms" and figures.fmt_ms(12_500) == "12.50 s"
    assert figures.fmt_usd(1234.5) == "$1,234.50"
    assert figures.fmt_age(30) == "30 s" and figures.fmt_age(7200) == "2.0 h"
    assert figures.fmt_time(pd.Timestamp("2024-03-01 12:00:05", tz="UTC")) == "2024-03-01 12:00:05"
    kpis = pd.DataFrame([{"syncs": 24971, "succeeded": 24000, "failed": 916, "active": 35, "success_rate": 0.9633,
                          "duration_p50_ms": 128.0, "duration_p95_ms": 302.5, "queue_wait_p95_ms": math.nan}])
    wallets = pd.DataFrame([{"wallets_synced": 919, "users_synced": 800}])
    values = figures.overview_kpis(kpis, wallets)
    assert values == {"syncs": "24,971", "success_rate": "96.3 %", "duration_p50": "128 ms",
                      "duration_p95": "302 ms", "queue_wait_p95": "–", "failures": "916", "active": "35",
                      "wallets": "919"}


@pytest.mark.parametrize("builder", [figures.throughput_figure, figures.queues_figure])
def test_builders_use_the_dashboard_template(builder):
    frame = throughput_frame() if builder is figures.throughput_figure else pd.DataFrame(
        {"queue": ["sync"], "waiting": [1], "in_flight": [0], "delayed": [0], "dead": [2]})
    fig = builder(frame)
    assert fig.layout.template.layout.font.family.startswith("Inter")
    assert fig.layout.template.layout.colorway[0] == figures.SERIES_COLORS[0]
