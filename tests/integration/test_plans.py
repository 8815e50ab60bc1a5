"""Statements planned once per connection, not at every batch.

PostgreSQL's plan cache chose a custom plan for every call of two of sync_rollup_add's statements (each
batch's array makes its own estimate): half of the function's time went to planning them
(``bench.pg_statements``).  Its statements read only the batch's array and the rollups' keys, so one
generic plan fits every batch.

The attempts' own writes had the same cost, and a generic plan did not fit them while their partitions'
bounds were parameters: it could prune no partition, and chose the ``enqueued_at`` index.  With the
bounds written in as the week's literals, the generic plan is the custom one (docs/performance.md)."""

from __future__ import annotations

import re

import psycopg
import pytest
from psycopg import sql

import settings
from actors.ids import uuid7_strings
from storage import migrate, operations, pool

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
                     " SELECT gen_random_uuid(), 'u' || i %% 100, '0x' || lpad(to_hex(i), 40, '0'), '{1}', 'normal',"
                     " 'api', 'simulated', 'succeeded', %s::timestamptz + i * interval '100 ms' FROM generate_series(1, 5000) i",
                     (week[0],))
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
