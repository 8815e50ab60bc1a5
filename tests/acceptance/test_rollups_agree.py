"""Guarantee: after a run with retries, duplicate deliveries, a worker killed with SIGKILL mid-job and the
reconciler's re-sends, every rollup figure equals the same aggregate over the raw rows: each operation
counted once, when it became final."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
import uuid

import psycopg
import pytest

import actors
import actors.worker
from tests.waiting import wait_for, wait_until

pytestmark = pytest.mark.acceptance

FINAL = "('succeeded', 'partial', 'failed')"
ROLLUPS = {
    "minute": ("SELECT bucket, status, trigger, priority, provider, error_code, sum(syncs), sum(attempts),"
               " sum(requeues), sync_hist_sum(duration_hist), sync_hist_sum(queue_wait_hist)"
               " FROM sync_rollup_minute GROUP BY 1, 2, 3, 4, 5, 6", 6),
    "chain": ("SELECT bucket, chain_id, status, error_code, sum(reads), sync_hist_sum(duration_hist)"
              " FROM sync_rollup_chain_minute GROUP BY 1, 2, 3, 4", 4),
    "user": ("SELECT user_id, day, sum(syncs), sum(succeeded), sum(partial), sum(failed), sum(duration_ms_sum),"
             " sum(duration_count) FROM sync_rollup_user_day GROUP BY 1, 2", 2),
}
# The same figures over the raw rows of the operations that became final since %(since)s.
RAW = {
    "minute": ("SELECT date_trunc('minute', enqueued_at), status, trigger, priority, provider,"
               " coalesce(error_code, ''), count(*), sum(attempts), sum(requeues),"
               " sync_hist(sync_latency_bin(duration_ms)), sync_hist(sync_latency_bin(queue_wait_ms))"
               f" FROM sync_operations WHERE finished_at >= %(since)s AND status IN {FINAL} GROUP BY 1, 2, 3, 4, 5, 6"),
    "chain": ("SELECT date_trunc('minute', o.enqueued_at), c.key::int, coalesce(c.value ->> 'status', 'unknown'),"
              " coalesce(c.value ->> 'error_code', ''), count(*),"
              " sync_hist(sync_latency_bin((c.value ->> 'duration_ms')::int))"
              " FROM sync_operations AS o, jsonb_each(o.chain_results) AS c"
              f" WHERE o.finished_at >= %(since)s AND o.status IN {FINAL} AND c.key ~ '^[0-9]+$' GROUP BY 1, 2, 3, 4"),
    "user": ("SELECT user_id, date_trunc('day', enqueued_at, 'UTC'), count(*),"
             " count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'partial'),"
             " count(*) FILTER (WHERE status = 'failed'), coalesce(sum(duration_ms), 0), count(duration_ms)"
             f" FROM sync_operations WHERE finished_at >= %(since)s AND status IN {FINAL} GROUP BY 1, 2"),
}


def snapshot(conn) -> dict:
    return {name: {tuple(r[:keys]): tuple(r[keys:]) for r in conn.execute(sql).fetchall()}
            for name, (sql, keys) in ROLLUPS.items()}


def added(after: dict, before: dict) -> dict:
    out = {}
    for key, values in after.items():
        old = before.get(key)
        diff = tuple(v if old is None else ([a - b for a, b in zip(v, o)] if isinstance(v, list) else v - o)
                     for v, o in zip(values, old or values))
        if old is None or any((any(d) if isinstance(d, list) else d) for d in diff):
            out[key] = diff
    return out


def test_rollups_equal_raw_aggregates_after_retries_redeliveries_a_kill_and_reconciler_resends(
        start_worker, user_id, database):
    env = {"SYNC_LEASE_MS": "3000", "RECONCILE_INTERVAL_S": "1", "BROKER_HEARTBEAT_TIMEOUT_MS": "5000",
           "SIMULATED_LATENCY_MS": "1500", "SIMULATED_FAILURE_RATE": "0.3", "SYNC_MAX_ATTEMPTS": "3"}
    with psycopg.connect(database, autocommit=True) as conn:
        since = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        before = snapshot(conn)
    doomed = start_worker(threads=4, env=env)
    wallets = ["0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8] for _ in range(16)]
    ids = actors.request_syncs([{"user_id": user_id, "wallet_address": w, "chain_ids": [1, 10]} for w in wallets])
    actor = actors.worker.broker.get_actor("sync_portfolio")
    actors.worker.broker.enqueue_batch([actor.message(i) for i in ids[:4]])  # delivered twice
    victim = doomed.children()[0]
    wait_until(lambda: any(actors.get_sync(i)["status"] == "running"
                           and actors.get_sync(i)["worker_id"].endswith(f":{victim}") for i in ids),
               20, "the first worker never ran anything")
    doomed.proc.send_signal(signal.SIGKILL)
    os.kill(victim, signal.SIGKILL)
    start_worker(threads=8, env=env)
    final = [wait_for(i, timeout=90) for i in ids]
    actors.worker.broker.enqueue_batch([actor.message(i) for i in ids[4:8]])  # after they finished
    time.sleep(2.5)

    with psycopg.connect(database, autocommit=True) as conn:
        after = snapshot(conn)
        raw = {name: {tuple(r[:ROLLUPS[name][1]]): tuple(r[ROLLUPS[name][1]:])
                      for r in conn.execute(sql, {"since": since}).fetchall()} for name, sql in RAW.items()}
    statuses = {op["status"] for op in final}
    assert statuses <= {"succeeded", "partial", "failed"} and sum(op["attempts"] for op in final) > len(final)
    assert any(op["requeues"] for op in final) or any(op["attempts"] >= 2 for op in final)
    for name in ROLLUPS:
        assert added(after[name], before[name]) == raw[name], name
    mine = [v for k, v in raw["user"].items() if k[0] == user_id]
    assert sum(v[0] for v in mine) == len(ids)
    # The users page's spans hold each of this user's final operations once too (all of today: in every span).
    with psycopg.connect(database) as conn:
        spans = {r[0]: tuple(r[1:]) for r in conn.execute(
            "SELECT span_days, syncs, succeeded, partial, failed, duration_ms_sum, duration_count"
            " FROM sync_rollup_user_since WHERE user_id = %s", (user_id,)).fetchall()}
    assert spans == {span: tuple(sum(v[n] for v in mine) for n in range(6)) for span in (1, 7, 30)}
