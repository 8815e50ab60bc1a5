"""API and CLI reads go to DASHBOARD_DATABASE_URL (a replica) when it is set; a sync the replica does not have
yet is read from the primary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import psycopg
import pytest

from storage import migrate

pytestmark = pytest.mark.integration

READS = """
import json, sys
import actors
from storage import operating
only_replica, only_primary, wallet = sys.argv[1:]
print(json.dumps({
    "replica": (actors.get_sync(only_replica) or {}).get("user_id"),
    "primary": (actors.get_sync(only_primary) or {}).get("user_id"),
    "wallet_syncs": [r["id"] for r in operating.wallet_syncs(wallet)],
}))
"""

INSERT = ("INSERT INTO sync_operations (id, user_id, wallet_address, chain_ids, priority, trigger, provider)"
          " VALUES (%s, %s, %s, '{1}', 'normal', 'api', 'simulated')")


@pytest.fixture
def replica(empty_database: str) -> str:
    """A second database standing for a replica: the same schema, rows of its own."""
    migrate.apply_schema(empty_database, connect_timeout=5)
    return empty_database


def test_reads_use_the_read_endpoint_and_fall_back_to_the_primary_for_a_missing_sync(database, replica, db_conn):
    wallet = "0x" + uuid.uuid4().hex + "1" * 8
    only_replica, only_primary = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(replica) as conn:
        conn.execute(INSERT, (only_replica, "replica-user", wallet))
    db_conn.execute(INSERT, (only_primary, "primary-user", wallet))

    done = subprocess.run([sys.executable, "-c", READS, only_replica, only_primary, wallet],
                          env={**os.environ, "DATABASE_URL": database, "DASHBOARD_DATABASE_URL": replica},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"replica": "replica-user", "primary": "primary-user", "wallet_syncs": [only_replica]}
