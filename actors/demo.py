"""Request a few demo syncs and, with ``--wait``, print how they ended.

Usage: ``python -m actors.demo [--wait] [--timeout SECONDS]``

``./dev up`` runs it once the worker is up. The demo wallets are forced past
the cooldown so each run really syncs them.
"""

from __future__ import annotations

import argparse
import sys
import time

import actors

DEMO_WALLETS = [
    ("demo-alice", "0x1111111111111111111111111111111111111111", None, "high"),
    ("demo-bob", "0x2222222222222222222222222222222222222222", [1, 8453], "normal"),
    ("demo-carol", "0x3333333333333333333333333333333333333333", [42161], "low"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--wait", action="store_true", help="wait until every demo sync is final and print it")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait with --wait (default 120)")
    args = parser.parse_args(argv)

    ids = actors.request_syncs([
        {"user_id": user, "wallet_address": wallet, "chain_ids": chains, "priority": priority,
         "force": True, "trigger": "demo"}
        for user, wallet, chains, priority in DEMO_WALLETS
    ])
    for (user, wallet, _chains, priority), op_id in zip(DEMO_WALLETS, ids):
        print(f"requested {op_id}  {user:<11} {wallet}  priority={priority}")
    if not args.wait:
        return 0

    deadline = time.monotonic() + args.timeout
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        for op_id in sorted(pending):
            op = actors.get_sync(op_id)
            if op and op["status"] in ("succeeded", "partial", "failed"):
                pending.discard(op_id)
                total = "-" if op["total_value_usd"] is None else f"${op['total_value_usd']:,.2f}"
                print(f"{op['status']:<9} {op_id}  {op['user_id']:<11} chains={','.join(map(str, op['chain_ids']))} "
                      f"holdings={op['holdings_count']} value={total} ({op['provider']} data) "
                      f"attempts={op['attempts']} {op['error_code'] or ''}")
        time.sleep(0.2)
    if pending:
        print(f"still not final after {args.timeout:.0f} s: {', '.join(sorted(pending))} "
              "(is a worker running? see its log)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
