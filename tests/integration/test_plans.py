"""The rollup function's statements are planned once per connection, not at every finishing batch.

PostgreSQL's plan cache chose a custom plan for every call of two of sync_rollup_add's statements (each
batch's array makes its own estimate): half of the function's time went to planning them
(``bench.pg_statements``).  Its statements read only the batch's array and the rollups' keys, so one
generic plan fits every batch.  The attempts' own writes keep PostgreSQL's choice: a generic plan is made
once, at whatever size the tables had, and cannot see a batch's bounds (docs/performance.md)."""

from __future__ import annotations

import pytest

from storage import pool

pytestmark = pytest.mark.integration


def test_the_rollup_function_plans_its_statements_generically(database):
    with pool.get_pool().connection() as conn:
        config = conn.execute("SELECT proconfig FROM pg_proc WHERE proname = 'sync_rollup_add'").fetchone()["proconfig"]
    assert "plan_cache_mode=force_generic_plan" in config

