"""``portfolio-sync``: the command line for operating the system (``[project.scripts]`` in pyproject.toml).

    portfolio-sync request USER_ID WALLET [--chains 1,10] [--priority high] [--force] [--wait]
    portfolio-sync request-batch FILE|-          CSV: user_id,wallet_address[,chain_ids as 1;10][,priority]
    portfolio-sync show OPERATION_ID
    portfolio-sync wallet ADDRESS [--user U] [--limit N]
    portfolio-sync status
    portfolio-sync dead-letters list [filters]  /  dead-letters redrive [QUEUE:ID ...|--all] [--dry-run]
    portfolio-sync track|pause|resume|untrack USER_ID WALLET
    portfolio-sync events [--after ID] [--count N]
    portfolio-sync migrate [--create-database]

Results go to stdout (``--json`` for machine-readable output where it applies), messages and
progress to stderr.  Exit codes: 0 done; 1 any other failure; 2 invalid input, usage or
configuration; 3 not found; 4 Redis or PostgreSQL unavailable.  Secrets are never printed.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

OK, FAILED, INVALID, NOT_FOUND, UNAVAILABLE = 0, 1, 2, 3, 4
BATCH_SIZE = 500
_FINAL = ("succeeded", "partial", "failed")


class CommandError(Exception):
    """Ends the command with ``code`` after printing ``message`` to stderr."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------ the parser --

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

    def command(name: str, handler: Callable, help_text: str, *, parents=(as_json,)) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=list(parents))
        sub.set_defaults(handler=handler)
        return sub

    p = command("request", cmd_request, "Request a sync of one wallet; prints the operation id.")
    p.add_argument("user_id")
    p.add_argument("wallet_address")
    p.add_argument("--chains", type=_chain_list, help="chain ids, comma separated (default: every SYNC_CHAINS)")
    p.add_argument("--priority", choices=("high", "normal", "low"), default="normal")
    p.add_argument("--force", action="store_true", help="sync even within the cooldown of the last success")
    p.add_argument("--wait", action="store_true", help="wait until the operation is final (exit 1 if it failed)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds --wait waits at most (default 120)")

    p = command("request-batch", cmd_request_batch,
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

    p = command("show", cmd_show, "Show an operation's record.")
    p.add_argument("operation_id")

    p = command("wallet", cmd_wallet, "Show a wallet's latest syncs, newest first.")
    p.add_argument("wallet_address")
    p.add_argument("--user", dest="user_id", help="only this user's")
    p.add_argument("--limit", type=int, default=10, help="how many (1-1000, default 10)")

    command("status", cmd_status, "Queue depths, delayed and dead messages, quarantine, live workers.")

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
    p.set_defaults(handler=cmd_dead_list)
    p = dead.add_parser("redrive", help="Re-drive dead letters.", parents=[filters, as_json],
                        description="Re-drive the dead letters named (QUEUE:REDIS_ID, as `list` shows them), or "
                                    "every one matching the filters (--all for every dead letter).")
    p.add_argument("refs", nargs="*", metavar="QUEUE:REDIS_ID")
    p.add_argument("--all", action="store_true", help="every dead letter matching the filters (needed without refs "
                                                      "and filters)")
    p.add_argument("--dry-run", action="store_true", help="only show what would be re-driven")
    p.add_argument("--limit", type=int, help="at most this many")
    p.set_defaults(handler=cmd_dead_redrive)

    for name, help_text in (("track", "Track a wallet: the scheduler keeps it fresh."),
                            ("pause", "Stop scheduling a tracked wallet (its owner's requests still sync it)."),
                            ("resume", "Schedule a paused wallet again."),
                            ("untrack", "Forget a tracked wallet (holdings and audit trail stay).")):
        p = command(name, cmd_tracking, help_text)
        p.add_argument("user_id")
        p.add_argument("wallet_address")
        if name == "track":
            p.add_argument("--chains", type=_chain_list, help="chain ids, comma separated (default: every SYNC_CHAINS)")

    p = command("events", cmd_events, "Print completion events of the Redis Stream, oldest first (JSON lines).",
                parents=())
    p.add_argument("--after", default="-", help="only events after this stream id (default: from the oldest kept)")
    p.add_argument("--count", type=int, default=100, help="at most this many (default 100)")

    p = command("migrate", cmd_migrate, "Apply schema.sql (idempotent, under an advisory lock).", parents=())
    p.add_argument("--create-database", action="store_true", help="create the database of DATABASE_URL first "
                                                                  "if it does not exist")
    return parser


def _chain_list(text: str) -> list[int]:
    try:
        chains = [int(c) for c in text.replace(";", ",").split(",") if c.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected chain ids separated by commas, got {text!r}") from None
    if not chains:
        raise argparse.ArgumentTypeError("name at least one chain id")
    return chains


# ------------------------------------------------------------------------------------ main --

def preflight() -> None:
    """Called by ``actors/__init__.py`` before it configures anything: when this process is the
    ``portfolio-sync`` command, answer ``--help`` and usage errors, and end a configuration error
    with its message and exit code 2 instead of a traceback (the console script imports the
    ``actors`` package, which loads the configuration, before :func:`main` runs).  Elsewhere it
    does nothing."""
    import os

    if os.path.basename(sys.argv[0] or "") != "portfolio-sync":
        return
    build_parser().parse_args(sys.argv[1:])  # exits 0 after --help, 2 on a usage error
    import settings

    try:
        settings.get()
    except settings.ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(INVALID)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits 2 on a usage error, 0 after --help
    import settings

    try:
        cfg = settings.get()
    except settings.ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return INVALID
    if args.handler is cmd_migrate:  # needs no broker: works before anything else is set up
        return _run(args, cfg)
    try:
        import actors  # noqa: F401  (configures the broker and the logs)
    except settings.ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return INVALID
    import logging

    if not args.verbose:  # the command's own messages are its interface; library warnings only with -v
        for handler in logging.getLogger().handlers:
            handler.setLevel(max(logging.ERROR, handler.level))
    return _run(args, cfg)


def _run(args: argparse.Namespace, cfg) -> int:
    import psycopg
    import redis

    try:
        return args.handler(args) or OK
    except CommandError as exc:
        print(cfg.redact(str(exc)), file=sys.stderr)
        return exc.code
    except ValueError as exc:  # InvalidSyncRequest is one
        print(f"invalid: {cfg.redact(str(exc))}", file=sys.stderr)
        return INVALID
    except (redis.ConnectionError, redis.TimeoutError, psycopg.OperationalError) as exc:
        print(f"unavailable: {cfg.redact(str(exc)).strip()}", file=sys.stderr)
        return UNAVAILABLE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from .errors import SyncUnavailable

        if isinstance(exc, SyncUnavailable):
            print(f"unavailable: {cfg.redact(str(exc)).strip()}", file=sys.stderr)
            return UNAVAILABLE
        print(f"error: {type(exc).__name__}: {cfg.redact(str(exc))}", file=sys.stderr)
        return FAILED


# -------------------------------------------------------------------------------- commands --

def cmd_request(args) -> int:
    import actors
    from actors import observe

    observe.forget_admissions()
    op_id = actors.request_sync(args.user_id, args.wallet_address, args.chains, priority=args.priority,
                                force=args.force, trigger="cli")
    admissions = observe.last_admissions() or []
    decision = admissions[0].decision if admissions else "accepted"
    if decision == "duplicate":
        _note(f"a sync of this wallet is already queued or running: {op_id}")
    elif decision == "cooldown":
        _note(f"within the cooldown (SYNC_COOLDOWN_SECONDS) of its last success: {op_id} (--force to sync anyway)")
    if not args.wait:
        _emit(args, {"operation_id": op_id, "admission": decision}, op_id)
        return OK
    row = _wait_for(op_id, args.timeout)
    _emit(args, _plain(row), op_id)
    if row["status"] == "succeeded":
        return OK
    if row["status"] == "failed":
        _note(f"operation {op_id} failed: {row['error_code']}: {row['error_message']}")
    elif row["status"] == "partial":
        _note(f"operation {op_id} stored some chains only: {row['error_code']}: {row['error_message']}")
    else:
        _note(f"operation {op_id} is still {row['status']} after {args.timeout:g} s")
    return FAILED


def _wait_for(op_id: str, timeout: float) -> dict:
    import actors

    deadline = time.monotonic() + timeout
    last = None
    while True:
        row = actors.get_sync(op_id)
        if row is None:
            raise CommandError(NOT_FOUND, f"no operation {op_id}")
        if row["status"] != last:
            _note(f"{op_id}: {row['status']}" + (f" (attempt {row['attempts']})" if row["attempts"] else ""))
            last = row["status"]
        if row["status"] in _FINAL or time.monotonic() >= deadline:
            return row
        time.sleep(0.25)


def cmd_request_batch(args) -> int:
    import settings

    from .intake import request_syncs
    from .validation import InvalidSyncRequest, validate_request

    if not 1 <= args.batch_size <= 10_000:
        raise CommandError(INVALID, "--batch-size must be between 1 and 10000")
    cfg = settings.get()
    rows, errors = [], []
    for line, fields in _read_csv(args.file):
        request = {"user_id": fields.get("user_id"), "wallet_address": fields.get("wallet_address"),
                   "priority": fields.get("priority") or args.priority or "normal", "force": args.force,
                   "trigger": "cli"}
        try:
            if fields.get("chain_ids"):
                request["chain_ids"] = _chain_list(fields["chain_ids"])
            validate_request(supported_chains=cfg.chains, **request)
        except (InvalidSyncRequest, argparse.ArgumentTypeError) as exc:
            errors.append(f"line {line}: {exc}")
            continue
        rows.append(request)
    if errors:
        shown = "\n".join(errors[:20]) + (f"\n... and {len(errors) - 20} more" if len(errors) > 20 else "")
        raise CommandError(INVALID, f"{len(errors)} invalid row(s), nothing was requested:\n{shown}")
    if not rows:
        raise CommandError(INVALID, "no rows to request")

    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["user_id", "wallet_address", "operation_id"])
    progress = _Progress(len(rows), "requested", quiet=args.quiet)
    done = 0
    for start in range(0, len(rows), args.batch_size):
        batch = rows[start:start + args.batch_size]
        try:
            ids = request_syncs(batch)
        except Exception as exc:
            progress.close()
            sys.stdout.flush()
            raise _stopped(exc, done, len(rows)) from None
        for request, op_id in zip(batch, ids):
            out.writerow([request["user_id"], request["wallet_address"].lower(), op_id])
        sys.stdout.flush()
        done += len(batch)
        progress.update(done)
    progress.close()
    _note(f"{done} sync(s) requested (duplicates and syncs within the cooldown answered with their existing id)")
    return OK


def _stopped(exc: Exception, done: int, total: int) -> Exception:
    from .errors import SyncUnavailable

    if isinstance(exc, SyncUnavailable):
        return CommandError(UNAVAILABLE, f"unavailable after {done} of {total} rows (those were requested and "
                                         f"printed; running the file again is safe): {exc}")
    return exc


def _read_csv(path: str) -> Iterable[tuple[int, dict[str, str]]]:
    columns = ("user_id", "wallet_address", "chain_ids", "priority")
    if path == "-":
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
    else:
        try:
            stream = open(path, encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise CommandError(INVALID if isinstance(exc, (IsADirectoryError, PermissionError)) else NOT_FOUND,
                               f"cannot read {path}: {exc.strerror}") from None
    with stream:
        header = None
        for number, cells in enumerate(csv.reader(stream), 1):
            cells = [c.strip() for c in cells]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if header is None and number == 1 and cells[0].lower() == "user_id":
                header = [c.lower() for c in cells]
                unknown = set(header) - set(columns)
                if unknown:
                    raise CommandError(INVALID, f"line 1: unknown column(s) {', '.join(sorted(unknown))}; "
                                                f"known: {', '.join(columns)}")
                continue
            names = header or columns
            if len(cells) > len(names):
                raise CommandError(INVALID, f"line {number}: {len(cells)} columns, at most {len(names)} expected")
            yield number, dict(zip(names, cells))


def cmd_show(args) -> int:
    import actors

    row = actors.get_sync(args.operation_id)
    if row is None:
        raise CommandError(NOT_FOUND, f"no operation {args.operation_id}")
    if args.json:
        _print_json(_plain(row))
        return OK
    fields = ("id", "status", "user_id", "wallet_address", "chain_ids", "priority", "trigger", "provider", "attempts",
              "requeues", "enqueued_at", "started_at", "finished_at", "queue_wait_ms", "duration_ms", "holdings_count",
              "total_value_usd", "unpriced_count", "error_code", "error_message", "worker_id")
    width = max(map(len, fields))
    for name in fields:
        if name in row:
            print(f"{name:<{width}}  {_cell(row[name])}")
    results = row.get("chain_results") or {}
    if results:
        print()
        _table(["chain", "status", "holdings", "value_usd", "ms", "error"],
               [[chain, r.get("status"), r.get("holdings"), r.get("value_usd"), r.get("duration_ms"),
                 r.get("error_code")] for chain, r in sorted(results.items(), key=lambda kv: int(kv[0]))])
    return OK


def cmd_wallet(args) -> int:
    from storage import operating

    from .validation import validate_wallet

    wallet = validate_wallet(args.wallet_address)
    if not 1 <= args.limit <= 1000:
        raise CommandError(INVALID, "--limit must be between 1 and 1000")
    rows = operating.wallet_syncs(wallet, user_id=args.user_id, limit=args.limit)
    if not rows:
        raise CommandError(NOT_FOUND, f"no syncs of {wallet}" + (f" for user {args.user_id}" if args.user_id else ""))
    if args.json:
        _print_json([_plain(r) for r in rows])
        return OK
    _table(["enqueued_at", "operation_id", "user_id", "status", "try", "chains", "holdings", "value_usd", "error"],
           [[r["enqueued_at"], r["id"], r["user_id"], r["status"], r["attempts"], r["chain_ids"], r["holdings_count"],
             r["total_value_usd"], r["error_code"]] for r in rows])
    return OK


def cmd_status(args) -> int:
    import actors

    from .inspection import broker_processes, quarantined, queue_states

    broker = actors.broker
    queues = queue_states(broker)
    processes = broker_processes(broker)
    status = {
        "queues": [{"queue": q.queue, "waiting": q.waiting, "in_flight": q.in_flight, "delayed": q.delayed,
                    "dead": q.dead, "oldest_waiting_age_s": q.oldest_waiting_age_s} for q in queues],
        "quarantined": quarantined(broker),
        "broker_processes": {"alive": sum(p.alive for p in processes),
                             "alive_with_messages_in_flight": sum(p.alive and p.in_flight > 0 for p in processes),
                             "silent": sum(not p.alive for p in processes)},
    }
    if args.json:
        _print_json(status)
        return OK
    _table(["queue", "waiting", "in_flight", "delayed", "dead", "oldest_waiting"],
           [[q["queue"], q["waiting"], q["in_flight"], q["delayed"], q["dead"],
             "-" if q["oldest_waiting_age_s"] is None else f"{q['oldest_waiting_age_s']:.1f}s"]
            for q in status["queues"]])
    alive = status["broker_processes"]
    print(f"\ndead letters: {sum(q['dead'] for q in status['queues'])}   quarantined: {status['quarantined']}")
    print(f"workers and producers alive (heartbeat within {broker.heartbeat_timeout / 1000:g} s): {alive['alive']} "
          f"({alive['alive_with_messages_in_flight']} with messages in flight); silent: {alive['silent']}")
    return OK


def _dead_filter(args):
    from .deadletters import DeadLetterFilter

    return DeadLetterFilter(queues=tuple(args.queue), actor=args.actor, user_id=args.user_id, wallet=args.wallet,
                            error_code=args.error_code, text=args.text)


def cmd_dead_list(args) -> int:
    from .deadletters import list_dead_letters

    if not 1 <= args.limit <= 10_000 or args.offset < 0:
        raise CommandError(INVALID, "--limit must be between 1 and 10000 and --offset not negative")
    letters, total = list_dead_letters(_dead_filter(args), limit=args.limit, offset=args.offset)
    rows = [letter.summary() for letter in letters]
    if args.json:
        _print_json({"total": total, "dead_letters": [_plain(r) for r in rows]})
        return OK
    _table(["dead_at", "ref", "actor", "operation_id", "status", "error"],
           [[r["dead_at"], f"{r['queue']}:{r['redis_id']}", r["actor_name"], r["operation_id"], r["operation_status"],
             r["error_code"] or (r["error_message"] or "")[:60]] for r in rows])
    _note(f"{len(rows)} shown of {total} matching")
    return OK


def cmd_dead_redrive(args) -> int:
    from .deadletters import RedriveReport, list_dead_letters, redrive

    flt = _dead_filter(args)
    refs: list[tuple[str, str]] = []
    for ref in args.refs:
        queue, sep, redis_id = ref.partition(":")
        if not sep or not queue or not redis_id:
            raise CommandError(INVALID, f"expected QUEUE:REDIS_ID, got {ref!r}")
        refs.append((queue, redis_id))
    if refs and (args.all or flt.needs_content or flt.queues):
        raise CommandError(INVALID, "name dead letters or select them with filters/--all, not both")
    if not refs and not (args.all or flt.needs_content or flt.queues):
        raise CommandError(INVALID, "name the dead letters to re-drive (QUEUE:REDIS_ID), or select them with "
                                    "filters or --all")
    if args.limit is not None and args.limit < 1:
        raise CommandError(INVALID, "--limit must be at least 1")
    if not refs:
        _first, total = list_dead_letters(flt, limit=1)
        letters, _total = list_dead_letters(flt, limit=min(total, args.limit or total) or 1)
        refs = [(letter.queue, letter.redis_id) for letter in letters][:args.limit or None]
    if args.dry_run:
        plan = [{"queue": q, "redis_id": r} for q, r in refs]
        if args.json:
            _print_json({"dry_run": True, "would_redrive": plan})
        else:
            for q, r in refs:
                print(f"{q}:{r}")
        _note(f"dry run: {len(refs)} dead letter(s) would be re-driven; nothing was changed")
        return OK
    report = RedriveReport()
    progress = _Progress(len(refs), "re-driven", quiet=len(refs) <= BATCH_SIZE)
    for start in range(0, len(refs), BATCH_SIZE):
        chunk = redrive(refs[start:start + BATCH_SIZE])
        report.redriven.extend(chunk.redriven)
        report.skipped.extend(chunk.skipped)
        progress.update(min(len(refs), start + BATCH_SIZE))
    progress.close()
    if args.json:
        _print_json({"redriven": report.redriven, "skipped": report.skipped})
    else:
        for item in report.redriven:
            print(f"{item['queue']}:{item['redis_id']}\t{item['how']}\t{item.get('operation_id') or ''}")
        for item in report.skipped:
            _note(f"skipped {item['queue']}:{item['redis_id']}: {item['reason']}")
    _note(str(report))
    if report.skipped:
        gone = all("not in the dead-letter queue" in s["reason"] for s in report.skipped)
        return NOT_FOUND if gone and not report.redriven else FAILED
    return OK


def cmd_tracking(args) -> int:
    from . import tracking

    if args.command == "track":
        result = tracking.track_wallet(args.user_id, args.wallet_address, args.chains)
        _emit(args, _plain(result), f"tracking {result['wallet_address']} of {result['user_id']} on chains "
                                    f"{','.join(map(str, result['chain_ids']))} "
                                    f"({'new' if result.get('created') else 'updated'}, {result['status']})")
        return OK
    fn = {"pause": tracking.pause_wallet, "resume": tracking.resume_wallet, "untrack": tracking.untrack_wallet}
    if not fn[args.command](args.user_id, args.wallet_address):
        raise CommandError(NOT_FOUND, f"{args.wallet_address.lower()} of {args.user_id} is not tracked")
    done = {"pause": "paused", "resume": "resumed", "untrack": "untracked"}[args.command]
    _emit(args, {"user_id": args.user_id, "wallet_address": args.wallet_address.lower(), "result": done},
          f"{done} {args.wallet_address.lower()} of {args.user_id}")
    return OK


def cmd_events(args) -> int:
    import actors

    from . import events

    if not 1 <= args.count <= 10_000:
        raise CommandError(INVALID, "--count must be between 1 and 10000")
    for entry_id, fields in events.read(actors.broker.client, actors.broker.namespace, after=args.after,
                                        count=args.count):
        print(json.dumps({"id": entry_id, **fields}, ensure_ascii=False))
    return OK


def cmd_migrate(args) -> int:
    import settings
    from storage import migrate

    cfg = settings.get()
    if args.create_database and migrate.create_database(cfg.database_url, connect_timeout=cfg.db_connect_timeout_s):
        _note(f"created database {cfg.database_url_display}")
    migrate.apply_schema(cfg.database_url, connect_timeout=cfg.db_connect_timeout_s)
    print(f"schema applied to {cfg.database_url_display}")
    return OK


# ---------------------------------------------------------------------------------- output --

def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _emit(args, payload: Any, text: str) -> None:
    if getattr(args, "json", False):
        _print_json(payload)
    else:
        print(text)


def _print_json(payload: Any) -> None:
    print(json.dumps(_plain(payload), indent=2, ensure_ascii=False))


def _plain(value: Any) -> Any:
    """``value`` with decimals as strings and times in ISO 8601, for JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(_plain(value))
    return str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    print("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


class _Progress:
    """``done/total`` on stderr: rewritten in place on a terminal, a line per update otherwise."""

    def __init__(self, total: int, verb: str, *, quiet: bool = False):
        self.total, self.verb, self.quiet = total, verb, quiet
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()

    def update(self, done: int) -> None:
        if self.quiet:
            return
        rate = done / max(time.monotonic() - self.started, 1e-6)
        line = f"{self.verb} {done}/{self.total} ({100 * done / self.total:.0f}%, {rate:.0f}/s)"
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty and not self.quiet:
            print(file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
