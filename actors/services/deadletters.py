"""Dead letters: list them, count them, and re-drive them (one, a selection, or all matching a filter).

Dramatiq's Redis broker dead-letters a message by moving its id into ``{ns}:{queue}.XQ`` (a
zset scored by the time, in ms) and its body into ``{ns}:{queue}.XQ.msgs``; it drops them after
the broker's ``dead_message_ttl`` (7 days).  Nothing here changes how that works.

**Re-driving** takes a dead letter out of the dead-letter queue (atomically: of two operators
re-driving the same one, only one gets it) and then, by what the message is:

- a sync message (``sync_portfolio*``) whose operation is final (``failed``, or ``succeeded``
  since): a plain re-enqueue would do nothing, since a worker only starts an operation that is
  not final.  So the wallet is synced again as a **new operation**, through the producer API
  (``request_syncs``) with the same user, wallet, chains and priority, ``force=True`` and
  ``trigger="redrive"``.  If a sync of that wallet is already queued or running, that one's id
  is reported instead (the API's deduplication).
- a sync message whose operation is not final (``queued``/``running``/``retrying``): the
  operation is sent again as the reconciler does (row back to ``queued`` under a new message).
- a sync message whose operation is unknown, or a body that is not a message: nothing can be
  re-driven; the dead letter is put back and reported as skipped.
- any other actor's message (e.g. a periodic tick): re-enqueued on its queue as a fresh message
  (new id and timestamp, so the age limit does not drop it at once; no retry count), with
  ``redriven_from`` naming the dead message.

If re-driving fails midway (Redis or PostgreSQL away), the dead letter is put back.  The
functions return what they did, so a CLI can print it; the dashboard shows it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
import redis
from dramatiq.errors import DecodeError
from dramatiq.message import Message

from storage import analytics, operations

from ..constants import is_sync_actor
from ..redis_backed import scripts as redis_scripts
from ..redis_backed.inspection import queue_names
from ..validation import InvalidSyncRequest, parse_operation_id
from . import context
from .intake import request_syncs, sync_message

logger = logging.getLogger(__name__)

#: Message options that belong to one delivery, not to the message: dropped on a re-enqueue.
_DELIVERY_OPTIONS = ("redis_message_id", "retries", "traceback", "requeue_timestamp", "eta", "guard_rejected")
_CHUNK = 500


@dataclasses.dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters: every field left empty matches all."""

    queues: tuple[str, ...] = ()
    actor: str | None = None  # exact actor name
    user_id: str | None = None  # the operation's user (sync messages)
    wallet: str | None = None  # the operation's wallet (sync messages)
    error_code: str | None = None  # the operation's error code (sync messages)
    text: str | None = None  # case-insensitive substring of the actor, arguments, traceback or error
    since: dt.datetime | None = None  # dead-lettered at or after
    until: dt.datetime | None = None  # dead-lettered before

    @property
    def needs_content(self) -> bool:
        return any((self.actor, self.user_id, self.wallet, self.error_code, self.text))


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    queue: str
    redis_id: str
    dead_at: dt.datetime
    decodable: bool
    message_id: str | None = None
    actor_name: str | None = None
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)
    enqueued_at: dt.datetime | None = None
    retries: int = 0
    traceback: str | None = None
    operation_id: str | None = None
    operation: dict | None = None  # the audit row of a sync message's operation, if found
    raw_preview: str | None = None  # the start of an undecodable body

    @property
    def is_sync(self) -> bool:
        return bool(self.actor_name and is_sync_actor(self.actor_name))

    def summary(self) -> dict[str, Any]:
        """A flat, display-ready view (no secrets: the audit trail's errors are already redacted)."""
        op = self.operation or {}
        return {
            "queue": self.queue, "redis_id": self.redis_id, "dead_at": self.dead_at,
            "actor_name": self.actor_name or "(undecodable)", "message_id": self.message_id,
            "operation_id": self.operation_id, "user_id": op.get("user_id"), "wallet_address": op.get("wallet_address"),
            "operation_status": op.get("status"), "error_code": op.get("error_code"),
            "error_message": op.get("error_message") or _last_line(self.traceback), "retries": self.retries,
            "enqueued_at": self.enqueued_at,
        }


@dataclasses.dataclass
class RedriveReport:
    redriven: list[dict] = dataclasses.field(default_factory=list)  # queue, redis_id, how, operation_id
    skipped: list[dict] = dataclasses.field(default_factory=list)  # queue, redis_id, reason

    def __str__(self) -> str:
        return f"{len(self.redriven)} re-driven, {len(self.skipped)} skipped"


# ------------------------------------------------------------------------------------- reading --

def list_dead_letters(flt: DeadLetterFilter = DeadLetterFilter(), *, limit: int = 50, offset: int = 0,
                      broker=None) -> tuple[list[DeadLetter], int]:
    """One page of the dead letters matching ``flt``, newest first, and how many match."""
    broker = broker or context.broker()
    entries = _entries(broker, flt)
    if not flt.needs_content:  # the zsets alone answer: decode only the page
        return _load(broker, entries[offset:offset + limit]), len(entries)
    page, total = [], 0
    for letter in _matching(broker, entries, flt):
        if offset <= total < offset + limit:
            page.append(letter)
        total += 1
    return page, total


def count_dead_letters(flt: DeadLetterFilter = DeadLetterFilter(), *, broker=None) -> int:
    """How many dead letters match ``flt`` (the dry run of :func:`redrive_matching`)."""
    broker = broker or context.broker()
    entries = _entries(broker, flt)
    if not flt.needs_content:
        return len(entries)
    return sum(1 for _ in _matching(broker, entries, flt))


def _entries(broker, flt: DeadLetterFilter) -> list[tuple[int, str, str]]:
    """(dead_at_ms, queue, redis_id) of every dead letter in the filter's queues and time range, newest first."""
    queues = [q for q in queue_names(broker) if not flt.queues or q in flt.queues]
    high = "+inf" if flt.until is None else f"({int(flt.until.timestamp() * 1000)}"
    low = "-inf" if flt.since is None else str(int(flt.since.timestamp() * 1000))
    pipe = broker.client.pipeline(transaction=False)
    for q in queues:
        pipe.zrevrangebyscore(f"{broker.namespace}:{q}.XQ", high, low, withscores=True)
    per_queue = [[(int(score), q, _text(member)) for member, score in found]
                 for q, found in zip(queues, pipe.execute())]
    return list(heapq.merge(*per_queue, key=lambda e: (-e[0], e[1], e[2])))


def _matching(broker, entries: Sequence[tuple[int, str, str]], flt: DeadLetterFilter) -> Iterator[DeadLetter]:
    for start in range(0, len(entries), _CHUNK):
        for letter in _load(broker, entries[start:start + _CHUNK]):
            if _matches(letter, flt):
                yield letter


def _load(broker, entries: Sequence[tuple[int, str, str]]) -> list[DeadLetter]:
    """Decode the bodies of ``entries`` and attach each sync message's operation (one query)."""
    if not entries:
        return []
    pipe = broker.client.pipeline(transaction=False)
    for _score, q, redis_id in entries:
        pipe.hget(f"{broker.namespace}:{q}.XQ.msgs", redis_id)
    letters = []
    for (score, q, redis_id), body in zip(entries, pipe.execute()):
        if body is None:  # re-driven or expired between the two reads
            continue
        letters.append(_decode(q, redis_id, score, body))
    op_ids = [letter.operation_id for letter in letters if letter.operation_id]
    if op_ids:
        rows = analytics.operations_by_ids(op_ids)
        letters = [dataclasses.replace(letter, operation=rows.get(letter.operation_id)) if letter.operation_id
                   else letter for letter in letters]
    return letters


def _decode(queue: str, redis_id: str, score: int, body: bytes) -> DeadLetter:
    dead_at = dt.datetime.fromtimestamp(score / 1000, dt.timezone.utc)
    try:
        message = Message.decode(body)
    except DecodeError:
        return DeadLetter(queue=queue, redis_id=redis_id, dead_at=dead_at, decodable=False,
                          raw_preview=body[:200].decode("utf-8", "replace"))
    operation_id = None
    if is_sync_actor(message.actor_name):
        candidates = [message.kwargs.get("operation_id"), *message.args]
        operation_id = next((parse_operation_id(c) for c in candidates if parse_operation_id(c)), None)
    return DeadLetter(
        queue=queue, redis_id=redis_id, dead_at=dead_at, decodable=True, message_id=message.message_id,
        actor_name=message.actor_name, args=tuple(message.args), kwargs=dict(message.kwargs),
        enqueued_at=dt.datetime.fromtimestamp(message.message_timestamp / 1000, dt.timezone.utc),
        retries=int(message.options.get("retries") or 0), traceback=message.options.get("traceback"),
        operation_id=operation_id,
    )


def _matches(letter: DeadLetter, flt: DeadLetterFilter) -> bool:
    op = letter.operation or {}
    if flt.actor and letter.actor_name != flt.actor:
        return False
    if flt.user_id and op.get("user_id") != flt.user_id:
        return False
    if flt.wallet and op.get("wallet_address") != flt.wallet.lower():
        return False
    if flt.error_code and op.get("error_code") != flt.error_code:
        return False
    if flt.text:
        needle = flt.text.lower()
        haystack = " ".join(str(part) for part in (
            letter.actor_name, letter.operation_id, json.dumps(letter.args, default=str),
            json.dumps(letter.kwargs, default=str), letter.traceback, letter.raw_preview,
            op.get("error_code"), op.get("error_message"), op.get("user_id"), op.get("wallet_address"),
        ) if part)
        if needle not in haystack.lower():
            return False
    return True


# ----------------------------------------------------------------------------------- re-driving --

def redrive(refs: Iterable[tuple[str, str]], *, broker=None) -> RedriveReport:
    """Re-drive the dead letters ``(queue, redis_id)`` of ``refs`` (see the module docstring)."""
    broker = broker or context.broker()
    report = RedriveReport()
    refs = list(dict.fromkeys(refs))
    for start in range(0, len(refs), _CHUNK):
        _redrive_chunk(broker, refs[start:start + _CHUNK], report)
    logger.info("Dead letters re-driven: %s.", report)
    return report


def redrive_matching(flt: DeadLetterFilter, *, broker=None, limit: int | None = None) -> RedriveReport:
    """Re-drive every dead letter matching ``flt`` (at most ``limit``); :func:`count_dead_letters` is its dry run."""
    broker = broker or context.broker()
    entries = _entries(broker, flt)
    if flt.needs_content:
        refs = [(letter.queue, letter.redis_id) for letter in _matching(broker, entries, flt)]
    else:
        refs = [(q, redis_id) for _score, q, redis_id in entries]
    return redrive(refs[:limit] if limit is not None else refs, broker=broker)


def _redrive_chunk(broker, refs: Sequence[tuple[str, str]], report: RedriveReport) -> None:
    ns = broker.namespace
    client = broker.client
    claim = client.register_script(redis_scripts.source("claim_dead_letter"))
    pipe = client.pipeline(transaction=False)
    for q, redis_id in refs:
        pipe.zscore(f"{ns}:{q}.XQ", redis_id)
        redis_scripts.queue(pipe, claim, keys=[f"{ns}:{q}.XQ", f"{ns}:{q}.XQ.msgs"], args=[redis_id])
    replies = redis_scripts.raise_first_error(redis_scripts.execute(pipe))
    claimed: list[tuple[DeadLetter, bytes]] = []
    for i, (q, redis_id) in enumerate(refs):
        score, body = replies[2 * i], replies[2 * i + 1]
        if body is None or body is False:
            report.skipped.append({"queue": q, "redis_id": redis_id, "reason": "not in the dead-letter queue (any more)"})
            continue
        body = body if isinstance(body, bytes) else str(body).encode()
        claimed.append((_decode(q, redis_id, int(score or 0), body), body))
    if not claimed:
        return
    try:
        rows = analytics.operations_by_ids([letter.operation_id for letter, _b in claimed if letter.operation_id])
    except psycopg.Error as exc:
        _restore(broker, claimed, report, f"PostgreSQL did not answer: {type(exc).__name__}")
        return

    new_syncs: list[tuple[DeadLetter, bytes, dict]] = []
    for letter, body in claimed:
        try:
            if not letter.decodable:
                _restore(broker, [(letter, body)], report, "the body is not a Dramatiq message")
            elif not letter.is_sync:
                _requeue_message(broker, letter, body, report)
            elif letter.operation_id is None or letter.operation_id not in rows:
                _restore(broker, [(letter, body)], report, "its operation is unknown to the audit trail")
            elif rows[letter.operation_id]["status"] in ("succeeded", "partial", "failed"):
                new_syncs.append((letter, body, rows[letter.operation_id]))
            else:
                _resend_operation(broker, letter, body, rows[letter.operation_id], report)
        except (redis.RedisError, psycopg.Error) as exc:
            _restore(broker, [(letter, body)], report, f"could not re-drive: {type(exc).__name__}")
    if new_syncs:
        _new_operations(broker, new_syncs, report)


def _new_operations(broker, items: list[tuple[DeadLetter, bytes, dict]], report: RedriveReport) -> None:
    requests = [{"user_id": op["user_id"], "wallet_address": op["wallet_address"],
                 "chain_ids": list(op["chain_ids"]), "priority": op["priority"], "force": True,
                 "trigger": "redrive"} for _letter, _body, op in items]
    try:
        new_ids = request_syncs(requests)
    except InvalidSyncRequest:
        if len(items) > 1:  # find the one that no longer validates (e.g. a chain since dropped)
            for item in items:
                _new_operations(broker, [item], report)
            return
        _restore(broker, [items[0][:2]], report, "the operation's request is no longer valid")
        return
    except Exception as exc:  # SyncUnavailable and the like: nothing was accepted
        _restore(broker, [item[:2] for item in items], report, f"could not request the syncs: {type(exc).__name__}")
        return
    for (letter, _body, op), new_id in zip(items, new_ids):
        report.redriven.append({"queue": letter.queue, "redis_id": letter.redis_id, "how": "new operation",
                                "operation_id": new_id, "replaces": letter.operation_id,
                                "user_id": op["user_id"], "wallet_address": op["wallet_address"]})


def _resend_operation(broker, letter: DeadLetter, body: bytes, op: dict, report: RedriveReport) -> None:
    message = sync_message(op["priority"], letter.operation_id)
    candidate = {"id": letter.operation_id, "status": op["status"], "started_at": op["started_at"]}
    if operations.requeue_operation(candidate, message_id=message.options["redis_message_id"]):
        broker.enqueue_batch([message])
        report.redriven.append({"queue": letter.queue, "redis_id": letter.redis_id, "how": "operation sent again",
                                "operation_id": letter.operation_id, "replaces": None,
                                "user_id": op["user_id"], "wallet_address": op["wallet_address"]})
    else:  # it moved on since we looked: a worker or the reconciler has it
        report.redriven.append({"queue": letter.queue, "redis_id": letter.redis_id, "how": "already moving again",
                                "operation_id": letter.operation_id, "replaces": None,
                                "user_id": op["user_id"], "wallet_address": op["wallet_address"]})


def _requeue_message(broker, letter: DeadLetter, body: bytes, report: RedriveReport) -> None:
    old = Message.decode(body)
    options = {k: v for k, v in old.options.items() if k not in _DELIVERY_OPTIONS}
    options["redriven_from"] = old.message_id
    message = Message(queue_name=letter.queue, actor_name=old.actor_name, args=tuple(old.args),
                      kwargs=dict(old.kwargs), options=options)
    broker.enqueue(message)
    report.redriven.append({"queue": letter.queue, "redis_id": letter.redis_id, "how": "message re-enqueued",
                            "operation_id": None, "replaces": None, "user_id": None, "wallet_address": None,
                            "message_id": message.message_id})


def _restore(broker, items: Iterable[tuple[DeadLetter, bytes]], report: RedriveReport, reason: str) -> None:
    """Put claimed dead letters back where they were, with their original time."""
    items = list(items)
    pipe = broker.client.pipeline(transaction=True)
    for letter, body in items:
        key = f"{broker.namespace}:{letter.queue}.XQ"
        pipe.hset(f"{key}.msgs", letter.redis_id, body)
        pipe.zadd(key, {letter.redis_id: int(letter.dead_at.timestamp() * 1000)})
    pipe.execute()
    for letter, _body in items:
        report.skipped.append({"queue": letter.queue, "redis_id": letter.redis_id, "reason": reason})


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _last_line(text: str | None) -> str | None:
    if not text:
        return None
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:240] if lines else None
