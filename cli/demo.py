"""``portfolio-sync demo [--wait]``: request a few demo syncs and, with ``--wait``, print how they ended.

``./dev up`` runs ``python -m cli demo --wait`` once the worker is up.  The demo wallets are
forced past the cooldown so each run really syncs them.
"""

from __future__ import annotations

import sys
import time

import actors

from .exits import FAILED, OK

DEMO_WALLETS = [
    ("demo-alice", "0x1111111111111111111111111111111111111111", None, "high"),
    ("demo-bob", "0x2222222222222222222222222222222222222222", [1, 8453], "normal"),
    ("demo-carol", "0x3333333333333333333333333333333333333333", [42161], "low"),
]


def cmd_demo(args) -> int:
    ids = actors.request_syncs([
        {"user_id": user, "wallet_address": wallet, "chain_ids": chains, "priority": priority,
         "force": True, "trigger": "demo"}
        for user, wallet, chains, priority in DEMO_WALLETS
    ])
    for (user, wallet, _chains, priority), op_id in zip(DEMO_WALLETS, ids):
        print(f"requested {op_id}  {user:<11} {wallet}  priority={priority}")
    if not args.wait:
        return OK

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
        return FAILED
    return OK
