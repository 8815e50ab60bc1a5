"""The producer side: how the core service asks for syncs and reads their state.

Accepting a request is three steps, in this order, so that nothing is half-done:

1. admission in Redis (dedup and cooldown, one Lua script per request);
2. the ``queued`` audit row in PostgreSQL;
3. the Dramatiq message in the priority's Redis queue (a batch's messages are encoded while
   PostgreSQL writes step 2, and sent once it is committed).

Admission may answer that another operation holds the wallet.  That answer is
checked against the audit trail before it is believed: an operation whose row is
final still holding the wallet lost its end (its worker's last Redis round trip),
so the producer ends it (idempotently, see
:meth:`actors.redis_backed.admission.Admissions.end`) and asks again; an
operation with no row yet is another producer's, between its steps 1 and 2: the
producer waits a moment for the row and, if it does not appear, answers
:class:`SyncUnavailable` (retry), never an operation id that does not exist.

If step 2 fails, the admission is released and the caller gets
:class:`SyncUnavailable`; if step 3 fails, the row is failed with
``error_code = 'enqueue_failed'`` and the admission released, then the caller
gets :class:`SyncUnavailable`.  A batch does each step once for all of its
requests (pipelined in Redis, one statement in PostgreSQL).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
import redis
from dramatiq.message import Message

from storage import operations
from storage.operations import FINAL_STATUSES, NewOperation

from ..constants import QUEUES, actor_name
from ..errors import SyncUnavailable
from ..ids import uuid4_string, uuid4_strings, uuid7_strings
from ..redis_backed import events, scripts
from ..redis_backed.broker import EncodedBatch
from ..redis_backed.admission import Admission
from ..validation import InvalidSyncRequest, SyncRequest, parse_operation_id, validate_request
from . import context
from . import observe  # metrics of the admission decisions

logger = logging.getLogger(__name__)


def request_sync(user_id: str, wallet_address: str, chain_ids: Iterable[int] | None = None, *,
                 priority: str = "normal", force: bool = False, trigger: str = "api") -> str:
    """Ask for ``wallet_address`` of ``user_id`` to be synced; return the operation id (a UUID string).

    Parameters:
      user_id: the product's user id, 1 to 128 characters.
      wallet_address: ``0x`` + 40 hex digits (any case; stored in lower case).
      chain_ids: chains to sync; ``None`` (the default) means every chain of ``SYNC_CHAINS``.
      priority: ``"high"``, ``"normal"`` (default) or ``"low"``.
      force: sync even if the last success is younger than ``SYNC_COOLDOWN_SECONDS``. Default ``False``.
      trigger: who asked: ``"api"`` (default), ``"scheduled"``, ``"cli"``, ``"demo"`` or ``"redrive"``.

    While a sync of the same user and wallet is queued or running, its id is
    returned and nothing is enqueued; likewise, within the cooldown, the id of
    the last successful sync.

    Raises:
      InvalidSyncRequest: a field is invalid; nothing was enqueued or written.
      SyncUnavailable: Redis or PostgreSQL did not answer in time; nothing was accepted.
    """
    request = validate_request(user_id, wallet_address, chain_ids, priority=priority, force=force, trigger=trigger,
                               supported_chains=context.cfg().sync.chains)
    return _submit([request])[0]


def request_syncs(requests: Iterable[Mapping[str, Any]]) -> list[str]:
    """Batch form of :func:`request_sync`: one mapping of its arguments per wallet; one operation id per
    mapping, in order.  Redis and PostgreSQL are each asked once for the whole batch.

    Every request is validated before anything happens: if one is invalid,
    :class:`InvalidSyncRequest` names its index and nothing is enqueued for any.
    """
    supported = context.cfg().sync.chains
    validated: list[SyncRequest] = []
    for index, fields in enumerate(requests):
        try:
            if not isinstance(fields, Mapping):
                raise InvalidSyncRequest(f"expected a mapping of request fields, got {type(fields).__name__}")
            unknown = set(fields) - _REQUEST_FIELDS
            if unknown:
                raise InvalidSyncRequest(f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
            if "user_id" not in fields or "wallet_address" not in fields:
                raise InvalidSyncRequest("user_id and wallet_address are required")
            validated.append(validate_request(supported_chains=supported, **fields))
        except InvalidSyncRequest as exc:
            raise InvalidSyncRequest(f"request {index}: {exc}") from None
    return _submit(validated)


_REQUEST_FIELDS = {"user_id", "wallet_address", "chain_ids", "priority", "force", "trigger"}


def _submit(validated: list[SyncRequest]) -> list[str]:
    if not validated:
        return []
    cfg = context.cfg()
    candidates = [(r.user_id, r.wallet_address, op_id, r.force)
                  for r, op_id in zip(validated, uuid7_strings(len(validated)))]
    try:
        admitted = _admit(candidates)
    except redis.RedisError as exc:
        raise SyncUnavailable(f"Redis did not accept the request(s): {cfg.redact(str(exc))}") from None
    except psycopg.Error as exc:
        raise SyncUnavailable(f"PostgreSQL did not answer: {cfg.redact(str(exc))}") from None
    observe.admitted(admitted)

    new = [(request, a.operation_id) for request, a in zip(validated, admitted) if a.decision == "accepted"]
    if new:
        _persist_and_enqueue(new)
    return [a.operation_id for a in admitted]


def _admit(candidates: list[tuple[str, str, str, bool]]) -> list[Admission]:
    """Admission of ``candidates``, each "duplicate" answer checked against the audit trail (see the
    module docstring)."""
    admissions = context.admissions()
    admitted = admissions.admit_many(candidates)
    for round_ in range(_ADMISSION_ROUNDS):
        # A duplicate inside the batch names an operation this call accepted, recorded in step 2.
        own = {a.operation_id for a in admitted if a.decision == "accepted"}
        held = {i: a.operation_id for i, a in enumerate(admitted)
                if a.decision == "duplicate" and a.operation_id not in own}
        rows = _recorded(set(held.values()))
        unrecorded = [i for i, op_id in held.items() if op_id not in rows]
        ended = [i for i, op_id in held.items() if op_id in rows and rows[op_id]["status"] in FINAL_STATUSES]
        if unrecorded or not ended or round_ == _ADMISSION_ROUNDS - 1:
            break
        _end_operations([rows[held[i]] for i in ended])
        for i, admission in zip(ended, admissions.admit_many([candidates[i] for i in ended])):
            admitted[i] = admission
    if unrecorded:
        admissions.give_back([c[:3] for c, a in zip(candidates, admitted) if a.decision == "accepted"])
        raise SyncUnavailable("another request for this wallet is being recorded; retry in a moment")
    return admitted


#: How many times a request finding its wallet held by a finished operation is admitted again (a
#: concurrent producer may take the wallet between two rounds).
_ADMISSION_ROUNDS = 3
#: How long a producer waits for another producer's audit row (seconds between looks): that
#: producer is between admission and its insert, a few milliseconds apart.
_ROW_WAITS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4)


def _recorded(operation_ids: set[str]) -> dict[str, dict]:
    """The audit rows of ``operation_ids``, waiting a moment for those not written yet."""
    rows = operations.get_operations(sorted(operation_ids))
    for pause in _ROW_WAITS:
        missing = operation_ids - rows.keys()
        if not missing:
            break
        time.sleep(pause)
        rows |= operations.get_operations(sorted(missing))
    return rows


def _end_operations(finished: list[dict]) -> None:
    """End the final operations ``finished`` (audit rows) that still hold their wallets."""
    cfg = context.cfg()
    pipe = context.broker().client.pipeline(transaction=False)
    for row in finished:
        logger.warning("Operation %s is %s but still held its wallet (its end was lost); ending it now.",
                       row["id"], row["status"])
        built = events.build(row, finished_at=row["finished_at"]) if cfg.events.maxlen > 0 else []
        context.admissions().end(row["user_id"], row["wallet_address"], row["id"],
                                 succeeded=row["status"] == "succeeded", stream=events.stream_key(cfg.sync.namespace),
                                 events=built, maxlen=cfg.events.maxlen, pipeline=pipe)
    scripts.raise_first_error(scripts.execute(pipe))


def _persist_and_enqueue(new: list[tuple[SyncRequest, str]]) -> None:
    cfg = context.cfg()
    broker = context.broker()
    admitted = [(r.user_id, r.wallet_address, op_id) for r, op_id in new]
    # Each row records the Redis id of its message, so the reconciler can tell a lost message.
    ids = uuid4_strings(2 * len(new))
    redis_ids, message_ids = ids[:len(new)], ids[len(new):]

    def encode() -> EncodedBatch:
        timestamp = int(time.time() * 1000)
        return broker.encode_batch([sync_message(r.priority, op_id, redis_message_id=redis_id, message_id=message_id,
                                                 timestamp=timestamp)
                                    for (r, op_id), redis_id, message_id in zip(new, redis_ids, message_ids)])

    try:
        # The messages are encoded while PostgreSQL writes their rows; they are sent only once the rows
        # are committed (below), so an operation's row still exists before its message.
        encoded = operations.insert_operations(
            [NewOperation(op_id, r.user_id, r.wallet_address, r.chain_ids, r.priority, r.trigger, redis_id)
             for (r, op_id), redis_id in zip(new, redis_ids)],
            provider=context.provider().name, meanwhile=encode if len(new) >= _OVERLAP_MIN else None)
    except psycopg.Error as exc:
        context.admissions().give_back(admitted)
        raise SyncUnavailable(f"PostgreSQL did not record the request(s): {cfg.redact(str(exc))}") from None
    except Exception:  # the rows are written, their messages could not be made (a bug): withdrawn, then raised
        _withdraw(new, admitted, "the message(s) could not be made")
        raise

    try:
        broker.send_encoded(encoded if encoded is not None else encode())
    except redis.RedisError as exc:
        reason = f"Redis did not take the message(s): {cfg.redact(str(exc))}"
        _withdraw(new, admitted, reason)
        raise SyncUnavailable(reason) from None
    except Exception:
        _withdraw(new, admitted, "the message(s) could not be made")
        raise


def _withdraw(new: list, admitted: list[tuple[str, str, str]], reason: str) -> None:
    """Requests whose rows are written but whose messages were not sent: their rows failed with ``reason``
    and their admissions given back, so the wallets are not held for messages that do not exist."""
    for _request, op_id in new:
        try:
            operations.fail_operation(op_id, error_code="enqueue_failed", error_message=reason)
        except psycopg.Error:
            pass  # the row stays queued without a message: the reconciler will send it
    context.admissions().give_back(admitted)


#: Requests from which a batch's messages are encoded on the caller's thread while its rows are
#: written on another: below it, starting that thread costs more than the encoding it hides.
_OVERLAP_MIN = 16


def sync_message(priority: str, operation_id: str, *, redis_message_id: str | None = None,
                 message_id: str | None = None, timestamp: int | None = None) -> Message:
    """The message of operation ``operation_id`` at ``priority``, carrying the Redis id it will be stored
    under: the audit row records it before the message is sent, so the reconciler can tell it is lost.
    ``redis_message_id``, ``message_id`` (random UUIDs) and ``timestamp`` (ms since the epoch, now)
    are made here unless given.

    Built as its actor's ``message_with_options`` builds it, without the actor: a producer
    declares none."""
    return Message(queue_name=QUEUES[priority][0], actor_name=actor_name(priority), args=(operation_id,), kwargs={},
                   options={"redis_message_id": redis_message_id or uuid4_string()},
                   message_id=message_id or uuid4_string(),
                   message_timestamp=int(time.time() * 1000) if timestamp is None else timestamp)


def get_sync(operation_id: str) -> dict | None:
    """The operation's current record (status, attempts, timings, totals, per-chain results, error), or ``None``."""
    op_id = parse_operation_id(operation_id)
    if op_id is None:
        raise InvalidSyncRequest(f"operation_id must be a UUID, got {operation_id!r:.60}")
    try:
        return operations.read_operation(op_id)
    except psycopg.OperationalError as exc:
        raise SyncUnavailable(f"PostgreSQL did not answer: {context.cfg().redact(str(exc))}") from None


__all__ = ["request_sync", "request_syncs", "get_sync", "sync_message"]
