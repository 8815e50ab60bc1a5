"""Statements planned once per connection, not at every batch.

PostgreSQL's plan cache chose a custom plan for every call of two of sync_rollup_add's statements (each
batch's array makes its own estimate): half of the function's time went to planning them
(``bench.pg_statements``).  Its statements read only the batch's array and the rollups' keys, so one
generic plan fits every batch.

The attempts' own writes had the same cost, and a generic plan did not fit them while their partitions'
bounds were parameters: it could prune no partition, and chose the ``enqueued_at`` index.  With the
bounds written in as the week's literals, the generic plan is the custom one (docs/performance.md)."""

from __future__ import annotations

import contextlib
import re
import uuid

import psycopg
import pytest
from psycopg import sql

import settings
from actors.ids import uuid7_strings
from storage import migrate, operations, pool
from storage.operations import NewOperation
from tests.integration.test_rollups import outcome

pytestmark = pytest.mark.integration


def test_the_rollup_function_plans_its_statements_generically(database):
    with pool.get_pool().connection() as conn:
        config = conn.execute("SELECT proconfig FROM pg_proc WHERE proname = 'sync_rollup_add'").fetchone()["proconfig"]
    assert "plan_cache_mode=force_generic_plan" in config


def test_the_attempts_writes_keep_one_generic_plan_of_the_weeks_partitions_reading_them_by_key(empty_database):
    migrate.apply_schema(empty_database, connect_timeout=5)
    ids = uuid7_strings(2)
    week = operations.id_time_bound(ids)
    with psycopg.connect(empty_database, autocommit=True) as conn:
        # A week of operations, and the statistics autovacuum keeps of them.  (Without statistics, or with
        # a few rows only, PostgreSQL may read a new partition by time: cheap at that size, and the plan is
        # remade within ATTEMPTS_PLAN_LIFETIME_S.)
        conn.execute("INSERT INTO sync_operations (id, user_id, wallet_address, chain_ids, priority, trigger,"
                     " provider, status, enqueued_at)"
                     " SELECT gen_random_uuid(), 'u' || i % 100, '0x' || lpad(to_hex(i), 40, '0'), '{1}', 'normal',"
                     " 'api', 'simulated', 'succeeded', date_trunc('week', now(), 'UTC') + i * interval '100 ms'"
                     " FROM generate_series(1, 5000) i")  # this week's partition: the only one a new schema has
        conn.execute("ANALYZE")
    with psycopg.connect(empty_database, **pool.attempts_connection_kwargs(settings.get())) as conn:
        assert conn.execute("SHOW plan_cache_mode").fetchone()["plan_cache_mode"] == "force_generic_plan"
        # The statement as a worker sends it, prepared by hand: EXPLAIN EXECUTE shows the plan kept for it.
        text = operations.bounded("start_attempts", week).as_string(conn)
        text = text.replace("%(ids)s", "$1").replace("%(worker_ids)s", "$2").replace("%(message_ids)s", "$3")
        conn.execute("PREPARE start_attempts_probe(uuid[], text[], text[]) AS " + text)
        plan = "\n".join(row["QUERY PLAN"] for row in conn.execute(sql.SQL(  # a utility statement: no parameters
            "EXPLAIN (COSTS OFF) EXECUTE start_attempts_probe({}, '{{w,w}}', '{{m,m}}')").format(
                sql.Literal("{" + ",".join(ids) + "}"))))
        kept = conn.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                            " WHERE name = 'start_attempts_probe'").fetchone()
        partitions = {row["partition"] for row in conn.execute(
            "SELECT partition::text FROM sync_operations_partition_bounds()"
            " WHERE lower_bound >= %s::timestamptz AND upper_bound <= %s::timestamptz", week)}
    # Planned before it ran: the partitions of the bound's weeks alone, each read by its key.
    assert kept == {"generic_plans": 1, "custom_plans": 0}
    assert partitions and set(re.findall(r"sync_operations_w\d{8}", plan)) == partitions, plan
    used = set(re.findall(r"Index Scan (?:on|using) (\S+)", plan))
    assert {name for name in used if name.startswith("sync_operations")} == {f"{p}_pkey" for p in partitions}, plan


def test_the_workers_own_starts_and_finishes_run_as_prepared_statements_on_generic_plans(database, user_id):
    ids = uuid7_strings(2)
    operations.insert_operations([NewOperation(op_id, user_id, "0x" + uuid.uuid4().hex + "0" * 8, (1,), "normal",
                                               "api") for op_id in ids], provider="simulated")
    for op_id in ids:
        assert operations.start_attempt(op_id, worker_id="w", message_id="m")
        assert operations.finish_attempt(op_id, outcome("succeeded"))
    # What every connection of the attempts' pool keeps: all of them held at once, so each is asked.
    attempts_pool, kept = pool.get_attempts_pool(), []
    with contextlib.ExitStack() as held:
        for _ in range(pool.ATTEMPTS_POOL_MAX):
            conn = held.enter_context(attempts_pool.connection())
            kept += conn.execute("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements").fetchall()
    plans = {name: [row for row in kept if marker in row["statement"]]
             for name, marker in (("start", "SET status = 'running'"), ("finish", "End a batch of attempts"))}
    # Both calls of each statement ran prepared, on generic plans; none was planned for its values.
    for name, rows in plans.items():
        assert rows and sum(r["generic_plans"] for r in rows) >= 2 and not any(r["custom_plans"] for r in rows), kept
