"""The command line's arguments: every command, its options and its help.

Each command names its handler (``handler``, a key of ``cli.commands.HANDLERS``) rather than
holding it, so that parsing (``--help``, usage errors) needs nothing but this module.
"""

from __future__ import annotations

import argparse

#: Requests (request-batch) and re-drives (dead-letters redrive) per round trip.
BATCH_SIZE = 500


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portfolio-sync", description="Operate portfolio-sync: request syncs, inspect them and the queues, "
        "re-drive dead letters, manage tracked wallets, apply the schema.",
        epilog="Exit codes: 0 done, 1 other failure, 2 invalid input or configuration, 3 not found, "
               "4 Redis or PostgreSQL unavailable. Configuration comes from the environment (see README).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at LOG_LEVEL (default: errors only)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON instead of text")

    def command(name: str, handler: str, help_text: str, *, parents=(as_json,)) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=list(parents))
        sub.set_defaults(handler=handler)
        return sub

    p = command("request", "request", "Request a sync of one wallet; prints the operation id.")
    p.add_argument("user_id")
    p.add_argument("wallet_address")
    p.add_argument("--chains", type=chain_list, help="chain ids, comma separated (default: every SYNC_CHAINS)")
    p.add_argument("--priority", choices=("high", "normal", "low"), default="normal")
    p.add_argument("--force", action="store_true", help="sync even within the cooldown of the last success")
    p.add_argument("--wait", action="store_true", help="wait until the operation is final (exit 1 if it failed)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds --wait waits at most (default 120)")

    p = command("request-batch", "request-batch",
                "Request syncs of many wallets from a CSV file (or - for stdin): user_id,wallet_address"
                "[,chain_ids as 1;10][,priority], with or without that header line. Every row is validated "
                "first: if one is invalid, nothing is requested. Prints user_id,wallet_address,operation_id.",
                parents=())
    p.add_argument("file", help="CSV file, or - for stdin")
    p.add_argument("--priority", choices=("high", "normal", "low"), help="priority of rows that name none "
                                                                           "(default normal)")
    p.add_argument("--force", action="store_true", help="sync even within the cooldown")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"requests per round trip (default {BATCH_SIZE})")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")

    p = command("show", "show", "Show an operation's record.")
    p.add_argument("operation_id")

    p = command("wallet", "wallet", "Show a wallet's latest syncs, newest first.")
    p.add_argument("wallet_address")
    p.add_argument("--user", dest="user_id", help="only this user's")
    p.add_argument("--limit", type=int, default=10, help="how many (1-1000, default 10)")

    p = command("portfolio", "portfolio", "Show a wallet's portfolio for one user: holdings per chain, freshness, "
                                          "totals (raw balances exact; --json as the HTTP API answers).")
    p.add_argument("wallet_address")
    p.add_argument("--user", dest="user_id", required=True, help="the user whose view of the wallet to show")
    p.add_argument("--chains", type=chain_list, help="only these chain ids, comma separated")

    command("status", "status", "Queue depths, delayed and dead messages, quarantine, live workers.")

    p = commands.add_parser("dead-letters", help="List or re-drive dead letters.",
                            description="List or re-drive dead letters (see actors/deadletters.py for what a "
                                        "re-drive does with each kind of message).")
    dead = p.add_subparsers(dest="dead_command", metavar="ACTION", required=True)
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--queue", action="append", default=[], help="only this queue (repeatable)")
    filters.add_argument("--actor", help="only this actor")
    filters.add_argument("--user", dest="user_id", help="only sync messages of this user")
    filters.add_argument("--wallet", help="only sync messages of this wallet")
    filters.add_argument("--error-code", help="only operations that failed with this error code")
    filters.add_argument("--text", help="substring of the actor, arguments, traceback or error")
    p = dead.add_parser("list", help="List dead letters, newest first.", parents=[filters, as_json],
                        description="List dead letters matching the filters, newest first.")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p.set_defaults(handler="dead-letters list")
    p = dead.add_parser("redrive", help="Re-drive dead letters.", parents=[filters, as_json],
                        description="Re-drive the dead letters named (QUEUE:REDIS_ID, as `list` shows them), or "
                                    "every one matching the filters (--all for every dead letter).")
    p.add_argument("refs", nargs="*", metavar="QUEUE:REDIS_ID")
    p.add_argument("--all", action="store_true", help="every dead letter matching the filters (needed without refs "
                                                      "and filters)")
    p.add_argument("--dry-run", action="store_true", help="only show what would be re-driven")
    p.add_argument("--limit", type=int, help="at most this many")
    p.set_defaults(handler="dead-letters redrive")

    for name, help_text in (("track", "Track a wallet: the scheduler keeps it fresh."),
                            ("pause", "Stop scheduling a tracked wallet (its owner's requests still sync it)."),
                            ("resume", "Schedule a paused wallet again."),
                            ("untrack", "Forget a tracked wallet (holdings and audit trail stay).")):
        p = command(name, "tracking", help_text)
        p.add_argument("user_id")
        p.add_argument("wallet_address")
        if name == "track":
            p.add_argument("--chains", type=chain_list, help="chain ids, comma separated (default: every SYNC_CHAINS)")

    p = command("events", "events", "Print completion events of the Redis Stream, oldest first (JSON lines).",
                parents=())
    p.add_argument("--after", default="-", help="only events after this stream id (default: from the oldest kept)")
    p.add_argument("--count", type=int, default=100, help="at most this many (default 100)")

    p = command("migrate", "migrate", "Apply schema.sql (idempotent, under an advisory lock).", parents=())
    p.add_argument("--create-database", action="store_true", help="create the database of DATABASE_URL first "
                                                                  "if it does not exist")

    p = command("demo", "demo", "Request a few demo syncs (forced past the cooldown) and, with --wait, print "
                "how they ended; ./dev up runs it once the worker is up.", parents=())
    p.add_argument("--wait", action="store_true", help="wait until every demo sync is final and print it")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait with --wait (default 120)")
    return parser


def chain_list(text: str) -> list[int]:
    try:
        chains = [int(c) for c in text.replace(";", ",").split(",") if c.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected chain ids separated by commas, got {text!r}") from None
    if not chains:
        raise argparse.ArgumentTypeError("name at least one chain id")
    return chains
