"""``python -m storage.migrate`` turns the previous release's plain ``sync_operations`` into a partitioned
table in place: every row kept (the old table becomes the first partition), ids still found, twice harmless."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg
import pytest


pytestmark = pytest.mark.integration

#: ``sync_operations`` and its indexes as the previous release created them (before partitioning and
#: before ``requeues``, so the migration also adds a column to the table it attaches).
PREVIOUS_TABLE = """
CREATE TABLE sync_operations (
    id uuid PRIMARY KEY,
    user_id text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
    wallet_address text NOT NULL CHECK (wallet_address ~ '^0x[0-9a-f]{40}$'),
    chain_ids int[] NOT NULL CHECK (cardinality(chain_ids) > 0),
    priority text NOT NULL CHECK (priority IN ('high', 'normal', 'low')),
    trigger text NOT NULL CHECK (length(trigger) BETWEEN 1 AND 32),
    provider text NOT NULL,
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'retrying', 'succeeded', 'failed')),
    attempts int NOT NULL DEFAULT 0,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz, finished_at timestamptz, queue_wait_ms int, duration_ms int,
    holdings_count int, total_value_usd numeric, unpriced_count int,
    chain_results jsonb NOT NULL DEFAULT '{}'::jsonb,
    error_code text, error_message text, worker_id text, message_id text
);
CREATE INDEX sync_operations_enqueued_at_idx ON sync_operations USING brin (enqueued_at);
CREATE INDEX sync_operations_user_idx ON sync_operations (user_id, enqueued_at DESC);
CREATE INDEX sync_operations_wallet_idx ON sync_operations (wallet_address, enqueued_at DESC);
CREATE INDEX sync_operations_status_idx ON sync_operations (status, enqueued_at DESC);
CREATE INDEX sync_operations_active_idx ON sync_operations (enqueued_at)
    WHERE status IN ('queued', 'running', 'retrying');
INSERT INTO sync_operations (id, user_id, wallet_address, chain_ids, priority, trigger, provider, status,
                             enqueued_at, finished_at, duration_ms)
SELECT gen_random_uuid(), 'user-' || (n % 50), '0x' || lpad(to_hex(n % 97), 40, '0'), '{1,10}',
       (ARRAY['high', 'normal', 'low'])[1 + n % 3], 'api', 'simulated',
       CASE WHEN n % 10 = 0 THEN 'queued' ELSE 'succeeded' END,
       now() - n * interval '7 minutes', now() - n * interval '7 minutes' + interval '2 seconds', 2000
FROM generate_series(0, 5999) AS n;  -- four weeks of history, some of it unfinished
"""


@pytest.fixture
def previous_database(empty_database: str) -> str:
    with psycopg.connect(empty_database) as conn:
        conn.execute(PREVIOUS_TABLE)
    return empty_database


def run_release(url: str) -> None:
    done = subprocess.run([sys.executable, "-m", "storage.migrate"], env={**os.environ, "DATABASE_URL": url},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def snapshot(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT id, user_id, wallet_address, chain_ids, priority, status, enqueued_at, finished_at,"
                        " duration_ms, chain_results FROM sync_operations ORDER BY id").fetchall()


def test_release_partitions_the_previous_table_in_place_without_losing_a_row(previous_database: str) -> None:
    with psycopg.connect(previous_database) as conn:
        before = snapshot(conn)
        some_id = before[1234][0]
    assert len(before) == 6000

    for _ in range(2):  # every deploy runs it: the second run changes nothing and fails nothing
        run_release(previous_database)

    with psycopg.connect(previous_database) as conn:
        assert snapshot(conn) == before
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'sync_operations'").fetchone()[0]
        assert kind == "p"
        parts = conn.execute("SELECT partition::text, upper_bound FROM sync_operations_partition_bounds()"
                             " ORDER BY upper_bound").fetchall()
        # The old table is the first partition, holding every old row; weekly ones follow it, ahead of now.
        assert parts[0][0] == "sync_operations_legacy"
        assert conn.execute("SELECT count(*) FROM ONLY sync_operations_legacy").fetchone()[0] == 6000
        assert len(parts) >= 3
        assert parts[-1][1] > conn.execute("SELECT now() + interval '14 days'").fetchone()[0]
        # The partitioned table's indexes reach the old rows too: an id is found by its index, new
        # rows land in the weekly partitions, and the widened status check and new column apply to all.
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT * FROM sync_operations WHERE id = %s", (some_id,)).fetchall())
        assert "Seq Scan" not in plan and "sync_operations_legacy" in plan
        assert conn.execute("SELECT requeues FROM sync_operations WHERE id = %s", (some_id,)).fetchone() == (0,)
        conn.execute("UPDATE sync_operations SET status = 'partial' WHERE id = %s", (some_id,))
        new_id = uuid.uuid4()
        conn.execute("INSERT INTO sync_operations (id, user_id, wallet_address, chain_ids, priority, trigger, provider,"
                     " enqueued_at) VALUES (%s, 'u', %s, '{1}', 'low', 'api', 'simulated', now() + interval '8 days')",
                     (new_id, "0x" + "ab" * 20))
        assert conn.execute("SELECT tableoid::regclass::text FROM sync_operations WHERE id = %s",
                            (new_id,)).fetchone()[0].startswith("sync_operations_w")
