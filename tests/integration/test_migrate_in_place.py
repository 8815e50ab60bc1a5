"""``python -m storage.migrate`` brings a database of the previous release up to date in place, idempotently:
the block numbers of reads, and holdings whose decimals are unknown."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

pytestmark = pytest.mark.integration

#: The two tables as the previous release created them (before block numbers and unknown decimals).
PREVIOUS_TABLES = """
CREATE TABLE holdings (
    user_id text NOT NULL, wallet_address text NOT NULL, chain_id int NOT NULL,
    token_address text NOT NULL CHECK (token_address ~ '^0x[0-9a-f]{40}$'),
    symbol text NOT NULL, name text NOT NULL,
    decimals int NOT NULL CHECK (decimals BETWEEN 0 AND 255),
    raw_balance numeric(78,0) NOT NULL CHECK (raw_balance >= 0), balance numeric NOT NULL,
    price_usd numeric, value_usd numeric, price_source text, priced_at timestamptz,
    provider text NOT NULL, operation_id uuid NOT NULL, as_of timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, wallet_address, chain_id, token_address)
);
CREATE TABLE wallet_chain_snapshots (
    user_id text NOT NULL, wallet_address text NOT NULL, chain_id int NOT NULL,
    as_of timestamptz NOT NULL, operation_id uuid NOT NULL,
    PRIMARY KEY (user_id, wallet_address, chain_id)
);
INSERT INTO holdings VALUES ('u', '0x' || repeat('a', 40), 1, '0x' || repeat('b', 40), 'T', 'Token', 6,
                             1234567, 1.234567, NULL, NULL, NULL, NULL, 'rpc', gen_random_uuid(), now());
INSERT INTO wallet_chain_snapshots VALUES ('u', '0x' || repeat('a', 40), 1, now(), gen_random_uuid());
"""


@pytest.fixture()
def previous_database(empty_database: str) -> str:
    with psycopg.connect(empty_database) as conn:
        conn.execute(PREVIOUS_TABLES)
    return empty_database


def test_migrate_adds_block_numbers_and_unknown_decimals_in_place_twice(previous_database: str) -> None:
    for _ in range(2):  # every deploy runs it: the second run must change nothing and fail nothing
        done = subprocess.run([sys.executable, "-m", "storage.migrate"], capture_output=True, text=True,
                              env={**os.environ, "DATABASE_URL": previous_database}, timeout=60)
        assert done.returncode == 0, done.stderr

    with psycopg.connect(previous_database) as conn:
        columns = {(table, column): (kind, nullable) for table, column, kind, nullable in conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_name IN ('holdings', 'wallet_chain_snapshots')")}
        row = conn.execute("SELECT decimals, raw_balance, block_number FROM holdings").fetchone()
        snapshot = conn.execute("SELECT block_number FROM wallet_chain_snapshots").fetchone()
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE holdings SET block_number = -1")
    assert columns[("holdings", "block_number")] == ("bigint", "YES")
    assert columns[("wallet_chain_snapshots", "block_number")] == ("bigint", "YES")
    assert columns[("holdings", "decimals")][1] == columns[("holdings", "balance")][1] == "YES"
    assert row == (6, 1234567, None) and snapshot == (None,)  # existing rows kept, with no block
