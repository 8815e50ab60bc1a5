"""bench.capacity turns measured per-sync costs into a deployment's rates and cores."""

from __future__ import annotations

from bench.capacity import plan

COSTS = {"redis_commands_per_sync": 40, "redis_bytes_in_per_sync": 3000, "redis_bytes_out_per_sync": 2000,
         "pg_transactions_per_sync": 0.5, "pg_rows_written_per_sync": 20, "pg_wal_bytes_per_sync": 20000,
         "cpu_s_per_sync": {"worker": 0.004, "redis": 0.0005, "postgres": 0.002}}


def test_a_million_wallets_every_ten_minutes():
    result = plan(COSTS, wallets=1_200_000, every_minutes=10, headroom=0.5, retention_days=30)
    assert result["syncs_per_s"] == 2000
    assert result["redis_commands_per_s"] == 80_000
    assert result["redis_mbit_per_s"] == 80.0
    assert result["pg_wal_mb_per_s"] == 40.0
    assert result["one_core_saturates_at_syncs_per_s"] == {"worker": 125, "redis": 1000, "postgres": 250}
    assert result["cores_needed"] == {"worker": 16, "redis": 2, "postgres": 8}
