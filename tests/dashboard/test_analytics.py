"""storage.analytics on a seeded audit trail: each aggregate (computed in PostgreSQL) against the
same figure computed here from the raw rows, which only a test may fetch."""

from __future__ import annotations

import datetime as dt
import os
import threading

import numpy as np
import pandas as pd
import psycopg
import pytest

import settings
from storage import analytics, pool
from storage.pool import get_readonly_pool

from .conftest import ANCHOR, PREFIX, SEED_USERS, window

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def raw(seeded) -> pd.DataFrame:
    """Every seeded operation (the test's own reference data)."""
    with psycopg.connect(seeded) as conn:
        cur = conn.execute("""SELECT id::text AS operation_id, user_id, wallet_address, chain_ids, priority, trigger,
                                     status, enqueued_at, duration_ms, queue_wait_ms, error_code, error_message,
                                     total_value_usd, chain_results
                              FROM sync_operations WHERE user_id LIKE %s""", (PREFIX + "%",))
        frame = pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])
    frame["enqueued_at"] = pd.to_datetime(frame["enqueued_at"], utc=True)
    return frame


#: What a percentile read off the rollups' latency histograms promises: the upper edge of the bin
#: holding the exact value, bins four a doubling, so at most 2 ** (1 / 4) - 1 (19 %) above it, never below.
HISTOGRAM_BIN_RATIO = 2 ** 0.25


def assert_within_a_bin(read: float, values, fraction: float) -> None:
    """``read`` (a histogram percentile) against the exact percentile_cont / percentile_disc of ``values``:
    the exact value's bin's upper edge, so no lower than the exact figure and within a bin's width."""
    values = np.asarray(values, dtype=float)
    cont = np.percentile(values, fraction * 100)
    disc = np.sort(values)[int(np.ceil(fraction * len(values))) - 1]
    # The bin's upper edge covers the value at that rank (percentile_disc) ...
    assert disc <= read <= max(disc, 1.0) * HISTOGRAM_BIN_RATIO * (1 + 1e-9), (read, disc)
    # ... and percentile_cont lies between that rank's neighbours: within a bin of it too.
    assert cont / HISTOGRAM_BIN_RATIO <= read <= max(cont, 1.0) * HISTOGRAM_BIN_RATIO ** 2 * (1 + 1e-9), (read, cont)


def in_window(raw: pd.DataFrame, key: str) -> pd.DataFrame:
    w = window(key)
    return raw[(raw["enqueued_at"] >= w.start) & (raw["enqueued_at"] < w.end)]


@pytest.mark.parametrize("key", ["24h", "7d"])
def test_kpis_match_the_raw_rows(raw, key):
    rows = in_window(raw, key)
    finished = rows[rows["status"].isin(["succeeded", "failed"])]
    k = analytics.kpis(window(key)).iloc[0]
    assert k["syncs"] == len(rows) > 0
    assert k["succeeded"] == (rows["status"] == "succeeded").sum()
    assert k["failed"] == (rows["status"] == "failed").sum()
    assert k["active"] == rows["status"].isin(["queued", "running", "retrying"]).sum()
    assert k["success_rate"] == pytest.approx(k["succeeded"] / len(finished))
    # percentiles off the rollups' histograms: within a bin (19 %) of percentile_cont over the raw rows
    assert_within_a_bin(k["duration_p50_ms"], finished["duration_ms"].dropna(), 0.5)
    assert_within_a_bin(k["duration_p95_ms"], finished["duration_ms"].dropna(), 0.95)
    # the queue wait of the finished operations (those the rollups hold)
    assert_within_a_bin(k["queue_wait_p95_ms"], finished["queue_wait_ms"].dropna(), 0.95)
    wallets = analytics.wallets_synced(window(key)).iloc[0]
    ok = rows[rows["status"] == "succeeded"]
    assert wallets["wallets_synced"] == len(ok.drop_duplicates(["user_id", "wallet_address"]))
    assert wallets["users_synced"] == ok["user_id"].nunique()


def test_throughput_has_every_bucket_and_adds_up(raw):
    w = window("24h")
    frame = analytics.throughput(w)
    buckets = frame["bucket"].drop_duplicates()
    assert len(buckets) == 96 + 1 or len(buckets) == 96  # 15-minute buckets; the window may straddle one more
    assert set(frame["status"]) == set(analytics.STATUSES)
    rows = in_window(raw, "24h")
    assert frame["syncs"].sum() == len(rows)
    by_status = frame.groupby("status")["syncs"].sum()
    assert by_status["failed"] == (rows["status"] == "failed").sum()


def test_duration_histogram_bins_every_finished_operation(raw):
    frame = analytics.duration_histogram(window("7d"))
    rows = in_window(raw, "7d")
    finished = rows[rows["status"].isin(["succeeded", "failed"])]
    assert frame["syncs"].sum() == len(finished)
    edges = analytics.DURATION_EDGES
    for record in frame.to_dict("records"):
        inside = finished[(finished["duration_ms"] >= record["lower_ms"])
                          & ((finished["duration_ms"] < record["upper_ms"]) if record["upper_ms"] else True)
                          & (finished["status"] == record["status"])]
        assert len(inside) == record["syncs"], record
    assert analytics.duration_label(1) == f"0–{edges[1]} ms"


def test_failures_by_error_code(raw):
    frame = analytics.failures_by_error(window("7d")).set_index("error_code")
    failed = in_window(raw, "7d").query("status == 'failed'")
    expected = failed.groupby("error_code").size()
    assert frame["failures"].to_dict() == expected.to_dict()
    assert frame.loc["provider_timeout", "users"] == failed.query("error_code == 'provider_timeout'")["user_id"].nunique()


def test_trigger_and_priority_with_queue_wait_percentiles_within_a_bin(raw):
    frame = analytics.by_trigger_priority(window("7d"))
    rows = in_window(raw, "7d")
    assert frame["syncs"].sum() == len(rows)
    for record in frame.to_dict("records"):
        part = rows[(rows["trigger"] == record["trigger"]) & (rows["priority"] == record["priority"])]
        assert record["syncs"] == len(part)
        assert record["succeeded"] == (part["status"] == "succeeded").sum()
        assert record["failed"] == (part["status"] == "failed").sum()
        waits = part[part["status"].isin(["succeeded", "partial", "failed"])]["queue_wait_ms"].dropna()
        assert_within_a_bin(record["queue_wait_p95_ms"], waits, 0.95)
        assert_within_a_bin(record["queue_wait_p50_ms"], waits, 0.5)
    assert {"scheduled", "api"} <= set(frame["trigger"])


@pytest.mark.parametrize("key", ["24h", "7d"])
def test_chains_count_every_read_of_the_final_operations(raw, key):
    frame = analytics.chains(window(key))
    rows = in_window(raw, key)
    rows = rows[rows["status"].isin(["succeeded", "partial", "failed"])]
    reads = [(int(c), r["status"], r.get("duration_ms"), r.get("error_code")) for results in rows["chain_results"]
             for c, r in results.items()]
    expected = pd.DataFrame(reads, columns=["chain_id", "status", "duration_ms", "error_code"])
    assert set(frame["chain_id"]) == set(expected["chain_id"])
    assert frame["reads"].sum() == len(expected)
    for record in frame.to_dict("records"):
        part = expected[expected["chain_id"] == record["chain_id"]]
        assert record["reads"] == len(part)
        assert record["ok"] == (part["status"] == "ok").sum()
        assert record["errors"] == (part["status"] == "error").sum()
        ok_ms = part[part["status"] == "ok"]["duration_ms"].dropna()
        assert_within_a_bin(record["latency_p50_ms"], ok_ms, 0.5)
        assert_within_a_bin(record["latency_p95_ms"], ok_ms, 0.95)
        errors = part[part["status"] == "error"]["error_code"].value_counts()
        if len(errors):
            top = sorted(errors[errors == errors.max()].index)[0]
            assert record["top_error"] == top


@pytest.mark.parametrize("key", ["6h", "24h", "7d"])
def test_users_page_sorts_filters_and_paginates_on_the_server(raw, key):
    w = window(key)
    shown = analytics.users_window(w)  # whole UTC days for a day or more, as the page says
    assert shown.end == w.end and (shown == w if key == "6h" else shown.start == ANCHOR.replace(hour=0) - w.span)
    rows = raw[(raw["enqueued_at"] >= shown.start) & (raw["enqueued_at"] < shown.end)]
    per_user = rows.groupby("user_id").agg(syncs=("status", "size"),
                                           failed=("status", lambda s: (s == "failed").sum()))
    page, total = analytics.users(w, sort="syncs", descending=True, limit=10)
    assert total == len(per_user) <= SEED_USERS
    assert list(page["syncs"]) == sorted(per_user["syncs"], reverse=True)[:10]
    top = page.iloc[0]
    assert top["last_sync_at"] == rows[rows["user_id"] == top["user_id"]]["enqueued_at"].max()
    assert top["last_status"] in analytics.STATUSES
    assert top["wallets"] >= 1 and top["portfolio_value_usd"] > 0

    second, _ = analytics.users(w, sort="syncs", descending=True, limit=10, offset=10)
    assert not set(second["user_id"]) & set(page["user_id"])

    ascending, _ = analytics.users(w, sort="user_id", descending=False, limit=5)
    assert list(ascending["user_id"]) == sorted(per_user.index)[:5]
    # the page of the busiest users, ordered by a figure no rollup holds
    by_value, _ = analytics.users(w, sort="portfolio_value_usd", descending=True, limit=5)
    assert set(by_value["user_id"]) == set(page["user_id"][:5])
    assert list(by_value["portfolio_value_usd"]) == sorted(by_value["portfolio_value_usd"], reverse=True)
    by_p95, _ = analytics.users(w, sort="p95_duration_ms", descending=False, limit=5)
    assert by_p95["p95_duration_ms"].is_monotonic_increasing

    failing, failing_total = analytics.users(w, failed_only=True, limit=500)
    assert failing_total == (per_user["failed"] > 0).sum() and (failing["failed"] > 0).all()
    filtered, filtered_total = analytics.users(w, user_filter="-0001", limit=500)
    assert filtered_total == sum("-0001" in u for u in per_user.index) and filtered_total > 0
    assert analytics.users(w, user_filter="%", limit=5)[1] == 0  # wildcards are taken literally
    with pytest.raises(ValueError):
        analytics.users(w, sort="syncs; DROP TABLE holdings")


def test_a_user_drill_down(raw):
    w = window("7d")
    rows = in_window(raw, "7d")
    user = rows["user_id"].value_counts().index[0]
    mine = rows[rows["user_id"] == user]
    summary = analytics.user_summary(w, user).iloc[0]
    assert summary["syncs"] == len(mine) and summary["failed"] == (mine["status"] == "failed").sum()
    timeline = analytics.user_timeline(w, user)
    assert len(timeline) == len(mine) and timeline["enqueued_at"].is_monotonic_decreasing
    values = analytics.user_values(w, user)
    assert len(values) == (mine["status"] == "succeeded").sum()
    assert set(values["wallet_address"]) <= set(mine["wallet_address"])
    holdings = analytics.user_holdings(user)
    assert not holdings.empty and holdings["value_usd"].sum() == pytest.approx(summary["portfolio_value_usd"])
    assert analytics.user_summary(w, "nobody-at-all").iloc[0]["syncs"] == 0


def test_a_search_counts_its_matches_up_to_the_limit(raw, monkeypatch):
    w = window("7d")
    rows = in_window(raw, "7d")
    user = rows["user_id"].value_counts().index[0]
    matches = int((rows["user_id"] == user).sum())
    assert matches > 3
    monkeypatch.setattr(analytics, "SEARCH_COUNT_LIMIT", 3)
    page, total = analytics.search_operations(w, analytics.OperationSearch(user_id=user), limit=2, offset=2)
    assert total == 4 and len(page) == 2  # "more than 3"; the page itself is read as ever
    monkeypatch.setattr(analytics, "SEARCH_COUNT_LIMIT", matches)
    assert analytics.search_operations(w, analytics.OperationSearch(user_id=user))[1] == matches


def test_search_operations(raw):
    w = window("7d")
    rows = in_window(raw, "7d")
    user = rows["user_id"].value_counts().index[3]
    page, total = analytics.search_operations(w, analytics.OperationSearch(user_id=user), limit=5)
    assert total == (rows["user_id"] == user).sum() and len(page) == 5
    assert page["enqueued_at"].is_monotonic_decreasing

    failed = rows[rows["status"] == "failed"]
    page, total = analytics.search_operations(
        w, analytics.OperationSearch(statuses=("failed",), error_text="rate limited"), limit=500)
    assert total == failed["error_message"].str.contains("rate limited").sum() > 0
    assert set(page["error_code"]) == {"provider_rate_limited"}

    wallet = rows.iloc[0]["wallet_address"]
    _page, total = analytics.search_operations(w, analytics.OperationSearch(wallet=wallet.upper()))
    assert total == (rows["wallet_address"] == wallet).sum()

    # an operation id is found whatever the window
    old = raw.iloc[0]["operation_id"]
    page, total = analytics.search_operations(window("1h"), analytics.OperationSearch(operation_id=old))
    assert total == 1 and page.iloc[0]["operation_id"] == old
    assert analytics.search_operations(w, analytics.OperationSearch(operation_id="not-a-uuid"))[1] == 0
    record = analytics.operation(old)
    assert record["operation_id"] == old and isinstance(record["chain_results"], dict)
    assert analytics.operation("00000000-0000-0000-0000-000000000000") is None


def test_an_error_text_search_pages_newest_first_across_partitions(raw):
    """Read partition by partition (dash_window_partitions), its pages are those of one ordered search."""
    w = window("30d")
    rows = in_window(raw, "30d")
    failed = rows[rows["status"].isin(["failed", "retrying"]) & rows["error_message"].str.contains("simulated", na=False)]
    expected = list(failed.sort_values(["enqueued_at", "operation_id"], ascending=[False, True])["operation_id"])
    weeks = set(failed["enqueued_at"].dt.tz_convert("UTC").dt.strftime("%G-%V"))
    assert len(expected) > 20 and len(weeks) >= 2  # the pages cross partitions (weekly)
    assert len(analytics._frame("dash_window_partitions", w.params())) >= 2
    # an operation id with the text: that one operation, whatever the window, once
    one = analytics.search_operations(window("1h"), analytics.OperationSearch(operation_id=expected[-1],
                                                                              error_text="simulated"))
    assert one[1] == 1 and list(one[0]["operation_id"]) == [expected[-1]]
    size = len(expected) // 4 + 1
    pages = [analytics.search_operations(w, analytics.OperationSearch(error_text="simulated"), limit=size,
                                         offset=offset) for offset in range(0, len(expected) + size, size)]
    assert all(total == len(expected) for _page, total in pages)
    assert [op for page, _total in pages for op in page["operation_id"]] == expected


def test_the_dashboard_pool_is_read_only_with_its_own_timeout(seeded):
    with get_readonly_pool().connection() as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone()["default_transaction_read_only"] == "on"
        assert conn.execute("SHOW statement_timeout").fetchone()["statement_timeout"] == "5s"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM holdings WHERE user_id = 'nobody'")


def test_a_read_that_finds_no_free_connection_says_so(dash_app, monkeypatch, caplog):
    """A callback that waits longer than the connect timeout for a connection (the pool is as large as a web
    process's threads, so it is busy or unreachable) falls back, and its log line names that reason."""
    from dashboard.pages import overview

    cfg = settings.load({**os.environ, "DASHBOARD_DB_POOL_MAX": "1", "DB_CONNECT_TIMEOUT_S": "1"})
    monkeypatch.setattr(settings, "get", lambda: cfg)
    monkeypatch.setattr(pool, "_readonly", pool._ProcessPool(pool._open_readonly_pool))
    held = threading.Event()

    def slow_read():
        with get_readonly_pool().connection() as conn:
            held.set()
            conn.execute("SELECT pg_sleep(2)")

    reader = threading.Thread(target=slow_read)
    reader.start()
    try:
        assert held.wait(5)
        assert overview.update_wallets("7d") == "n/a"
    finally:
        reader.join(5)
        pool._readonly.close()
    assert "no database connection came free in time" in caplog.text


def test_queries_use_the_indexes(seeded):
    """No dashboard query reads the whole table for a window that is a small part of it: a window
    aggregate goes through an index (which one is the planner's choice at this size; on a month of a
    million rows it is sync_operations_window_idx), a user's operations through the covering user index."""
    from storage.queries import QUERIES

    def plan(name: str, params: dict) -> str:
        with get_readonly_pool().connection() as conn:
            return "\n".join(r["QUERY PLAN"] for r in conn.execute("EXPLAIN " + QUERIES[name], params).fetchall())

    w = window("1h")  # a small part of the table, as a window is of a live one
    for name in ("dash_kpis", "dash_throughput", "dash_failures_by_error", "dash_by_trigger_priority"):
        text = plan(name, {**w.params(), "edges": [0, 10]})
        assert "Seq Scan on sync_operations" not in text, (name, text)
        assert "sync_operations_" in text and "_idx" in text, (name, text)
    text = plan("dash_user_timeline", {**w.params(), "user_id": "x", "limit": 10})
    # sync_operations is partitioned: the scan names a partition's part of the covering index.
    with get_readonly_pool().connection() as conn:
        parts = {r["name"] for r in conn.execute(
            "SELECT inhrelid::regclass::text AS name FROM pg_inherits"
            " WHERE inhparent = 'sync_operations_user_cover_idx'::regclass").fetchall()}
    assert "sync_operations_user_cover_idx" in text or any(f" {name} " in text for name in parts), text


def test_scheduler_ticks_and_active_operations(seeded, db_conn):
    ticks = analytics.scheduler_ticks(limit=5)
    assert list(ticks.columns)[:3] == ["schedule", "tick_at", "scheduler_id"]
    active = analytics.active_operations()
    assert set(active["status"]) <= {"queued", "running", "retrying"}
    assert active["operations"].sum() >= 1  # the seed's last 90 seconds are still in progress
    assert ANCHOR - dt.timedelta(days=8) < min(active["oldest_enqueued_at"])
