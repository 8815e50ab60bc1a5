"""``python -m storage.migrate`` widens an existing database's status check to ``partial`` in place, once."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg
import pytest

from storage import migrate

pytestmark = pytest.mark.integration

OLD_CHECK = "CHECK (status IN ('queued', 'running', 'retrying', 'succeeded', 'failed'))"


@pytest.fixture
def old_database(empty_database: str) -> str:
    """A database of its own, made as before the ``partial`` status: the old check, and one finished row."""
    url = empty_database
    migrate.apply_schema(url, connect_timeout=5)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE sync_operations DROP CONSTRAINT sync_operations_status_check")
        conn.execute(f"ALTER TABLE sync_operations ADD CONSTRAINT sync_operations_status_check {OLD_CHECK}")
        conn.execute("INSERT INTO sync_operations (id, user_id, wallet_address, chain_ids, priority, trigger,"
                     " provider, status) VALUES (%s, 'u', %s, '{1}', 'normal', 'api', 'simulated', 'succeeded')",
                     (uuid.uuid4(), "0x" + "ab" * 20))
    return url


def run_migrate(url: str) -> None:
    done = subprocess.run([sys.executable, "-m", "storage.migrate"], env={**os.environ, "DATABASE_URL": url},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def status_check(url: str) -> tuple[int, str]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT oid, pg_get_constraintdef(oid) FROM pg_constraint "
                            "WHERE conname = 'sync_operations_status_check'").fetchone()


def test_the_status_check_is_widened_once_and_rows_kept(old_database: str) -> None:
    with psycopg.connect(old_database) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE sync_operations SET status = 'partial'")

    run_migrate(old_database)
    oid, definition = status_check(old_database)
    assert "'partial'" in definition
    with psycopg.connect(old_database) as conn:
        conn.execute("UPDATE sync_operations SET status = 'partial'")
        assert conn.execute("SELECT count(*) FROM sync_operations WHERE status = 'partial'").fetchone()[0] == 1
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE sync_operations SET status = 'half-done'")

    run_migrate(old_database)  # idempotent: the widened check is left as it is, not made again
    assert status_check(old_database) == (oid, definition)
