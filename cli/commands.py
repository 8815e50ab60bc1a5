"""The commands' handlers: each calls the producer API (``actors``), storage's read side or the
read-only inspection helpers, and prints through ``cli.output``.

``cli.main`` imports this module only once the configuration is known to be valid (importing
``actors`` reads it), and runs the handler that ``HANDLERS`` names for the parsed command.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections.abc import Iterable

import actors
import settings
from actors.redis_backed import events, inspection
from actors.services import context, deadletters, observe, tracking
from actors.validation import validate_request, validate_user_id, validate_wallet
from storage import operating

from . import demo, output
from .arguments import BATCH_SIZE, chain_list
from .exits import FAILED, INVALID, NOT_FOUND, OK, UNAVAILABLE, CommandError

_FINAL = ("succeeded", "partial", "failed")

#: Errors that mean Redis or PostgreSQL did not answer, besides the connection errors of their
#: clients (``cli.main`` ends the command with UNAVAILABLE on them).
UNAVAILABLE_ERRORS = (actors.SyncUnavailable,)


def cmd_request(args) -> int:
    observe.forget_admissions()
    op_id = actors.request_sync(args.user_id, args.wallet_address, args.chains, priority=args.priority,
                                force=args.force, trigger="cli")
    admissions = observe.last_admissions() or []
    decision = admissions[0].decision if admissions else "accepted"
    if decision == "duplicate":
        output.note(f"a sync of this wallet is already queued or running: {op_id}")
    elif decision == "cooldown":
        output.note(f"within the cooldown (SYNC_COOLDOWN_SECONDS) of its last success: {op_id} "
                    "(--force to sync anyway)")
    if not args.wait:
        output.emit(args, {"operation_id": op_id, "admission": decision}, op_id)
        return OK
    row = _wait_for(op_id, args.timeout)
    output.emit(args, output.plain(row), op_id)
    if row["status"] == "succeeded":
        return OK
    if row["status"] == "failed":
        output.note(f"operation {op_id} failed: {row['error_code']}: {row['error_message']}")
    elif row["status"] == "partial":
        output.note(f"operation {op_id} stored some chains only: {row['error_code']}: {row['error_message']}")
    else:
        output.note(f"operation {op_id} is still {row['status']} after {args.timeout:g} s")
    return FAILED


def _wait_for(op_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        row = actors.get_sync(op_id)
        if row is None:
            raise CommandError(NOT_FOUND, f"no operation {op_id}")
        if row["status"] != last:
            output.note(f"{op_id}: {row['status']}" + (f" (attempt {row['attempts']})" if row["attempts"] else ""))
            last = row["status"]
        if row["status"] in _FINAL or time.monotonic() >= deadline:
            return row
        time.sleep(0.25)


def cmd_request_batch(args) -> int:
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
                request["chain_ids"] = chain_list(fields["chain_ids"])
            validate_request(supported_chains=cfg.sync.chains, **request)
        except (actors.InvalidSyncRequest, argparse.ArgumentTypeError) as exc:
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
    progress = output.Progress(len(rows), "requested", quiet=args.quiet)
    done = 0
    for start in range(0, len(rows), args.batch_size):
        batch = rows[start:start + args.batch_size]
        try:
            ids = actors.request_syncs(batch)
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
    output.note(f"{done} sync(s) requested (duplicates and syncs within the cooldown answered with their existing id)")
    return OK


def _stopped(exc: Exception, done: int, total: int) -> Exception:
    if isinstance(exc, actors.SyncUnavailable):
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
    row = actors.get_sync(args.operation_id)
    if row is None:
        raise CommandError(NOT_FOUND, f"no operation {args.operation_id}")
    if args.json:
        output.print_json(output.plain(row))
        return OK
    fields = ("id", "status", "user_id", "wallet_address", "chain_ids", "priority", "trigger", "provider", "attempts",
              "requeues", "enqueued_at", "started_at", "finished_at", "queue_wait_ms", "duration_ms", "holdings_count",
              "total_value_usd", "unpriced_count", "error_code", "error_message", "worker_id")
    width = max(map(len, fields))
    for name in fields:
        if name in row:
            print(f"{name:<{width}}  {output.cell(row[name])}")
    results = row.get("chain_results") or {}
    if results:
        print()
        output.table(["chain", "status", "holdings", "value_usd", "ms", "error"],
                     [[chain, r.get("status"), r.get("holdings"), r.get("value_usd"), r.get("duration_ms"),
                       r.get("error_code")] for chain, r in sorted(results.items(), key=lambda kv: int(kv[0]))])
    return OK


def cmd_wallet(args) -> int:
    wallet = validate_wallet(args.wallet_address)
    if not 1 <= args.limit <= 1000:
        raise CommandError(INVALID, "--limit must be between 1 and 1000")
    user_id = None if args.user_id is None else validate_user_id(args.user_id)
    rows = operating.wallet_syncs(wallet, user_id=user_id, limit=args.limit)
    if not rows:
        raise CommandError(NOT_FOUND, f"no syncs of {wallet}" + (f" for user {args.user_id}" if args.user_id else ""))
    if args.json:
        output.print_json([output.plain(r) for r in rows])
        return OK
    output.table(["enqueued_at", "operation_id", "user_id", "status", "try", "chains", "holdings", "value_usd",
                  "error"],
                 [[r["enqueued_at"], r["id"], r["user_id"], r["status"], r["attempts"], r["chain_ids"],
                   r["holdings_count"], r["total_value_usd"], r["error_code"]] for r in rows])
    return OK


def cmd_portfolio(args) -> int:
    portfolio = actors.get_portfolio(args.user_id, args.wallet_address, args.chains)
    if portfolio is None:
        raise CommandError(NOT_FOUND, f"wallet {args.wallet_address.lower()} was never synced for user "
                                      f"{args.user_id}: request a sync first")
    if args.json:
        output.print_json(actors.portfolio_as_json(portfolio))
        return OK
    totals, last = portfolio["totals"], portfolio["last_operation"]
    print(f"{portfolio['wallet_address']} for {portfolio['user_id']}: ${totals['value_usd']} in "
          f"{totals['priced_count']} priced holdings, {totals['unpriced_count']} unpriced; "
          f"last sync {last['id']} {last['status']}")
    output.table(["chain", "status", "read_at", "block", "fresh", "last_result"],
                 [[c["chain_id"], c["status"], c["read_at"], c["block_number"], "yes" if c["fresh"] else "no",
                   None if c["last_result"] is None else
                   c["last_result"]["error_code"] or c["last_result"]["status"] or c["last_result"]["operation_status"]]
                  for c in portfolio["chains"]])
    rows = [[c["chain_id"], h["symbol"], h["token_address"], h["raw_balance"], h["decimals"], h["balance"],
             h["price_usd"], h["value_usd"], h["flags"]] for c in portfolio["chains"] for h in c["holdings"]]
    if rows:
        print()
        output.table(["chain", "symbol", "token", "raw_balance", "decimals", "balance", "price_usd", "value_usd",
                      "flags"], rows)
    return OK


def cmd_status(args) -> int:
    broker = context.broker()
    queues = inspection.queue_states(broker)
    processes = inspection.broker_processes(broker)
    status = {
        "queues": [{"queue": q.queue, "waiting": q.waiting, "in_flight": q.in_flight, "delayed": q.delayed,
                    "dead": q.dead, "oldest_waiting_age_s": q.oldest_waiting_age_s} for q in queues],
        "quarantined": inspection.quarantined(broker),
        "broker_processes": {"alive": sum(p.alive for p in processes),
                             "alive_with_messages_in_flight": sum(p.alive and p.in_flight > 0 for p in processes),
                             "silent": sum(not p.alive for p in processes)},
    }
    if args.json:
        output.print_json(status)
        return OK
    output.table(["queue", "waiting", "in_flight", "delayed", "dead", "oldest_waiting"],
                 [[q["queue"], q["waiting"], q["in_flight"], q["delayed"], q["dead"],
                   "-" if q["oldest_waiting_age_s"] is None else f"{q['oldest_waiting_age_s']:.1f}s"]
                  for q in status["queues"]])
    alive = status["broker_processes"]
    print(f"\ndead letters: {sum(q['dead'] for q in status['queues'])}   quarantined: {status['quarantined']}")
    print(f"workers and producers alive (heartbeat within {broker.heartbeat_timeout / 1000:g} s): {alive['alive']} "
          f"({alive['alive_with_messages_in_flight']} with messages in flight); silent: {alive['silent']}")
    return OK


def _dead_filter(args):
    return deadletters.DeadLetterFilter(queues=tuple(args.queue), actor=args.actor, user_id=args.user_id,
                                        wallet=args.wallet, error_code=args.error_code, text=args.text)


def cmd_dead_list(args) -> int:
    if not 1 <= args.limit <= 10_000 or args.offset < 0:
        raise CommandError(INVALID, "--limit must be between 1 and 10000 and --offset not negative")
    letters, total = deadletters.list_dead_letters(_dead_filter(args), limit=args.limit, offset=args.offset)
    rows = [letter.summary() for letter in letters]
    if args.json:
        output.print_json({"total": total, "dead_letters": [output.plain(r) for r in rows]})
        return OK
    output.table(["dead_at", "ref", "actor", "operation_id", "status", "error"],
                 [[r["dead_at"], f"{r['queue']}:{r['redis_id']}", r["actor_name"], r["operation_id"],
                   r["operation_status"], r["error_code"] or (r["error_message"] or "")[:60]] for r in rows])
    output.note(f"{len(rows)} shown of {total} matching")
    return OK


def cmd_dead_redrive(args) -> int:
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
        _first, total = deadletters.list_dead_letters(flt, limit=1)
        letters, _total = deadletters.list_dead_letters(flt, limit=min(total, args.limit or total) or 1)
        refs = [(letter.queue, letter.redis_id) for letter in letters][:args.limit or None]
    if args.dry_run:
        plan = [{"queue": q, "redis_id": r} for q, r in refs]
        if args.json:
            output.print_json({"dry_run": True, "would_redrive": plan})
        else:
            for q, r in refs:
                print(f"{q}:{r}")
        output.note(f"dry run: {len(refs)} dead letter(s) would be re-driven; nothing was changed")
        return OK
    report = deadletters.RedriveReport()
    progress = output.Progress(len(refs), "re-driven", quiet=len(refs) <= BATCH_SIZE)
    for start in range(0, len(refs), BATCH_SIZE):
        chunk = deadletters.redrive(refs[start:start + BATCH_SIZE])
        report.redriven.extend(chunk.redriven)
        report.skipped.extend(chunk.skipped)
        progress.update(min(len(refs), start + BATCH_SIZE))
    progress.close()
    if args.json:
        output.print_json({"redriven": report.redriven, "skipped": report.skipped})
    else:
        for item in report.redriven:
            print(f"{item['queue']}:{item['redis_id']}\t{item['how']}\t{item.get('operation_id') or ''}")
        for item in report.skipped:
            output.note(f"skipped {item['queue']}:{item['redis_id']}: {item['reason']}")
    output.note(str(report))
    if report.skipped:
        gone = all("not in the dead-letter queue" in s["reason"] for s in report.skipped)
        return NOT_FOUND if gone and not report.redriven else FAILED
    return OK


def cmd_tracking(args) -> int:
    if args.command == "track":
        result = tracking.track_wallet(args.user_id, args.wallet_address, args.chains)
        output.emit(args, output.plain(result), f"tracking {result['wallet_address']} of {result['user_id']} on chains "
                                          f"{','.join(map(str, result['chain_ids']))} "
                                          f"({'new' if result.get('created') else 'updated'}, {result['status']})")
        return OK
    fn = {"pause": tracking.pause_wallet, "resume": tracking.resume_wallet, "untrack": tracking.untrack_wallet}
    if not fn[args.command](args.user_id, args.wallet_address):
        raise CommandError(NOT_FOUND, f"{args.wallet_address.lower()} of {args.user_id} is not tracked")
    done = {"pause": "paused", "resume": "resumed", "untrack": "untracked"}[args.command]
    output.emit(args, {"user_id": args.user_id, "wallet_address": args.wallet_address.lower(), "result": done},
                f"{done} {args.wallet_address.lower()} of {args.user_id}")
    return OK


def cmd_events(args) -> int:
    if not 1 <= args.count <= 10_000:
        raise CommandError(INVALID, "--count must be between 1 and 10000")
    for entry_id, fields in events.read(context.broker().client, context.broker().namespace, after=args.after,
                                        count=args.count):
        print(json.dumps({"id": entry_id, **fields}, ensure_ascii=False))
    return OK


#: The handler of each command (``handler`` of the parsed arguments, see ``cli.arguments``).
HANDLERS = {"request": cmd_request, "request-batch": cmd_request_batch, "show": cmd_show, "wallet": cmd_wallet,
            "portfolio": cmd_portfolio,
            "status": cmd_status, "dead-letters list": cmd_dead_list, "dead-letters redrive": cmd_dead_redrive,
            "tracking": cmd_tracking, "events": cmd_events, "demo": demo.cmd_demo}
