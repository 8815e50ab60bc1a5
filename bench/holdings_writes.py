"""What PostgreSQL writes to end a batch of re-syncs: this tree's ``finish_attempts`` against another commit's.

    .venv/bin/python -m bench.holdings_writes [--before b7f866a] [--rounds 5] [--batch 8] [--chains 5] [--tokens 13]

Each round, for each of the two statements in turn (interleaved, order alternating): ``--batch`` wallets
get a first sync, then a re-sync whose holdings equal the stored ones (the same balances and the same
price fetch, as within the price cache's lifetime), ``--chains`` chains of ``--tokens`` rows each.  The
re-sync's ``finish_attempts`` runs under ``EXPLAIN (ANALYZE, BUFFERS, WAL)``: WAL records and bytes and
buffers dirtied are the statement's own, so they do not depend on the machine's load (other databases'
work is not in them), unlike its time, reported too.  Both statements run in one throwaway database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import uuid
from decimal import Decimal

from bench import sandbox
from bench.common import ROOT, emit


def _modify_nodes(node: dict):
    """The plan's data-modifying nodes (the statement's CTEs), outermost only: their WAL and buffer
    counts include what runs under them, and a CTE that nothing reads is not counted in the top node."""
    if node.get("Node Type") == "ModifyTable":
        yield node
        return
    for child in node.get("Plans", ()):
        yield from _modify_nodes(child)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="b7f866a")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--chains", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=13)
    args = parser.parse_args()
    old_text = subprocess.run(["git", "-C", str(ROOT), "show", f"{args.before}:storage/queries.sql"], check=True,
                              capture_output=True, text=True).stdout
    with sandbox.enter(LOG_LEVEL="WARNING"):
        from psycopg import sql
        from psycopg.types.json import Jsonb

        from storage import operations, queries
        from storage.pool import get_pool

        before = queries.load(old_text)["finish_attempts"]
        # A commit's statement as it ran: with its partitions' bounds written in (from de7a31c), bound as
        # parameters (lo, hi: null for every partition, before it), or with none (before issue 15).
        statements = {"after": operations.bounded("finish_attempts", operations.EVERY_PARTITION),
                      "before": operations.with_bound(before, operations.EVERY_PARTITION)
                      if "{lo}" in before else sql.SQL(before)}
        figures: dict[str, list[dict]] = {name: [] for name in statements}
        priced_at = dt.datetime.now(dt.timezone.utc)

        def outcome(as_of):
            holdings = [{"chain_id": chain, "token_address": f"0x{chain:08x}{token:032x}", "symbol": f"T{token}",
                         "name": f"Token {token}", "decimals": 18, "raw_balance": 10**18 * (token + 1),
                         "balance": Decimal(token + 1), "price_usd": Decimal("1.5"),
                         "value_usd": Decimal("1.5") * (token + 1), "price_source": "bench", "priced_at": priced_at,
                         "listed": True, "possible_spam": False}
                        for chain in range(1, args.chains + 1) for token in range(args.tokens)]
            return operations.AttemptOutcome(
                status="succeeded", holdings=holdings, synced_chains=list(range(1, args.chains + 1)),
                chain_results={}, holdings_count=len(holdings), total_value_usd=Decimal(0), unpriced_count=0,
                as_of=as_of, provider="bench", chain_blocks={c: None for c in range(1, args.chains + 1)})

        def started_ops(wallets):
            ops = [str(uuid.uuid4()) for _ in wallets]
            operations.insert_operations([operations.NewOperation(op, "bench", w, tuple(range(1, args.chains + 1)),
                                                                  "normal", "api") for op, w in zip(ops, wallets)],
                                         provider="bench")
            operations._start_batch([(op, "bench", None) for op in ops])
            return ops

        def finish(statement, ops, as_of, explain):
            attempts = [{"id": op, "status": "succeeded", "refund_attempt": False, "holdings_count": 0,
                         "total_value_usd": 0, "unpriced_count": 0, "chain_results": {}, "error_code": None,
                         "error_message": None, "provider": "bench", "as_of": as_of,
                         "synced_chains": list(range(1, args.chains + 1)), "chain_blocks": {},
                         "holdings": o.holdings} for op, o in ((op, outcome(as_of)) for op in ops)]
            params = {"attempts": Jsonb(attempts, dumps=operations._dumps), "ids": ops, "lo": None, "hi": None}
            with get_pool().connection() as conn:
                if not explain:
                    conn.execute(statement, params).fetchall()
                    return None
                (row,) = conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) ") + statement,
                                      params).fetchall()
            plan = next(iter(row.values()))[0]
            writes = list(_modify_nodes(plan["Plan"]))
            with get_pool().connection() as conn:
                rewritten = conn.execute(
                    "SELECT count(*) AS n FROM holdings WHERE operation_id = ANY(%s::uuid[])", (ops,)).fetchone()["n"]
            return {"ms": plan["Execution Time"], "wal_records": sum(n.get("WAL Records", 0) for n in writes),
                    "wal_bytes": sum(n.get("WAL Bytes", 0) for n in writes),
                    "dirtied": sum(n.get("Shared Dirtied Blocks", 0) for n in writes),
                    "holdings_rows_written": rewritten}

        for round_no in range(args.rounds):
            order = list(statements) if round_no % 2 == 0 else list(reversed(statements))
            for name in order:
                wallets = [f"0x{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}" for _ in range(args.batch)]
                now = dt.datetime.now(dt.timezone.utc)
                finish(statements[name], started_ops(wallets), now, explain=False)
                figures[name].append(finish(statements[name], started_ops(wallets),
                                            now + dt.timedelta(seconds=1), explain=True))

    rows = args.batch * args.chains * args.tokens
    result = {"bench": "holdings_writes", "before": args.before, "batch": args.batch, "rows_per_batch": rows}
    print(f"re-sync of {args.batch} wallets x {args.chains} chains x {args.tokens} rows, equal to the stored ones "
          f"(median of {args.rounds}):")
    for name, runs in figures.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        result[name] = med
        print(f"  {name:7} holdings rows written {med['holdings_rows_written']:>4.0f} of {rows}; WAL "
              f"{med['wal_records']:>6.0f} records {med['wal_bytes']:>9.0f} bytes, {med['dirtied']:>4.0f} buffers "
              f"dirtied; {med['ms']:.1f} ms")
    emit(result)


if __name__ == "__main__":
    sys.exit(main())
