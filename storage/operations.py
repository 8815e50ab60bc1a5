"""The audit trail (``sync_operations``) and the holdings it writes.

Each attempt of a sync writes twice here, ``start_attempt`` and ``finish_attempt``,
each in a batch with the other attempts of its process starting or ending at the
same moment (:mod:`storage.group_commit`): one statement and one commit per
batch.  A whole batch of requests is one statement too (``insert_operations``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .group_commit import GroupCommit
from .pool import get_attempts_pool, get_pool, get_readonly_pool
from .queries import QUERIES


T = TypeVar("T")
C = TypeVar("C", bound=tuple)
R = TypeVar("R")

#: An operation in one of these statuses is over: no attempt changes it any more.
FINAL_STATUSES = ("succeeded", "partial", "failed")


@dataclasses.dataclass(frozen=True)
class NewOperation:
    id: str
    user_id: str
    wallet_address: str
    chain_ids: tuple[int, ...]
    priority: str
    trigger: str
    message_id: str | None = None  # the Redis id of the message that will carry it


@dataclasses.dataclass(frozen=True)
class AttemptOutcome:
    """What one attempt produced, written by :func:`finish_attempt` in one statement.

    ``holdings`` are the rows of every chain in ``synced_chains`` (the chains read
    successfully in this attempt): those chains' holdings are replaced by them.
    Chains not in ``synced_chains`` keep what they had.
    """

    status: str  # 'succeeded', 'partial', 'failed' or 'retrying'
    holdings: Sequence[dict[str, Any]]
    synced_chains: Sequence[int]
    chain_results: dict[str, dict[str, Any]]
    holdings_count: int | None
    total_value_usd: Decimal | None
    unpriced_count: int | None
    as_of: dt.datetime
    provider: str
    error_code: str | None = None
    error_message: str | None = None
    refund_attempt: bool = False  # no provider was called: the attempt is not counted
    #: The block each chain of ``synced_chains`` was read at (absent or None: the provider has no block).
    chain_blocks: dict[int, int | None] = dataclasses.field(default_factory=dict)
    #: The digests of the chains' stored holdings when the attempt started (``start_attempt``'s
    #: ``holdings_digests``): a chain read whose holdings have the same digest is finished without them.
    stored_digests: Mapping[int, str] = dataclasses.field(default_factory=dict)


def insert_operations(operations: Sequence[NewOperation], *, provider: str,
                      meanwhile: Callable[[], T] | None = None) -> T | None:
    """Write ``operations`` as ``queued`` audit rows (and track their wallets) in one statement.

    With ``meanwhile``, the statement runs on a thread of its own while ``meanwhile()`` runs on the
    caller's: work of the caller's that does not need the rows (encoding their messages) overlaps
    PostgreSQL's.  Either way the rows are committed when this returns, which returns what
    ``meanwhile`` did; if the statement failed, its error is raised (and ``meanwhile``'s, if any,
    chained to it); if only ``meanwhile`` failed, its error is raised, the rows written.
    """
    if not operations:
        return meanwhile() if meanwhile is not None else None
    params = {
        "ids": [op.id for op in operations],
        "user_ids": [op.user_id for op in operations],
        "wallets": [op.wallet_address for op in operations],
        # int[][] cannot be ragged, so each row's chain list travels as an array literal.
        "chain_ids": ["{" + ",".join(map(str, op.chain_ids)) + "}" for op in operations],
        "priorities": [op.priority for op in operations],
        "triggers": [op.trigger for op in operations],
        "message_ids": [op.message_id for op in operations],
        "provider": provider,
    }
    if meanwhile is None:
        _insert(params)
        return None
    failed: list[BaseException] = []

    def write() -> None:
        try:
            _insert(params)
        except BaseException as exc:  # handed to the caller's thread below
            failed.append(exc)

    writer = threading.Thread(target=write, name="insert_operations", daemon=True)
    writer.start()
    try:
        result = meanwhile()
    except BaseException as exc:
        writer.join()
        if failed:
            raise failed[0] from exc
        raise
    writer.join()
    if failed:
        raise failed[0]
    return result


def _insert(params: dict) -> None:
    with get_pool().connection() as conn:
        conn.execute(QUERIES["insert_operations"], params)


def start_attempt(operation_id: str, *, worker_id: str, message_id: str | None) -> dict | None:
    """Mark the operation ``running`` and return its row; ``None`` if unknown or already final.
    Written with the other attempts of this process starting at the same moment (group commit).

    The row's ``holdings_digests`` are the digests of its wallet's chains' stored holdings (chain id ->
    :func:`holdings_digest`; a chain without a digest that describes its current read has none)."""
    return _starts((operation_id, worker_id, message_id))


def finish_attempt(operation_id: str, outcome: AttemptOutcome) -> bool:
    """Record ``outcome``; ``False`` if the operation was already final (nothing written).
    Written with the other attempts of this process ending at the same moment (group commit)."""
    return _finishes((operation_id, _attempt_json(operation_id, outcome)))


#: How far an operation's ``enqueued_at`` (PostgreSQL's clock, at its insert) is looked for either side of
#: the time in its id (the producer's clock, at admission, a moment before): the two clocks' skew.
ID_TIME_MARGIN = dt.timedelta(days=1)
#: The audit trail's partitions' grid (schema.sql): weeks from Monday 00:00 UTC.
_WEEK = dt.timedelta(days=7)
_MONDAY = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
#: No bound: every partition.
EVERY_PARTITION = ("-infinity", "infinity")


#: A holding's fields that finish_attempts compares with the stored row, besides its two flags and the
#: attempt's provider, which holdings_digest adds (the row's other columns are the read's, kept on the
#: chain's snapshot).
_COMPARED = ("token_address", "symbol", "name", "decimals", "raw_balance", "balance", "price_usd", "value_usd",
             "price_source", "priced_at")


def holdings_digest(holdings: Iterable[dict[str, Any]], provider: str) -> str:
    """A digest of one chain's ``holdings`` as finish_attempts stores them: equal digests, equal rows.

    The fields' ``repr``, not their JSON: the same values give the same text in every process, and a
    value of another type (``5`` and ``Decimal(5)``, ``None`` and ``"None"``) another text, so different
    rows never share a digest; equal amounts written otherwise (1.0 and 1.00) only cost a write.  A
    missing field or flag is null or false, as the statement stores it.  Building it costs less than
    encoding the holdings as JSON, which it spares when they are unchanged."""
    rows = sorted([(*map(h.get, _COMPARED), _flag(h.get("listed")), _flag(h.get("possible_spam")))
                   for h in holdings], key=lambda row: str(row[0]))
    return hashlib.blake2b(repr((provider, rows)).encode(), digest_size=16).hexdigest()


def _flag(value: Any) -> Any:
    return False if value is None else value  # coalesce(flag, false); any other value keeps its own text


def id_time_bound(operation_ids: Iterable[str]) -> tuple[str, str]:
    """The ``enqueued_at`` range a lookup of ``operation_ids`` is bound to, ``(lo, hi)``: the whole weeks of the
    partitions' grid around ``[earliest - margin, latest + margin)`` of the times in the ids (version 7,
    actors.ids).  Written into the statement (:func:`bounded`), whole weeks make one statement text per
    week, so PostgreSQL keeps its plan, pruned to the week's partitions.  Ids without a time (version 4,
    made before) are left out of it; none has one: :data:`EVERY_PARTITION`."""
    times = [ms for ms in map(_id_ms, operation_ids) if ms is not None]
    if not times:
        return EVERY_PARTITION
    try:
        lo = dt.datetime.fromtimestamp(min(times) / 1000, dt.timezone.utc) - ID_TIME_MARGIN
        hi = dt.datetime.fromtimestamp(max(times) / 1000, dt.timezone.utc) + ID_TIME_MARGIN
        lo = _MONDAY + (lo - _MONDAY) // _WEEK * _WEEK
        hi = _MONDAY + ((hi - _MONDAY) // _WEEK + 1) * _WEEK
    except (OverflowError, ValueError):  # a time past what a datetime holds, or its week's end: no id of ours
        return EVERY_PARTITION
    return lo.isoformat(), hi.isoformat()


@functools.lru_cache(maxsize=64)
def bounded(name: str, bound: tuple[str, str]) -> sql.Composed:
    """The statement ``name`` :func:`with_bound`.  Its text is the same for every call of a week: psycopg
    prepares it, and PostgreSQL plans it once per connection (parameters, as bounds, left every call to be
    planned anew: docs/performance.md)."""
    return with_bound(QUERIES[name], bound)


def with_bound(statement: str, bound: tuple[str, str]) -> sql.Composed:
    """``statement`` with its ``{lo}`` and ``{hi}`` written in as the literals of ``bound``."""
    return sql.SQL(statement).format(lo=sql.Literal(bound[0]), hi=sql.Literal(bound[1]))


def _canonical(operation_id: str) -> str:
    """The id as PostgreSQL returns it, so a written row is never taken for a missed one (and written again)."""
    try:
        return str(uuid.UUID(str(operation_id)))
    except ValueError:
        return str(operation_id)


def _id_ms(operation_id: str) -> int | None:
    """The time in a version 7 id, in ms since the epoch; ``None`` for any other id."""
    try:
        value = uuid.UUID(str(operation_id))
    except ValueError:  # not a UUID: the statement says so, as it did before ids had a time
        return None
    return value.int >> 80 if value.version == 7 else None


def _in_id_partitions(calls: Sequence[C], write: Callable[[Sequence[C], tuple[str, str]], list[R]]
                      ) -> list[R | Exception]:
    """``write(calls, bound)`` (one result per call, falsy where its statement found no row to act on) with
    the bound of the calls' operation ids (each call's first item), then, for the calls it did not find,
    again with no bound.  An operation outside the bound (a clock skewed past the margin, an id without a
    time) or that the statement passes over (already final: a duplicate delivery) is looked for in every
    partition, so none is missed; the first statement changed nothing of the calls it did not find, so
    none is written twice.  If the second statement fails, so do the calls it was for (the exception is
    their result, storage.group_commit); the others' writes are committed and stand."""
    bound = id_time_bound(call[0] for call in calls)
    results: list[R | Exception] = list(write(calls, bound))
    missed = [i for i, result in enumerate(results) if not result]
    if missed and bound is not EVERY_PARTITION:
        try:
            again: Sequence[R | Exception] = write([calls[i] for i in missed], EVERY_PARTITION)
        except Exception as exc:
            if len(missed) == len(calls):
                raise  # nothing was written: the batch failed whole, as one statement's would
            again = [exc] * len(missed)
        for i, result in zip(missed, again):
            results[i] = result
    return results


def _start_batch(calls: Sequence[tuple[str, str, str | None]]) -> list[dict | None | Exception]:
    return _in_id_partitions(calls, _start_rows)


def _start_rows(calls: Sequence[tuple[str, str, str | None]], bound: tuple[str, str]) -> list[dict | None]:
    with get_attempts_pool().connection() as conn:
        rows = conn.execute(bounded("start_attempts", bound), {
            "ids": [op_id for op_id, _, _ in calls], "worker_ids": [w for _, w, _ in calls],
            "message_ids": [m for _, _, m in calls],
        }).fetchall()
    by_id = {}
    for row in rows:
        row["holdings_digests"] = {int(chain): digest for chain, digest in (row["holdings_digests"] or {}).items()}
        by_id[str(row["id"])] = row
    return [by_id.get(_canonical(op_id)) for op_id, _, _ in calls]


def _finish_batch(calls: Sequence[tuple[str, dict[str, Any]]]) -> list[bool | Exception]:
    return _in_id_partitions(calls, _finish_rows)


def _finish_rows(calls: Sequence[tuple[str, dict[str, Any]]], bound: tuple[str, str]) -> list[bool]:
    attempts = [attempt for _, attempt in calls]
    with get_attempts_pool().connection() as conn:
        finished = {str(row["id"]) for row in
                    conn.execute(bounded("finish_attempts", bound), {
                        "attempts": Jsonb(attempts, dumps=_dumps),
                        "ids": [op_id for op_id, _ in calls]}).fetchall()}
    return [_canonical(op_id) in finished for op_id, _ in calls]


def _attempt_json(op_id: str, outcome: AttemptOutcome) -> dict[str, Any]:
    """One attempt of finish_attempts' batch, built on the attempt's thread (the writer's batch waits for
    none of it); a chain whose holdings are as stored goes without them.  Only the holdings of
    ``synced_chains`` are written, so only theirs are sent."""
    by_chain: dict[int, list[dict[str, Any]]] = {chain_id: [] for chain_id in outcome.synced_chains}
    for holding in outcome.holdings:
        if (rows := by_chain.get(holding.get("chain_id"))) is not None:
            rows.append(holding)
    digests = {chain_id: holdings_digest(rows, outcome.provider) for chain_id, rows in by_chain.items()}
    unchanged = [chain_id for chain_id, digest in digests.items() if outcome.stored_digests.get(chain_id) == digest]
    return {
        "id": op_id,
        "status": outcome.status,
        "refund_attempt": outcome.refund_attempt,
        "holdings_count": outcome.holdings_count,
        "total_value_usd": outcome.total_value_usd,
        "unpriced_count": outcome.unpriced_count,
        "chain_results": outcome.chain_results,
        "error_code": outcome.error_code,
        "error_message": outcome.error_message,
        "provider": outcome.provider,
        "as_of": outcome.as_of,
        "synced_chains": list(outcome.synced_chains),
        "chain_blocks": {str(chain_id): block for chain_id, block in outcome.chain_blocks.items()},
        "holdings": [h for chain_id, rows in by_chain.items() if chain_id not in unchanged for h in rows],
        "digests": {str(chain_id): digest for chain_id, digest in digests.items()},
        "unchanged_chains": unchanged,
    }


# An attempt's start is written by its own thread when nothing else is being written: on an idle
# worker, that start is the end of a request's path to "started", and the writer thread's hand-offs
# were a share of it (docs/performance-history.md).  A finish stays with the writer (see GroupCommit).
_starts = GroupCommit(_start_batch, name="start_attempt", caller_writes_alone=True)
_finishes = GroupCommit(_finish_batch, name="finish_attempt")


def observe_batches(callback: Callable[[str, int], None] | None) -> None:
    """Have ``callback(statement, size)`` called after each group-committed batch of attempts' writes
    (``statement``: ``start_attempt`` or ``finish_attempt``); ``None`` stops it."""
    _starts.on_batch = _finishes.on_batch = callback


def fail_operation(operation_id: str, *, error_code: str, error_message: str) -> dict | None:
    """Mark an operation ``failed`` without an attempt result; returns its user and wallet, or ``None``."""
    with get_pool().connection() as conn:
        return _in_id_partitions([(operation_id,)], lambda calls, bound: [conn.execute(
            bounded("fail_operation", bound),
            {"id": operation_id, "error_code": error_code, "error_message": error_message},
        ).fetchone()])[0]


def reconcile_candidates(*, after, grace_ms: int, lease_ms: int, max_age_ms: int, limit: int) -> list[dict]:
    """Non-final operations enqueued at or after ``after`` that may have lost their message or worker."""
    with get_pool().connection() as conn:
        return conn.execute(QUERIES["reconcile_candidates"], {
            "after": after, "grace_ms": grace_ms, "lease_ms": lease_ms, "max_age_ms": max_age_ms, "limit": limit,
        }).fetchall()


def requeue_operation(candidate: dict, *, message_id: str) -> bool:
    """Mark ``candidate`` (a row of :func:`reconcile_candidates`) queued again; ``False`` if it moved on."""
    with get_pool().connection() as conn:
        return conn.execute(QUERIES["requeue_operation"], {
            "id": candidate["id"], "status": candidate["status"], "started_at": candidate["started_at"],
            "message_id": message_id,
        }).fetchone() is not None


def fail_stuck_operation(candidate: dict, *, error_code: str, error_message: str) -> bool:
    """Fail ``candidate`` (a row of :func:`reconcile_candidates`); ``False`` if it moved on."""
    with get_pool().connection() as conn:
        return conn.execute(QUERIES["fail_stuck_operation"], {
            "id": candidate["id"], "status": candidate["status"], "started_at": candidate["started_at"],
            "error_code": error_code, "error_message": error_message,
        }).fetchone() is not None


def get_operation(operation_id: str) -> dict | None:
    """The operation's row, read on the primary (what a worker that just wrote it needs)."""
    with get_pool().connection() as conn:
        return _get_operation(conn, operation_id)


def get_operations(operation_ids: Sequence[str]) -> dict[str, dict]:
    """The records of those of ``operation_ids`` that exist, by id, in one statement."""
    if not operation_ids:
        return {}
    with get_pool().connection() as conn:
        rows = conn.execute(QUERIES["get_operations"], {"ids": list(operation_ids)}).fetchall()
    return {row["id"]: row for row in rows}


def read_operation(operation_id: str) -> dict | None:
    """The operation's row for a reader (API, CLI): from the read endpoint (``DASHBOARD_DATABASE_URL``,
    the primary by default), and from the primary when the read endpoint does not have it yet (a replica
    lags: a sync requested a moment ago is found all the same)."""
    with get_readonly_pool().connection() as conn:
        row = _get_operation(conn, operation_id)
    return row if row is not None else get_operation(operation_id)


def _get_operation(conn: psycopg.Connection, operation_id: str) -> dict | None:
    return _in_id_partitions([(operation_id,)], lambda calls, bound: [
        conn.execute(bounded("get_operation", bound), {"id": operation_id}).fetchone()])[0]


def get_holdings(user_id: str, wallet_address: str) -> list[dict]:
    with get_pool().connection() as conn:
        return conn.execute(
            QUERIES["get_holdings"], {"user_id": user_id, "wallet_address": wallet_address}
        ).fetchall()


def _dumps(value: Any) -> str:
    # Decimals and datetimes travel as strings, so numeric columns get them exactly.
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def _json_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
