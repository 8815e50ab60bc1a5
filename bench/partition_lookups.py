"""What a lookup by id costs on the partitioned audit trail, bounded to its id's weeks and not, against the
same rows in a plain table.

    .venv/bin/python -m bench.partition_lookups [--rows 2000] [--calls 1000] [--rounds 3] [--weeks-past 4]

The key is ``(id, enqueued_at)``: a lookup by id alone plans and probes every partition.  Bounded by the
weeks of the time in its id (UUIDv7, ``enqueued_at`` within a day of it: storage.operations), PostgreSQL
prunes the others at plan time (docs/capacity.md).  This runs ``start_attempts``, the statement every attempt begins
with, one operation at a time, three ways: on ``sync_operations`` unbounded and bounded, and on a plain
copy of it with the same indexes, interleaved, in a throwaway database.  The partitions are those a
production database keeps: this week's and three ahead (the schema's), and ``--weeks-past`` weeks of
history created as housekeeping creates weeks (``sync_operations_add_partitions``), each holding
``--rows`` finished operations.  It prints the wall time per call and the median of one ``EXPLAIN
ANALYZE`` of each a round (planning and execution time, which the machine's load moves less).  The plain
copy has the indexes but not the trigger (``LIKE`` copies none): its execution leaves out the rollup
trigger's statement-level pass, which the partitioned statements both pay.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
import uuid
from collections.abc import Callable

import psycopg
from psycopg import sql

from bench import sandbox


def _insert(conn: psycopg.Connection, ids: list[str], weeks_ago: int = 0) -> None:
    conn.execute("INSERT INTO sync_operations (id, user_id, wallet_address, chain_ids, priority, trigger, provider,"
                 " status, enqueued_at) SELECT x::uuid, 'bench', '0x' || repeat('a', 40), '{1}', 'normal', 'api',"
                 " 'simulated', CASE WHEN %s = 0 THEN 'queued' ELSE 'succeeded' END, now() - %s * interval '7 days'"
                 " FROM unnest(%s::text[]) AS x", (weeks_ago, weeks_ago, ids))


def _params(op_id: str) -> dict:
    return {"ids": [op_id], "worker_ids": ["bench"], "message_ids": ["bench"]}


Statement = Callable[[list[str]], sql.Composable]


def _timed(conn: psycopg.Connection, statement_of: Statement, ids: list[str]) -> float:
    """Milliseconds per call of ``statement_of([id])`` for each id of ``ids``, its bound computed in the call
    as the worker computes it."""
    started = time.perf_counter()
    for op_id in ids:
        conn.execute(statement_of([op_id]), _params(op_id))
    return (time.perf_counter() - started) * 1000 / len(ids)


def _explained(conn: psycopg.Connection, statement_of: Statement, op_id: str) -> tuple[float, float, int]:
    """Planning and execution time (ms) of one ``EXPLAIN ANALYZE`` and the partitions its plan scans."""
    plan = [row[0] for row in conn.execute(sql.SQL("EXPLAIN (ANALYZE, SUMMARY) ") + statement_of([op_id]),
                                           _params(op_id))]
    planning = next(float(line.split()[2]) for line in plan if line.startswith("Planning Time"))
    execution = next(float(line.split()[2]) for line in plan if line.startswith("Execution Time"))
    return planning, execution, len({name for line in plan for name in re.findall(r"sync_operations_w\d{8}", line)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="operations a round, and in each past week")
    parser.add_argument("--calls", type=int, default=1000, help="calls per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--weeks-past", type=int, default=4, help="weeks of history before this one")
    args = parser.parse_args()
    from actors.ids import uuid7_strings
    from storage import operations
    from storage.queries import QUERIES

    plain = operations.with_bound(QUERIES["start_attempts"].replace("UPDATE sync_operations AS s",
                                                                    "UPDATE sync_operations_plain AS s"),
                                  operations.EVERY_PARTITION)
    variants: dict[str, Statement] = {
        "unbounded": lambda _ids: operations.bounded("start_attempts", operations.EVERY_PARTITION),
        "bounded": lambda ids: operations.bounded("start_attempts", operations.id_time_bound(ids)),
        "plain table": lambda _ids: plain}
    with sandbox.enter(LOG_LEVEL="WARNING"), psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("SELECT sync_operations_add_partitions(now() - %s * interval '7 days', now())",
                     (args.weeks_past,))
        for weeks_ago in range(1, args.weeks_past + 1):
            _insert(conn, [str(uuid.uuid4()) for _ in range(args.rows)], weeks_ago)
        partitions = conn.execute("SELECT count(*) FROM sync_operations_partition_bounds()").fetchone()[0]
        conn.execute("CREATE TABLE sync_operations_plain (LIKE sync_operations INCLUDING ALL)")
        conn.execute("INSERT INTO sync_operations_plain SELECT * FROM sync_operations")
        per: dict[str, list[float]] = {name: [] for name in variants}
        explained: dict[str, list[tuple[float, float, int]]] = {name: [] for name in variants}
        for round_no in range(args.rounds):
            ids = uuid7_strings(max(args.rows, len(variants) * args.calls + len(variants)))
            _insert(conn, ids)
            conn.execute("INSERT INTO sync_operations_plain SELECT * FROM sync_operations WHERE id = ANY(%s::uuid[])",
                         (ids,))
            conn.execute("ANALYZE sync_operations, sync_operations_plain")
            order = list(variants)
            order = order[round_no % len(order):] + order[:round_no % len(order)]  # each goes first in turn
            for name in order:
                i = list(variants).index(name)  # each variant starts operations of its own
                mine = ids[i * (args.calls + 1):(i + 1) * (args.calls + 1)]
                per[name].append(_timed(conn, variants[name], mine[:args.calls]))
                explained[name].append(_explained(conn, variants[name], mine[args.calls]))
        print(f"start_attempts, one operation a call; {partitions} partitions ({args.weeks_past} past weeks of "
              f"{args.rows} operations, this week's, 3 ahead); load average "
              f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for name in variants:
            planning, execution, scanned = (statistics.median(x) for x in zip(*explained[name]))
            print(f"  {name:<12} wall per call (ms, median of {args.rounds} rounds): "
                  f"{statistics.median(per[name]):.3f}   EXPLAIN ANALYZE: planning {planning:.3f} ms, "
                  f"execution {execution:.3f} ms" + (f", {scanned:.0f} partition(s) in the plan" if scanned else ""))
        for name in ("unbounded", "bounded"):
            print(f"  {name} / plain table (wall): "
                  f"{statistics.median(per[name]) / statistics.median(per['plain table']):.2f}x")


if __name__ == "__main__":
    main()
