"""What a deployment keeping N wallets fresh every M minutes needs, from measured per-sync costs.

    .venv/bin/python -m bench.capacity --wallets 3000000 --every-minutes 15 [--costs docs/capacity-costs.json]
                                       [--headroom 0.6] [--retention-days 30]

The costs are what ``bench.capacity_measure`` wrote (the committed measurement of docs/capacity.md by
default; per sync: Redis commands and bytes, PostgreSQL
transactions, rows and WAL bytes, CPU seconds of the worker, Redis and PostgreSQL).  A core is counted
busy up to ``--headroom`` (bursts, retries and the dashboard need the rest).  Prints the rates and the
cores, and where one Redis, one PostgreSQL and one worker core saturate.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: A sync_operations row with its indexes (measured: docs/capacity.md), and a rollup minute's rows.
AUDIT_ROW_BYTES = 1200


def plan(costs: dict, *, wallets: int, every_minutes: float, headroom: float, retention_days: int) -> dict:
    rate = wallets / (every_minutes * 60)
    cpu = costs["cpu_s_per_sync"]
    per_core = {part: headroom / seconds for part, seconds in cpu.items() if seconds > 0}
    return {
        "syncs_per_s": round(rate, 1),
        "syncs_per_day": round(rate * 86400),
        "redis_commands_per_s": round(rate * costs["redis_commands_per_sync"]),
        "redis_mbit_per_s": round(rate * (costs["redis_bytes_in_per_sync"] + costs["redis_bytes_out_per_sync"]) * 8 / 1e6, 1),
        "pg_transactions_per_s": round(rate * costs["pg_transactions_per_sync"]),
        "pg_rows_written_per_s": round(rate * costs["pg_rows_written_per_sync"]),
        "pg_wal_mb_per_s": round(rate * costs["pg_wal_bytes_per_sync"] / 1e6, 2),
        "pg_wal_gb_per_day": round(rate * costs["pg_wal_bytes_per_sync"] * 86400 / 1e9, 1),
        "audit_trail_gb_kept": round(rate * 86400 * retention_days * AUDIT_ROW_BYTES / 1e9, 1),
        "one_core_saturates_at_syncs_per_s": {part: round(v) for part, v in per_core.items()},
        "cores_needed": {part: math.ceil(rate / v) for part, v in per_core.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wallets", type=int, required=True)
    parser.add_argument("--every-minutes", type=float, required=True)
    parser.add_argument("--costs", default=str(ROOT / "docs" / "capacity-costs.json"))
    parser.add_argument("--headroom", type=float, default=0.6, help="fraction of a core counted usable")
    parser.add_argument("--retention-days", type=int, default=30)
    args = parser.parse_args()
    if args.wallets < 1 or args.every_minutes <= 0 or not 0 < args.headroom <= 1:
        parser.error("--wallets >= 1, --every-minutes > 0 and 0 < --headroom <= 1")
    costs = json.loads(Path(args.costs).read_text())
    result = plan(costs, wallets=args.wallets, every_minutes=args.every_minutes, headroom=args.headroom,
                  retention_days=args.retention_days)
    print(f"{args.wallets:,} wallets every {args.every_minutes:g} minutes (costs: {args.costs})")
    width = max(map(len, result))
    for key, value in result.items():
        print(f"  {key:<{width}}  {value}")


if __name__ == "__main__":
    main()
