"""``python -m storage.migrate`` gives a database of the release before the overview's latest-pair tables
(sync_rollup_wallet_latest, sync_rollup_failure_latest) those tables, filled from the operations already
final, once: a second release changes nothing, and the trigger keeps them from then on."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pytest

from tests.integration.test_migrate_partitions import run_release

pytestmark = pytest.mark.integration


def test_release_backfills_the_latest_success_and_failure_of_each_pair_once(empty_database: str) -> None:
    from harness import seed

    run_release(empty_database)
    base = dt.datetime(2024, 3, 4, 5, 0, tzinfo=dt.timezone.utc)
    rows = [{"id": uuid.uuid4(), "user_id": f"u{n % 3}", "wallet_address": f"0x{n % 5:040x}",
             "status": ("succeeded", "failed", "queued", "succeeded")[n % 4], "enqueued_at": base + dt.timedelta(minutes=n),
             "error_code": "rpc_timeout" if n % 8 == 1 else None} for n in range(60)]
    with psycopg.connect(empty_database, autocommit=True) as conn:
        seed.insert_operations(conn, rows)
        # as the previous release left it: final operations, no latest-pair tables
        conn.execute("DROP TABLE sync_rollup_wallet_latest, sync_rollup_failure_latest")

    for _ in range(2):
        run_release(empty_database)

    wallets, failures = {}, {}
    for r in rows:
        if r["status"] == "succeeded":
            key = (r["user_id"], r["wallet_address"])
            wallets[key] = max(wallets.get(key, r["enqueued_at"]), r["enqueued_at"])
        if r["status"] == "failed":
            key = (r["error_code"] or "", r["user_id"])
            failures[key] = max(failures.get(key, r["enqueued_at"]), r["enqueued_at"])
    with psycopg.connect(empty_database) as conn:
        got_wallets = {(u, w): at for u, w, at in conn.execute(
            "SELECT user_id, wallet_address, last_enqueued_at FROM sync_rollup_wallet_latest").fetchall()}
        got_failures = {(c, u): at for c, u, at in conn.execute(
            "SELECT error_code, user_id, last_enqueued_at FROM sync_rollup_failure_latest").fetchall()}
    assert got_wallets == wallets and len(wallets) > 5
    assert got_failures == failures and {c for c, _u in failures} == {"", "rpc_timeout"}


def test_release_rebuilds_the_users_spans_of_a_database_whose_spans_held_closed_days_only(empty_database: str) -> None:
    from harness import seed

    run_release(empty_database)
    now = dt.datetime.now(dt.timezone.utc)
    rows = [{"id": uuid.uuid4(), "user_id": f"u{n % 4}", "wallet_address": f"0x{n % 5:040x}",
             "status": ("succeeded", "failed", "partial")[n % 3], "duration_ms": 10 + n,
             "enqueued_at": now - dt.timedelta(hours=n * 7)} for n in range(150)]  # today back to ~44 days ago
    with psycopg.connect(empty_database, autocommit=True) as conn:
        seed.insert_operations(conn, rows)
        # as the previous release left it: spans of closed days only in their own table, watermarks moved
        conn.execute("DROP TABLE sync_rollup_user_since CASCADE")
        conn.execute("CREATE TABLE sync_rollup_user_span (user_id text, span_days int, syncs bigint)")
        conn.execute("INSERT INTO sync_rollup_user_span VALUES ('u0', 30, 12)")
        conn.execute("UPDATE sync_rollup_user_span_through SET through_day = date_trunc('day', now(), 'UTC') - interval '1 day'")

    for _ in range(2):
        run_release(empty_database)

    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT to_regclass('sync_rollup_user_span')").fetchone()[0] is None
        got = {(span, user): (syncs, duration) for span, user, syncs, duration in conn.execute(
            "SELECT span_days, user_id, syncs, duration_ms_sum FROM sync_rollup_user_since").fetchall()}
        through = {span for (span,) in conn.execute("SELECT through_day FROM sync_rollup_user_span_through")}
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    assert through == {today - dt.timedelta(days=1)}
    expected: dict = {}
    for span in (1, 7, 30):
        for r in rows:
            if r["enqueued_at"] >= today - dt.timedelta(days=span):
                syncs, duration = expected.get((span, r["user_id"]), (0, 0))
                expected[(span, r["user_id"])] = (syncs + 1, duration + r["duration_ms"])
    assert got == expected and len({s for s, _u in expected}) == 3
