"""The users page's per-user figures, read from the spans (sync_rollup_user_since: a span's closed days and
every day after them) and the operations not final, equal the same aggregates over raw rows: after the spans are
built, after a second (idempotent) run, after an old operation becomes final late (the reconciler failing
it), across a UTC day rollover, and while housekeeping lags a day behind.  "Today" is a fake day long past,
so no other test's operation falls in its windows."""

from __future__ import annotations

import datetime as dt
import random
import uuid

import psycopg
import pytest

pytestmark = pytest.mark.integration

TODAY = dt.datetime(2021, 6, 20, tzinfo=dt.timezone.utc)
FINAL = ("succeeded", "partial", "failed")


def _operations(rng: random.Random, prefix: str, first: dt.datetime, last: dt.datetime, count: int) -> list[dict]:
    rows = []
    seconds = (last - first).total_seconds()
    for n in range(count):
        at = first + dt.timedelta(seconds=rng.uniform(0, seconds))
        status = rng.choice(["succeeded"] * 6 + ["failed", "failed", "partial", "running", "queued"])
        final = status in FINAL
        rows.append({"id": uuid.uuid4(), "user_id": f"{prefix}{n % 9}", "wallet_address": f"0x{n % 5:040x}",
                     "status": status, "trigger": "api", "priority": "normal", "enqueued_at": at,
                     "attempts": 1, "queue_wait_ms": rng.randint(0, 900),
                     "duration_ms": rng.randint(1, 20000) if final else None,
                     "finished_at": at + dt.timedelta(seconds=30) if final else None,
                     "error_code": "rpc_timeout" if status == "failed" else None})
    return rows


def _raw_users(conn, prefix: str, start: dt.datetime, end: dt.datetime) -> dict[str, dict]:
    """The users page's figures over raw rows."""
    return {r[0]: {"syncs": r[1], "succeeded": r[2], "failed": r[3], "last_sync_at": r[4], "avg_duration_ms": r[5],
                   "p95_duration_ms": r[6], "success_rate": r[2] / r[7] if r[7] else None, "last_status": r[8]}
            for r in conn.execute(
                "SELECT user_id, count(*), count(*) FILTER (WHERE status = 'succeeded'),"
                " count(*) FILTER (WHERE status = 'failed'), max(enqueued_at),"
                " avg(duration_ms::float8) FILTER (WHERE status IN ('succeeded', 'partial', 'failed')),"
                " percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)"
                "     FILTER (WHERE status IN ('succeeded', 'partial', 'failed')),"
                " count(*) FILTER (WHERE status IN ('succeeded', 'partial', 'failed')),"
                " (array_agg(status ORDER BY enqueued_at DESC))[1]"
                " FROM sync_operations WHERE user_id LIKE %s AND enqueued_at >= %s AND enqueued_at < %s GROUP BY 1",
                (prefix + "%", start, end)).fetchall()}


def _compare(database: str, prefix: str, now: dt.datetime) -> None:
    from storage import analytics

    for span in (dt.timedelta(hours=6), dt.timedelta(days=1), dt.timedelta(days=7), dt.timedelta(days=30)):
        window = analytics.users_window(analytics.Window(now - span, now, dt.timedelta(hours=1)))
        if span >= dt.timedelta(days=1):
            assert window.start == now.replace(hour=0, minute=0, second=0, microsecond=0) - span
        with psycopg.connect(database) as conn:
            expected = _raw_users(conn, prefix, window.start, window.end)
        page, total = analytics.users(window, user_filter=prefix, limit=500)
        assert total == len(expected) > 0, span
        got = {r["user_id"]: r for r in page.to_dict("records")}
        assert set(got) == set(expected), span
        for user, want in expected.items():
            row = got[user]
            for column in ("syncs", "succeeded", "failed"):
                assert row[column] == want[column], (span, user, column)
            assert row["last_sync_at"] == want["last_sync_at"], (span, user)
            assert row["last_status"] == want["last_status"], (span, user)
            for column in ("avg_duration_ms", "p95_duration_ms", "success_rate"):
                if want[column] is None:  # no final operation in the window
                    assert row[column] is None or row[column] != row[column], (span, user, column)
                else:
                    assert row[column] == pytest.approx(want[column], rel=1e-9), (span, user, column)
        by_failed, _ = analytics.users(window, user_filter=prefix, failed_only=True, sort="success_rate",
                                       descending=False, limit=500)
        assert list(by_failed["user_id"]) == [u for u, _r in sorted(
            ((u, w) for u, w in expected.items() if w["failed"]), key=lambda p: (p[1]["success_rate"], p[0]))]


def _assert_spans_hold_their_days(database: str, prefix: str) -> None:
    """Each span row of the test's users = the sum of their user_day rows from the span's first day on."""
    with psycopg.connect(database) as conn:
        mismatched = conn.execute(
            "WITH expected AS ("
            "  SELECT t.span_days, d.user_id, sum(d.syncs) AS syncs, sum(d.failed) AS failed,"
            "         sum(d.duration_ms_sum) AS duration_ms_sum, max(d.last_enqueued_at) AS last_enqueued_at"
            "  FROM sync_rollup_user_span_through AS t JOIN sync_rollup_user_day AS d"
            "    ON d.day > t.through_day - t.span_days * interval '1 day'"
            "  WHERE d.user_id LIKE %(p)s GROUP BY 1, 2"
            "), held AS ("
            "  SELECT span_days, user_id, syncs, failed, duration_ms_sum, last_enqueued_at"
            "  FROM sync_rollup_user_since WHERE user_id LIKE %(p)s"
            ") SELECT count(*)"
            " FROM ((TABLE expected EXCEPT TABLE held) UNION ALL (TABLE held EXCEPT TABLE expected)) AS x",
            {"p": prefix + "%"}).fetchone()[0]
    assert mismatched == 0


def test_users_page_figures_from_spans_agree_with_raw_rows(database):
    from harness import seed
    from storage import operations, scheduling

    prefix = f"spans-{uuid.uuid4().hex[:8]}-"
    rng = random.Random(16)
    def add(first: dt.datetime, last: dt.datetime, count: int) -> None:
        """Operations up to the fake "now" only: today's user_day rows count the whole day so far."""
        with psycopg.connect(database, autocommit=True) as conn:
            seed.insert_operations(conn, _operations(rng, prefix, first, last, count))

    try:
        add(TODAY - dt.timedelta(days=34), TODAY + dt.timedelta(hours=13), 1500)
        with psycopg.connect(database) as conn:
            late = conn.execute("SELECT id FROM sync_operations WHERE user_id LIKE %s AND status = 'running'"
                                " AND enqueued_at < %s LIMIT 1", (prefix + "%", TODAY - dt.timedelta(days=3))
                                ).fetchone()[0]
        now = TODAY + dt.timedelta(hours=13)
        built = scheduling.build_user_spans(today=now)
        assert built.through == {span: (TODAY - dt.timedelta(days=1)).date().isoformat() for span in (1, 7, 30)}
        _assert_spans_hold_their_days(database, prefix)
        _compare(database, prefix, now)

        again = scheduling.build_user_spans(today=now)  # idempotent: nothing to move, nothing moved twice
        assert again.steps == 0 and again.through == built.through
        _assert_spans_hold_their_days(database, prefix)
        _compare(database, prefix, now)

        # an operation of a day inside every span becomes final late: the spans follow
        assert operations.fail_operation(str(late), error_code="expired", error_message="too old") is not None
        _assert_spans_hold_their_days(database, prefix)
        _compare(database, prefix, now)

        # a user of today alone: a step takes off the day leaving and leaves that user's rows be (a span
        # is rebuilt whole only when it misses more days than it holds)
        solo = [{**_operations(rng, prefix, now - dt.timedelta(hours=1), now, 1)[0], "user_id": f"{prefix}solo",
                 "status": "succeeded", "duration_ms": 5}]
        with psycopg.connect(database, autocommit=True) as conn:
            seed.insert_operations(conn, solo)
            solo_before = conn.execute("SELECT span_days, xmin::text FROM sync_rollup_user_since WHERE user_id = %s"
                                       " ORDER BY 1", (f"{prefix}solo",)).fetchall()
        assert [span for span, _x in solo_before] == [1, 7, 30]

        # the next UTC day: before housekeeping moves the spans (read with yesterday's user_day rows, the
        # day that left taken off), then after it (one step per span)
        tomorrow = TODAY + dt.timedelta(days=1, hours=1)
        add(TODAY + dt.timedelta(hours=13), tomorrow, 80)
        _compare(database, prefix, tomorrow)
        moved = scheduling.build_user_spans(today=tomorrow)
        assert moved.steps == 3
        with psycopg.connect(database) as conn:
            assert conn.execute("SELECT span_days, xmin::text FROM sync_rollup_user_since WHERE user_id = %s"
                                " ORDER BY 1", (f"{prefix}solo",)).fetchall() == solo_before
        assert set(moved.through.values()) == {TODAY.date().isoformat()}
        _assert_spans_hold_their_days(database, prefix)
        _compare(database, prefix, tomorrow)

        # more of that day's operations, written after it closed: the spans follow
        add(TODAY + dt.timedelta(hours=13), TODAY + dt.timedelta(days=1), 30)
        _assert_spans_hold_their_days(database, prefix)
        _compare(database, prefix, tomorrow)

        # housekeeping a day behind: the 7- and 30-day windows still read the spans, exactly
        add(tomorrow, TODAY + dt.timedelta(days=2, hours=2), 60)
        _compare(database, prefix, TODAY + dt.timedelta(days=2, hours=2))
    finally:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("DELETE FROM sync_operations WHERE user_id LIKE %s", (prefix + "%",))
            conn.execute("DELETE FROM sync_rollup_user_day WHERE user_id LIKE %s", (prefix + "%",))
            conn.execute("DELETE FROM sync_rollup_user_since WHERE user_id LIKE %s", (prefix + "%",))
            for table in ("sync_rollup_minute", "sync_rollup_chain_minute"):
                conn.execute(f"DELETE FROM {table} WHERE bucket >= %s AND bucket < %s",
                             (TODAY - dt.timedelta(days=35), TODAY + dt.timedelta(days=3)))
        scheduling.build_user_spans()  # back to the real day, as the next housekeeping run would
