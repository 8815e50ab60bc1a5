"""What a lookup by id costs on the partitioned audit trail, against the same rows in a plain table.

    .venv/bin/python -m bench.partition_lookups [--rows 2000] [--calls 1000] [--rounds 3]

A lookup by id cannot name its partition (the key is ``(id, enqueued_at)`` and the id says nothing of the
time, docs/capacity.md), so PostgreSQL plans and probes every partition.  This runs ``start_attempts``,
the statement every attempt begins with, one operation at a time, on ``sync_operations`` (its partitions
as housekeeping leaves them: this week's and three ahead) and on a plain copy of it with the same
indexes, interleaved, in a throwaway database; it prints the wall time per call and one ``EXPLAIN
ANALYZE`` of each (planning and execution time, which the machine's load moves less).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import psycopg

from bench import sandbox


def _insert(conn: psycopg.Connection, ids: list[str]) -> None:
    conn.execute("INSERT INTO sync_operations (id, user_id, wallet_address, chain_ids, priority, trigger, provider,"
                  " status) SELECT x::uuid, 'bench', '0x' || repeat('a', 40), '{1}', 'normal', 'api', 'simulated',"
                  " 'queued' FROM unnest(%s::text[]) AS x", (ids,))


def _timed(conn: psycopg.Connection, statement: str, ids: list[str]) -> float:
    """Milliseconds per call of ``statement`` for each id of ``ids``."""
    started = time.perf_counter()
    for op_id in ids:
        conn.execute(statement, {"ids": [op_id], "worker_ids": ["bench"], "message_ids": ["bench"]})
    return (time.perf_counter() - started) * 1000 / len(ids)


def _explained(conn: psycopg.Connection, statement: str, op_id: str) -> tuple[float, float]:
    plan = [row[0] for row in conn.execute("EXPLAIN (ANALYZE, SUMMARY) " + statement,
                                           {"ids": [op_id], "worker_ids": ["bench"], "message_ids": ["bench"]})]
    planning = next(float(line.split()[2]) for line in plan if line.startswith("Planning Time"))
    execution = next(float(line.split()[2]) for line in plan if line.startswith("Execution Time"))
    return planning, execution


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=1000, help="calls per table and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from storage.queries import QUERIES

    statement = QUERIES["start_attempts"]
    plain = statement.replace("UPDATE sync_operations AS s", "UPDATE sync_operations_plain AS s")
    with sandbox.enter(LOG_LEVEL="WARNING"), psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        partitions = conn.execute("SELECT count(*) FROM sync_operations_partition_bounds()").fetchone()[0]
        conn.execute("CREATE TABLE sync_operations_plain (LIKE sync_operations INCLUDING ALL)")
        per = {"partitioned": [], "plain": []}
        explained = {}
        for round_no in range(args.rounds):
            ids = [str(uuid.uuid4()) for _ in range(max(args.rows, args.calls + 1))]
            _insert(conn, ids)
            conn.execute("INSERT INTO sync_operations_plain SELECT * FROM sync_operations WHERE id = ANY(%s::uuid[])",
                          (ids,))
            conn.execute("ANALYZE sync_operations, sync_operations_plain")
            order = [("partitioned", statement), ("plain", plain)]
            for name, sql in order if round_no % 2 == 0 else order[::-1]:
                per[name].append(_timed(conn, sql, ids[:args.calls]))
                explained[name] = _explained(conn, sql, ids[args.calls])
        print(f"start_attempts, one operation a call; {partitions} partitions; load average "
              f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for name in ("partitioned", "plain"):
            planning, execution = explained[name]
            print(f"  {name:<12} wall per call (ms, median of {args.rounds} rounds): "
                  f"{statistics.median(per[name]):.3f}   one EXPLAIN ANALYZE: planning {planning:.3f} ms, "
                  f"execution {execution:.3f} ms")
        ratio = statistics.median(per["partitioned"]) / statistics.median(per["plain"])
        print(f"  partitioned / plain: {ratio:.2f}x")


if __name__ == "__main__":
    main()
