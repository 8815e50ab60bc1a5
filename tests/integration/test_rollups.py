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
