"""``python -m storage.migrate`` widens an existing database's status check to ``partial`` in place, once."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from tests.integration.test_migrate_partitions import PREVIOUS_TABLE

pytestmark = pytest.mark.integration


@pytest.fixture
def old_database(empty_database: str) -> str:
    """A database as the release before the ``partial`` status made it (its check without it), with rows."""
    with psycopg.connect(empty_database) as conn:
        conn.execute(PREVIOUS_TABLE)
    return empty_database


def run_migrate(url: str) -> None:
    done = subprocess.run([sys.executable, "-m", "storage.migrate"], env={**os.environ, "DATABASE_URL": url},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def status_check(url: str) -> tuple[int, str]:
    """The status check of the table (each partition holds a copy of it under the same name)."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT oid, pg_get_constraintdef(oid) FROM pg_constraint "
                            "WHERE conname = 'sync_operations_status_check' "
                            "AND conrelid = 'sync_operations'::regclass").fetchone()


def test_the_status_check_is_widened_once_and_rows_kept(old_database: str) -> None:
    with psycopg.connect(old_database) as conn:
        one, rows = conn.execute("SELECT min(id::text), count(*) FROM sync_operations").fetchone()
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE sync_operations SET status = 'partial' WHERE id = %s", (one,))

    run_migrate(old_database)
    oid, definition = status_check(old_database)
    assert "'partial'" in definition
    with psycopg.connect(old_database) as conn:
        assert conn.execute("SELECT count(*) FROM sync_operations").fetchone()[0] == rows
        conn.execute("UPDATE sync_operations SET status = 'partial' WHERE id = %s", (one,))
        assert conn.execute("SELECT count(*) FROM sync_operations WHERE status = 'partial'").fetchone()[0] == 1
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE sync_operations SET status = 'half-done' WHERE id = %s", (one,))

    run_migrate(old_database)  # idempotent: the widened check is left as it is, not made again
    assert status_check(old_database) == (oid, definition)
