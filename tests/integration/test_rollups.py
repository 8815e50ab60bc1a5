"""The rollups (sync_rollup_minute, sync_rollup_chain_minute, sync_rollup_user_day) agree with the same
aggregates over raw rows after retries, redeliveries, reconciler re-sends and give-ups, and a writer
killed mid-transaction: each operation counted once, when it becomes final."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pytest

from storage import operations
from storage.operations import AttemptOutcome, NewOperation

pytestmark = pytest.mark.integration

MINUTE_DIMENSIONS = "date_trunc('minute', enqueued_at), status, trigger, priority, provider, coalesce(error_code, '')"


def outcome(status: str, **chain_results) -> AttemptOutcome:
    return AttemptOutcome(status=status, holdings=[], synced_chains=[], holdings_count=0, total_value_usd=None,
                          unpriced_count=0, as_of=dt.datetime.now(dt.timezone.utc), provider="simulated",
                          chain_results={k.lstrip("c"): v for k, v in chain_results.items()},
                          error_code=None if status == "succeeded" else "rpc_timeout",
                          error_message=None if status == "succeeded" else "the node did not answer")


def minute_rollups(conn, since: dt.datetime) -> dict:
    return {tuple(r[:6]): tuple(r[6:]) for r in conn.execute(
        "SELECT bucket, status, trigger, priority, provider, error_code, sum(syncs), sum(attempts), sum(requeues),"
        " sync_hist_sum(duration_hist), sync_hist_sum(queue_wait_hist) FROM sync_rollup_minute WHERE bucket >= %s"
        " GROUP BY 1, 2, 3, 4, 5, 6", (since,)).fetchall()}


def chain_rollups(conn, since: dt.datetime) -> dict:
    return {tuple(r[:4]): tuple(r[4:]) for r in conn.execute(
        "SELECT bucket, chain_id, status, error_code, sum(reads), sync_hist_sum(duration_hist)"
        " FROM sync_rollup_chain_minute WHERE bucket >= %s GROUP BY 1, 2, 3, 4", (since,)).fetchall()}


def subtract(after: dict, before: dict) -> dict:
    """What a run added to the rollups (other tests of the run write to them too)."""
    delta = {}
    for key, values in after.items():
        old = before.get(key)
        changed = tuple(v if o is None else ([a - b for a, b in zip(v, o)] if isinstance(v, list) else v - o)
                        for v, o in zip(values, old or (None,) * len(values)))
        if any((any(c) if isinstance(c, list) else c) for c in changed):
            delta[key] = changed
    return delta


def test_rollups_count_each_operation_once_when_it_becomes_final(db_conn, user_id, database):
    since = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
    with psycopg.connect(database) as conn:
        minute_before, chain_before = minute_rollups(conn, since), chain_rollups(conn, since)
    ids = [str(uuid.uuid4()) for _ in range(7)]
    wallets = ["0x" + uuid.uuid4().hex + "0" * 8 for _ in ids]
    operations.insert_operations([NewOperation(op_id, user_id, w, (1, 10), p, t) for op_id, w, p, t in zip(
        ids, wallets, ["high", "normal", "low", "low", "normal", "high", "low"],
        ["api", "api", "scheduled", "scheduled", "api", "track", "scheduled"])], provider="simulated")
    a, b, c, d, e, f, g = ids
    ok = {"status": "ok", "duration_ms": 120}
    slow = {"status": "error", "error_code": "rpc_timeout", "duration_ms": 3000}

    # a: a retry, then success, then a redelivery of the success
    operations.start_attempt(a, worker_id="w1", message_id="m1")
    assert operations.finish_attempt(a, outcome("retrying", c1=ok, c10=slow))
    operations.start_attempt(a, worker_id="w1", message_id="m1")
    assert operations.finish_attempt(a, outcome("succeeded", c1=ok, c10=ok))
    assert not operations.finish_attempt(a, outcome("succeeded", c1=ok, c10=ok))
    assert operations.start_attempt(a, worker_id="w2", message_id="m1") is None
    # b: failed after its attempt
    operations.start_attempt(b, worker_id="w1", message_id="m2")
    assert operations.finish_attempt(b, outcome("failed", c1=slow, c10=slow))
    # c: failed without running (twice: the second does nothing)
    assert operations.fail_operation(c, error_code="expired", error_message="too old") is not None
    assert operations.fail_operation(c, error_code="expired", error_message="too old") is None
    # d: the reconciler sends it again, then it ends partial
    operations.start_attempt(d, worker_id="w1", message_id="m4")
    row = db_conn.execute("SELECT id::text, status, started_at FROM sync_operations WHERE id = %s", (d,)).fetchone()
    assert operations.requeue_operation(row, message_id="m4b")
    operations.start_attempt(d, worker_id="w2", message_id="m4b")
    assert operations.finish_attempt(d, outcome("partial", c1=ok, c10=slow))
    # e: the reconciler gives up on it; the worker's late success then changes nothing
    operations.start_attempt(e, worker_id="w1", message_id="m5")
    row = db_conn.execute("SELECT id::text, status, started_at FROM sync_operations WHERE id = %s", (e,)).fetchone()
    assert operations.fail_stuck_operation(row, error_code="lost", error_message="worker gone")
    assert not operations.finish_attempt(e, outcome("succeeded", c1=ok))
    # f: a writer killed after its final update, before its commit; the next attempt succeeds
    operations.start_attempt(f, worker_id="w1", message_id="m6")
    victim = psycopg.connect(database)
    victim.execute("UPDATE sync_operations SET status = 'succeeded', finished_at = now(), duration_ms = 5"
                   " WHERE id = %s", (f,))
    db_conn.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,))
    with pytest.raises(psycopg.OperationalError):
        victim.execute("COMMIT")
    operations.start_attempt(f, worker_id="w2", message_id="m6")
    assert operations.finish_attempt(f, outcome("succeeded", c1=ok, c10=ok))
    # g: still running, not counted
    operations.start_attempt(g, worker_id="w1", message_id="m7")

    with psycopg.connect(database) as conn:
        minute = subtract(minute_rollups(conn, since), minute_before)
        chain = subtract(chain_rollups(conn, since), chain_before)
        raw_minute = {tuple(r[:6]): tuple(r[6:]) for r in conn.execute(
            f"SELECT {MINUTE_DIMENSIONS}, count(*), sum(attempts), sum(requeues),"
            " sync_hist(sync_latency_bin(duration_ms)), sync_hist(sync_latency_bin(queue_wait_ms))"
            " FROM sync_operations WHERE user_id = %s AND status IN ('succeeded', 'partial', 'failed')"
            " GROUP BY 1, 2, 3, 4, 5, 6", (user_id,)).fetchall()}
        raw_chain = {tuple(r[:4]): tuple(r[4:]) for r in conn.execute(
            "SELECT date_trunc('minute', o.enqueued_at), c.key::int, c.value ->> 'status',"
            " coalesce(c.value ->> 'error_code', ''), count(*),"
            " sync_hist(sync_latency_bin((c.value ->> 'duration_ms')::int))"
            " FROM sync_operations AS o, jsonb_each(o.chain_results) AS c"
            " WHERE o.user_id = %s AND o.status IN ('succeeded', 'partial', 'failed') GROUP BY 1, 2, 3, 4",
            (user_id,)).fetchall()}
        users = conn.execute("SELECT sum(syncs), sum(succeeded), sum(partial), sum(failed), sum(duration_ms_sum),"
                             " sum(duration_count) FROM sync_rollup_user_day WHERE user_id = %s",
                             (user_id,)).fetchone()
        raw_users = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'partial'),"
            " count(*) FILTER (WHERE status = 'failed'), sum(duration_ms), count(duration_ms)"
            " FROM sync_operations WHERE user_id = %s AND status IN ('succeeded', 'partial', 'failed')",
            (user_id,)).fetchone()
        # A percentile read off a rollup histogram names the bin the exact one falls in.
        p95, exact = conn.execute(
            "SELECT (SELECT sync_hist_quantile(sync_hist_sum(duration_hist), 0.95) FROM sync_rollup_minute"
            "        WHERE bucket >= %s AND trigger IN ('api', 'scheduled', 'track')),"
            "       (SELECT percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms) FROM sync_operations"
            "        WHERE enqueued_at >= %s AND status IN ('succeeded', 'partial', 'failed'))",
            (since, since)).fetchone()

    assert sum(v[0] for v in raw_minute.values()) == 6  # g is not final
    assert minute == raw_minute
    assert chain == raw_chain and sum(v[0] for v in chain.values()) == 8  # a, b, d, f read two chains each; c and e none
    assert users == raw_users and users[:4] == (6, 2, 1, 3)
    assert exact is None or p95 / 2 ** 0.25 <= max(exact, 1) <= p95


#: What a percentile read off the rollups' histograms promises: the upper edge of the bin holding the
#: exact value (percentile_disc), bins four a doubling: never below it, at most 19 % above it.
BIN_RATIO = 2 ** 0.25


def _within_a_bin(read: float, values: list[int], fraction: float) -> None:
    ordered = sorted(values)
    exact = ordered[max(0, -(-int(fraction * len(ordered) * 1000) // 1000) - 1)]
    assert exact <= read <= max(exact, 1) * BIN_RATIO * (1 + 1e-9), (read, exact, fraction)


def _operations(rng, user: str, first: dt.datetime, seconds: float, count: int) -> list[dict]:
    """``count`` operations of 7 users (``user``-n) enqueued over ``seconds`` from ``first``, some not final."""
    rows = []
    for n in range(count):
        at = first + dt.timedelta(seconds=rng.uniform(0, seconds))
        status = rng.choice(["succeeded"] * 6 + ["failed", "failed", "partial", "running", "queued"])
        final = status in ("succeeded", "partial", "failed")
        chains = {str(c): {"status": "ok" if rng.random() < 0.8 else "error", "duration_ms": rng.randint(5, 3000),
                           **({} if rng.random() < 0.8 else {"error_code": rng.choice(["rpc_timeout", "rate_limited"])})}
                  for c in rng.sample([1, 10, 137], 2)} if final else {}
        rows.append({"id": uuid.uuid4(), "user_id": f"{user}-{n % 7}", "wallet_address": f"0x{n % 13:040x}",
                     "status": status, "trigger": rng.choice(["api", "scheduled"]),
                     "priority": rng.choice(["normal", "high"]), "enqueued_at": at, "attempts": rng.randint(1, 3),
                     "queue_wait_ms": rng.randint(0, 5000), "duration_ms": rng.randint(1, 20000) if final else None,
                     "finished_at": at + dt.timedelta(seconds=30) if final else None, "chain_results": chains,
                     "error_code": rng.choice(["rpc_timeout", "expired", None]) if status == "failed" else None})
    return rows


def _forget(database: str, user: str, first: dt.datetime, last: dt.datetime) -> None:
    """Remove a test's operations and its rollup rows: other tests of the run read the operations not final."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("DELETE FROM sync_operations WHERE user_id LIKE %s", (user + "%",))
        for table in ("sync_rollup_minute", "sync_rollup_chain_minute", "sync_rollup_hour", "sync_rollup_chain_hour",
                      "sync_rollup_minute_counts"):
            conn.execute(f"DELETE FROM {table} WHERE bucket >= %s AND bucket < %s", (first, last))
        for table in ("sync_rollup_day", "sync_rollup_chain_day"):
            conn.execute(f"DELETE FROM {table} WHERE bucket >= date_trunc('day', %s::timestamptz, 'UTC')"
                         " AND bucket < %s", (first, last))
        for table in ("sync_rollup_user_day", "sync_rollup_wallet_latest", "sync_rollup_failure_latest"):
            conn.execute(f"DELETE FROM {table} WHERE user_id LIKE %s", (user + "%",))


def test_every_dashboard_aggregate_agrees_with_raw_rows_over_a_window_with_part_minutes(database):
    """Every overview figure, read from the rollups (whole minutes) and the raw rows of the part minutes at
    both edges, equals the same aggregate over raw rows: counts exactly, percentiles within a bin."""
    from harness import seed
    from storage import analytics

    base = dt.datetime(2023, 5, 10, 10, 0, tzinfo=dt.timezone.utc)
    user = f"rollwin-{uuid.uuid4().hex[:8]}"
    rows = _operations(__import__("random").Random(16), user, base - dt.timedelta(minutes=2), 840, 600)
    with psycopg.connect(database, autocommit=True) as conn:
        seed.insert_operations(conn, rows)
    try:
        _compare_every_figure(analytics, rows, [
            (base + dt.timedelta(seconds=17.5), base + dt.timedelta(seconds=463.25)),  # part minutes at both ends
            (base + dt.timedelta(seconds=61), base + dt.timedelta(seconds=95)),        # inside one minute
            (base + dt.timedelta(seconds=59.9), base + dt.timedelta(seconds=120.1)),   # two part minutes only
            (base - dt.timedelta(minutes=5), base + dt.timedelta(minutes=15))],        # whole minutes only
            dt.timedelta(minutes=1))
    finally:
        _forget(database, user, base - dt.timedelta(hours=1), base + dt.timedelta(hours=1))


def test_compaction_moves_minutes_into_hours_once_and_every_figure_still_agrees(database):
    """Housekeeping's compaction rolls old minute rows into hour rows and closed days' hours into day rows,
    each exactly once (a second run moves nothing), a late operation of a compacted hour and day is still
    counted, and every overview figure over windows with part days, part hours and part minutes at their
    edges still equals the raw aggregate, before and after the per-minute counts are dropped."""
    from harness import seed
    from storage import analytics, scheduling

    base = dt.datetime(2022, 8, 1, 8, 0, tzinfo=dt.timezone.utc)
    user = f"rollcmp-{uuid.uuid4().hex[:8]}"
    rng = __import__("random").Random(17)
    rows = _operations(rng, user, base, 4 * 3600, 900)
    rows += _operations(rng, user + "-next", base + dt.timedelta(days=1, hours=3), 3 * 3600, 200)  # the next day
    windows = [(base + dt.timedelta(minutes=37, seconds=12.5), base + dt.timedelta(hours=3, minutes=4, seconds=1)),
               (base + dt.timedelta(minutes=5), base + dt.timedelta(minutes=50)),     # inside one compacted hour
               (base + dt.timedelta(minutes=59, seconds=30), base + dt.timedelta(hours=2, seconds=30)),
               (base - dt.timedelta(hours=1), base + dt.timedelta(hours=5)),          # whole hours only
               (base - dt.timedelta(days=1, minutes=17), base + dt.timedelta(days=2, seconds=3)),  # whole days
               (base + dt.timedelta(hours=2, minutes=1), base + dt.timedelta(days=1, hours=4, minutes=2))]
    with psycopg.connect(database, autocommit=True) as conn:
        seed.insert_operations(conn, rows)
    try:
        _compare_every_figure(analytics, rows, windows, dt.timedelta(hours=1))
        first = scheduling.compact_rollups(keep_minutes_h=48, max_hours=100_000)
        assert first.hours >= 7 and first.minute_rows > 0 and not first.more
        with psycopg.connect(database) as conn:
            left = conn.execute("SELECT count(*) FROM sync_rollup_minute WHERE bucket >= %s AND bucket < %s",
                                (base, base + dt.timedelta(days=2))).fetchone()[0]
            hours = conn.execute("SELECT sum(syncs) FROM sync_rollup_hour WHERE bucket >= %s AND bucket < %s",
                                 (base, base + dt.timedelta(days=2))).fetchone()[0]
        assert left == 0
        assert hours == sum(r["status"] in ("succeeded", "partial", "failed") for r in rows)
        _compare_every_figure(analytics, rows, windows, dt.timedelta(hours=1))
        assert scheduling.compact_rollups(keep_minutes_h=48, max_hours=100_000).minute_rows == 0

        assert not scheduling.compact_rollup_days(max_days=100_000).more
        assert scheduling.compact_rollup_days(max_days=100_000).days == 0  # a second run: nothing left to roll up
        with psycopg.connect(database) as conn:
            days = dict(conn.execute("SELECT bucket, sum(syncs) FROM sync_rollup_day WHERE bucket >= %s AND bucket < %s"
                                     " GROUP BY 1", (base - dt.timedelta(hours=8), base + dt.timedelta(days=2))).fetchall())
        # the first day is closed (its hours all compacted); the next one is too once later hours (other tests')
        # are compacted
        per_day = {}
        for r in rows:
            if r["status"] in ("succeeded", "partial", "failed"):
                day = r["enqueued_at"].replace(hour=0, minute=0, second=0, microsecond=0)
                per_day[day] = per_day.get(day, 0) + 1
        assert base.replace(hour=0) in days and all(n == per_day[day] for day, n in days.items())
        _compare_every_figure(analytics, rows, windows, dt.timedelta(hours=1))

        late = _operations(rng, user, base + dt.timedelta(minutes=20), 7200, 40)  # finished after compaction
        with psycopg.connect(database, autocommit=True) as conn:
            seed.insert_operations(conn, late)
        _compare_every_figure(analytics, rows + late, windows, dt.timedelta(hours=1))
        assert scheduling.compact_rollups(keep_minutes_h=48, max_hours=100_000).minute_rows > 0
        _compare_every_figure(analytics, rows + late, windows, dt.timedelta(hours=1))

        scheduling.trim_rollup_counts(keep_counts_h=26)  # the sub-hour counts of those hours gone: hours read
        _compare_every_figure(analytics, rows + late, windows, dt.timedelta(hours=1))
    finally:
        _forget(database, user, base - dt.timedelta(hours=1), base + dt.timedelta(days=2))


def _compare_every_figure(analytics, rows: list[dict], windows: list[tuple[dt.datetime, dt.datetime]],
                          bucket: dt.timedelta) -> None:
    finals = ("succeeded", "partial", "failed")
    origin = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    for start, end in windows:
        inside = [r for r in rows if start <= r["enqueued_at"] < end]
        done = [r for r in inside if r["status"] in finals]
        window = analytics.Window(start, end, bucket)

        series = analytics.throughput(window)
        expected_series = {}
        for r in inside:
            at = origin + (r["enqueued_at"] - origin) // bucket * bucket
            expected_series[(at, r["status"])] = expected_series.get((at, r["status"]), 0) + 1
        got = {(b.to_pydatetime(), st): n for b, st, n in zip(series["bucket"], series["status"], series["syncs"]) if n}
        assert got == expected_series

        k = analytics.kpis(window).iloc[0]
        assert k["syncs"] == len(inside)
        for status in finals:
            assert k[status] == sum(r["status"] == status for r in inside)
        assert k["active"] == len(inside) - len(done)
        _within_a_bin(k["duration_p50_ms"], [r["duration_ms"] for r in done], 0.5)
        _within_a_bin(k["duration_p95_ms"], [r["duration_ms"] for r in done], 0.95)
        _within_a_bin(k["queue_wait_p95_ms"], [r["queue_wait_ms"] for r in done], 0.95)

        hist = analytics.duration_histogram(window)
        assert hist["syncs"].sum() == len(done)
        for record in hist.to_dict("records"):
            assert record["syncs"] == sum(
                r["status"] == record["status"] and record["lower_ms"] <= r["duration_ms"]
                and (record["upper_ms"] is None or r["duration_ms"] < record["upper_ms"]) for r in done), record

        failures = analytics.failures_by_error(window).set_index("error_code")
        failed = [r for r in done if r["status"] == "failed"]
        expected = {}
        for r in failed:
            expected.setdefault(r["error_code"] or "unknown", []).append(r)
        assert failures["failures"].to_dict() == {code: len(rs) for code, rs in expected.items()}
        assert failures["users"].to_dict() == {code: len({r["user_id"] for r in rs}) for code, rs in expected.items()}
        for code, rs in expected.items():
            assert failures.loc[code, "last_seen"] == max(r["enqueued_at"] for r in rs)

        wallets = analytics.wallets_synced(window).iloc[0]
        succeeded = {(r["user_id"], r["wallet_address"]) for r in done if r["status"] == "succeeded"}
        assert (wallets["wallets_synced"], wallets["users_synced"]) == (len(succeeded), len({u for u, _w in succeeded}))

        by_tp = analytics.by_trigger_priority(window)
        assert by_tp["syncs"].sum() == len(inside)
        for record in by_tp.to_dict("records"):
            part = [r for r in inside if (r["trigger"], r["priority"]) == (record["trigger"], record["priority"])]
            assert record["syncs"] == len(part)
            assert record["succeeded"] == sum(r["status"] == "succeeded" for r in part)
            assert record["failed"] == sum(r["status"] == "failed" for r in part)
            waits = [r["queue_wait_ms"] for r in part if r["status"] in finals]
            _within_a_bin(record["queue_wait_p50_ms"], waits, 0.5)
            _within_a_bin(record["queue_wait_p95_ms"], waits, 0.95)

        chains = analytics.chains(window).set_index("chain_id")
        reads = [(int(c), v) for r in done for c, v in r["chain_results"].items()]
        assert set(chains.index) == {c for c, _v in reads}
        for chain_id, record in chains.iterrows():
            mine = [v for c, v in reads if c == chain_id]
            ok = [v["duration_ms"] for v in mine if v["status"] == "ok"]
            assert record["reads"] == len(mine)
            assert record["ok"] == len(ok) and record["errors"] == len(mine) - len(ok)
            _within_a_bin(record["latency_p50_ms"], ok, 0.5)
            _within_a_bin(record["latency_p95_ms"], ok, 0.95)
            codes = [v["error_code"] for v in mine if v["status"] == "error" and v.get("error_code")]
            top = max((codes.count(c) for c in codes), default=0)
            assert record["top_error"] == min(c for c in codes if codes.count(c) == top) if codes \
                else record["top_error"] is None or record["top_error"] != record["top_error"]
