"""What a worker does with one sync operation, attempt by attempt.

An attempt is two writes to PostgreSQL: ``start_attempt`` (the row goes
``running``) and ``finish_attempt`` (status, results and holdings in one
statement).  Between them the chains still to do are read concurrently from the
provider and priced.  Chains already read by an earlier attempt of the same
operation are not read again: a retry only repeats what failed.  In Redis, an
attempt takes its lease, and at its end sends everything else it has to say
(admission release, completion events, lease release) in one round trip.

Each HTTP request of a chain read is retried within the attempt by the
provider's transport (``SYNC_READ_TRIES``, jittered backoff, never past the
attempt's deadline) before the attempt counts the chain as failed.  A price API
that fails does not fail the chain: its balances are stored unpriced, and its
result says ``prices: "unavailable"``.

The attempt's status decides what Dramatiq does next: ``succeeded`` returns,
``retrying`` raises a retryable :class:`SyncAttemptFailed` (the Retries
middleware schedules the next attempt with backoff), ``failed`` raises a
final one (the message goes to the dead-letter queue).  ``partial`` (some
chains stored, by this attempt or an earlier one, and the others failed for
good or after the last attempt) returns: the operation is over, its
``chain_results`` say what each chain did, and it is no dead letter.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
import redis
from dramatiq.middleware import CurrentMessage, TimeLimitExceeded

from chaindata import wire
from chaindata.base import ChainRead, PermanentProviderError, ProviderError, TransientProviderError
from chaindata.evm.abi import clean_text
from chaindata.portfolio import ChainPortfolio, exact_sum, price_chain
from chaindata.retrying import deadline_scope
from chaindata.tokens.candidates import Candidates
from chaindata.tokens.lists import complete_from_list
from storage import operations
from storage.operations import FINAL_STATUSES, AttemptOutcome

from ..constants import TRANSIENT_INFRASTRUCTURE_ERRORS
from ..errors import SyncAttemptFailed
from ..redis_backed import events
from ..redis_backed.admission import ended
from ..redis_backed import scripts as redis_scripts
from ..redis_backed.attempt_reads import AttemptReads
from ..redis_backed.chain_reads import ChainAnswer
from ..validation import InvalidSyncRequest, parse_operation_id, validate_chains, validate_wallet
from . import context
from . import observe  # metrics and completion events

logger = logging.getLogger(__name__)
T = TypeVar("T")

_MAX_ERROR_MESSAGE = 1000
_MAX_ERROR_CODE = 64
#: Per-token errors kept in a chain's result (all are counted): a wallet full of broken tokens stays a small row.
_MAX_TOKEN_ERRORS = 50
#: What the final write raises when the result itself cannot be stored (a value a column cannot hold, a
#: constraint, something JSON cannot encode), as opposed to the database being away.
_REFUSED_RESULT = (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError, psycopg.NotSupportedError,
                   ValueError, TypeError)
#: Chain reads of all the worker threads of a process share this pool.
_chain_pool = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="chain")


def sync_portfolio(operation_id: str) -> None:
    """Run one attempt of the sync operation ``operation_id`` (see the module docstring)."""
    op_id = parse_operation_id(operation_id)
    if op_id is None:
        logger.error("Rejected a sync message whose operation id is not a UUID: %.80r", operation_id)
        raise SyncAttemptFailed("malformed_message", "the operation id is not a UUID", retry=False)

    leases = context.leases()
    end = _AttemptEnd(leases.client)
    token = leases.acquire(op_id)
    if token is None:
        # The lease may be a finished attempt's whose last round trip (lease release included) was lost.
        logger.info("Operation %s is running under another delivery's lease; this one does nothing.", op_id)
        _repair_end(op_id, end)
        end.send(ack=True)
        return
    returned = False
    try:
        _run_attempt(op_id, end)
        returned = True
    finally:
        leases.release(op_id, token, pipeline=end.pipeline)
        end.send(ack=returned)


class _AttemptEnd:
    """What an attempt leaves in Redis once its result is committed (the operation's end: the wallet's
    admission and the completion events; the lease), queued on one pipeline and sent in one round
    trip, with the message's ack last when the actor is about to return (Dramatiq would ack it then,
    one round trip later; a message that is retried or dead-lettered is left to Dramatiq).

    The operation's end is idempotent (:meth:`Admissions.end`): if this round trip is lost after the
    final status was committed, the message comes back (Retries, or the broker's recovery of a dead
    worker's messages), the redelivery finds the row final and ends it again (:func:`_repair_end`), and
    a producer that finds the wallet still held by a final operation ends it too
    (:mod:`actors.services.intake`)."""

    def __init__(self, client: redis.Redis):
        self.pipeline = client.pipeline(transaction=False)
        self.events: list[dict[str, str]] = []
        self._end_slot: int | None = None

    def end_operation(self, operation: Mapping[str, Any], built: list[dict[str, str]]) -> None:
        """Queue the end of the final ``operation`` (its audit row's fields), with its events ``built``."""
        cfg = context.cfg()
        self._end_slot = len(self.pipeline)
        context.admissions().end(operation["user_id"], operation["wallet_address"], str(operation["id"]),
                                 succeeded=operation["status"] == "succeeded",
                                 stream=events.stream_key(cfg.sync.namespace), events=built,
                                 maxlen=cfg.events.maxlen, pipeline=self.pipeline)
        self.events = built

    def send(self, *, ack: bool = False) -> None:
        """Send what is queued; with ``ack``, ack the message being processed in the same round trip (after
        everything else: the ack tells the broker the message is done with)."""
        delivery = _delivery() if ack else None
        if delivery is not None:
            broker, queue_name, redis_message_id = delivery
            broker.queue_ack(self.pipeline, queue_name, redis_message_id)
        try:
            results = redis_scripts.execute(self.pipeline)
        except redis.RedisError as exc:  # the round trip itself failed
            observe.events_sent(self.events, exc)
            raise  # a transient infrastructure error: Retries brings the message back, and it ends the operation
        if delivery is not None:
            acked = results.pop()
            if not isinstance(acked, Exception):  # else the consumer acks it, as without this
                broker.acked(queue_name, redis_message_id)
        for i, result in enumerate(results):
            if i == self._end_slot and not isinstance(result, Exception):
                # An event Redis refused is dropped and counted, as the audit trail stays the truth.
                done = ended(result)
                if done != "already":
                    observe.events_sent(self.events, done)
            elif isinstance(result, Exception):
                # A release Redis refused is an error of the worker's own keys, and fails the message.  Its
                # ack, if applied, stands: the operation is final, so the message is retried (and its
                # redelivery ends the operation again) or, its retries spent, not dead-lettered; the wallet
                # is then freed by the next request for it (intake) or its in-flight entry's lifetime.
                if i == self._end_slot:
                    observe.events_sent(self.events, result)
                raise result


def _delivery():
    """(broker, queue, Redis id) of the message this worker thread is processing; None outside a worker
    (a direct call, a test) or for a message without a Redis id."""
    message = CurrentMessage.get_current_message()
    redis_message_id = message.options.get("redis_message_id") if message is not None else None
    if redis_message_id is None:
        return None
    return context.broker(), message.queue_name, redis_message_id


def _repair_end(op_id: str, end: _AttemptEnd) -> None:
    """End again the operation ``op_id`` if it is final: a no-op when the delivery that finished it
    ended it, the repair of its wallet and events when that delivery's last round trip was lost."""
    operation = operations.get_operation(op_id)
    if operation is None or operation["status"] not in FINAL_STATUSES:
        return
    built = events.build(operation, finished_at=operation["finished_at"]) if context.cfg().events.maxlen > 0 else []
    end.end_operation(operation, built)


def _run_attempt(op_id: str, end: _AttemptEnd) -> None:
    message = CurrentMessage.get_current_message()
    row = operations.start_attempt(op_id, worker_id=context.worker_id(),
                                   message_id=message.options.get("redis_message_id") if message else None)
    if row is None:
        logger.info("Operation %s is unknown or already final; this delivery only makes sure it ended.", op_id)
        _repair_end(op_id, end)
        return

    cfg = context.cfg()
    started = time.monotonic()
    try:
        outcome = _attempt(row, deadline=started + cfg.sync.time_limit_ms / 1000 * 0.9)
    except TimeLimitExceeded:
        outcome = _failure(row, "time_limit_exceeded",
                           f"the attempt ran longer than SYNC_TIME_LIMIT_MS={cfg.sync.time_limit_ms}", transient=True)
    except InvalidSyncRequest as exc:
        outcome = _failure(row, "invalid_request", str(exc), transient=False)

    try:
        finished = operations.finish_attempt(op_id, outcome)
    except _REFUSED_RESULT as exc:
        # Writing it again would fail again, and the row would stay running until the reconciler
        # called it worker_lost: the operation fails now, with the reason.
        # Its first line only: the lines after it quote the data (a holding, a provider's text).
        reason = f"{type(exc).__name__}: {str(exc).partition(chr(10))[0]}"
        logger.error("Operation %s attempt %d: PostgreSQL refused its result: %s", op_id, row["attempts"],
                     _text(reason))
        outcome = _failure(row, "result_not_stored", f"PostgreSQL refused the attempt's result ({reason})",
                           transient=False)
        finished = operations.finish_attempt(op_id, outcome)
    if not finished:
        logger.info("Operation %s was finished by another delivery; this attempt's result is dropped.", op_id)
        _repair_end(op_id, end)
        return
    built = observe.attempt_finished(row, outcome, time.monotonic() - started)
    if outcome.status in FINAL_STATUSES:
        # Only a full success starts the wallet's cooldown: after a partial one the user may ask again at once.
        end.end_operation({**row, "status": outcome.status}, built)
    logger.info("Operation %s attempt %d: %s (%s chains, %s holdings, $%s) in %.0f ms.", op_id, row["attempts"],
                outcome.status, len(row["chain_ids"]), outcome.holdings_count, outcome.total_value_usd,
                (time.monotonic() - started) * 1000)
    if outcome.status not in ("succeeded", "partial"):
        delay_ms = None
        if outcome.refund_attempt:  # every chain's circuit is open: come back when each lets a trial through
            delay_ms = int(max(context.circuits().seconds_until_trial(c) for c in row["chain_ids"]) * 1000) + 500
        raise SyncAttemptFailed(outcome.error_code or "failed", outcome.error_message or "",
                                retry=outcome.status == "retrying", delay_ms=delay_ms)


def fail_unrun(operation_id: str, error_code: str, error_message: str) -> None:
    """Fail an operation whose message will never run (malformed or expired) and free its wallet."""
    row = operations.fail_operation(operation_id, error_code=error_code,
                                    error_message=_text(error_message))
    if row is not None:
        end_failed(operation_id)


def end_failed(operation_id: str) -> None:
    """End the operation ``operation_id``, failed without an attempt result: free its wallet and send
    its completion events (once, see :class:`_AttemptEnd`)."""
    operation = operations.get_operation(operation_id)
    if operation is None or operation["status"] not in FINAL_STATUSES:
        return
    end = _AttemptEnd(context.leases().client)
    end.end_operation(operation, observe.operation_failed(operation))
    end.send()


def _attempt(row: dict, *, deadline: float) -> AttemptOutcome:
    cfg = context.cfg()
    # Validated at the edge already; checked again because the row may predate a config change.
    validate_wallet(row["wallet_address"])
    previous = row["chain_results"] or {}
    pending = [c for c in row["chain_ids"] if previous.get(str(c), {}).get("status") != "ok"]
    # The reads' time is the attempt's start on PostgreSQL's clock, never this host's: a worker whose
    # clock runs fast would otherwise store future read times, and every later sync would look older.
    as_of = row["started_at"]

    errors: dict[int, ProviderError] = {}
    valid = []
    for chain_id in pending:
        try:
            validate_chains([chain_id], cfg.sync.chains)
        except InvalidSyncRequest as exc:
            errors[chain_id] = PermanentProviderError("unsupported_chain", str(exc))
            continue
        valid.append(chain_id)
    reads = _read_chains(valid, row["wallet_address"], deadline, errors)

    results = dict(previous)
    for chain_id, read in reads.items():
        results[str(chain_id)] = _chain_result(read, as_of)
    for chain_id, exc in errors.items():
        results[str(chain_id)] = {"status": "error", "error_code": _text(exc.code, _MAX_ERROR_CODE),
                                  "error_message": _text(str(exc)),
                                  "transient": exc.transient}

    ok = [r for r in results.values() if r["status"] == "ok"]
    # No provider was called at all when every chain read was turned away by an open circuit.
    refund = bool(errors) and not reads and all(e.code == "circuit_open" for e in errors.values())
    if not errors:
        status = "succeeded"
    elif any(e.transient for e in errors.values()) and (refund or row["attempts"] < cfg.sync.max_attempts):
        status = "retrying"
    elif ok:
        status = "partial"
    else:
        status = "failed"
    first_error = errors[min(errors)] if errors else None
    return AttemptOutcome(
        status=status,
        holdings=[h for r in reads.values() for h in r.portfolio.holdings],
        synced_chains=sorted(reads),
        chain_results={k: results[k] for k in map(str, {*reads, *errors})},
        holdings_count=sum(r["holdings"] for r in ok),
        total_value_usd=exact_sum(Decimal(r["value_usd"]) for r in ok),
        unpriced_count=sum(r["unpriced"] for r in ok),
        as_of=as_of,
        provider=context.provider().name,
        error_code=_text(first_error.code, _MAX_ERROR_CODE) if first_error else None,
        error_message=_text("; ".join(_chain_message(c, str(e)) for c, e in sorted(errors.items())))
        if errors else None,
        refund_attempt=refund,
        chain_blocks={chain_id: r.read.block_number for chain_id, r in reads.items()},
        stored_digests=row["holdings_digests"],
    )


def _read_chains(chain_ids: list[int], wallet: str, deadline: float,
                 errors: dict[int, ProviderError]) -> dict[int, _ChainOutcome]:
    """The chains of ``chain_ids`` read concurrently and priced; a chain that failed is in ``errors`` instead."""
    if not chain_ids:
        return {}
    provider = context.provider()
    # Every chain's shared read and circuit in one round trip, and every read's end in one more.  A start
    # that fails (Redis away, read-only in a failover, a script's error) fails every chain alike.
    try:
        chain_reads = AttemptReads.start(context.chain_reads(),
                                         [(c, f"{provider.name}:{c}:{wallet}") for c in chain_ids])
    except Exception as exc:
        errors |= dict.fromkeys(chain_ids, _as_chain_error(exc, "Starting the attempt's chain reads"))
        return {}
    try:
        futures = {_chain_pool.submit(_read_chain, chain_reads, c, wallet, deadline): c for c in chain_ids}
        done = _wait_within(futures, deadline, errors)
        ended = chain_reads.end()
    finally:
        chain_reads.end()  # does something only if the time limit's exception came first: frees what reads hold
    reads: dict[int, _ChainOutcome | None] = {}
    # Priced here once the end has brought the cached prices; a chain with prices to ask for asks on its
    # own thread, so the price API's latency is paid once for the attempt, as the reads' is.
    asking = {}
    for future in done:
        chain_id = futures[future]
        loaded = _collect(chain_id, lambda: _with_cached(future.result(), ended.get(chain_id)), errors)
        if loaded is None:
            continue
        if None in loaded[1]:
            asking[_chain_pool.submit(_priced, chain_id, *loaded, deadline)] = chain_id
        else:
            reads[chain_id] = _collect(chain_id, lambda: _priced(chain_id, *loaded, deadline), errors)
    for future in _wait_within(asking, deadline, errors):
        reads[asking[future]] = _collect(asking[future], future.result, errors)
    return {chain_id: read for chain_id, read in reads.items() if read is not None}


def _wait_within(futures: dict[concurrent.futures.Future, int], deadline: float,
                 errors: dict[int, ProviderError]) -> set[concurrent.futures.Future]:
    """The futures (of chain ids) done by ``deadline``; the others are cancelled and their chains' errors
    recorded in ``errors``."""
    done, not_done = concurrent.futures.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
    for future in not_done:
        future.cancel()
        errors[futures[future]] = TransientProviderError("time_limit_exceeded", "no answer within SYNC_TIME_LIMIT_MS")
    return done


def _text(text: str, limit: int = _MAX_ERROR_MESSAGE) -> str:
    """A provider's (or anyone's) ``text`` fit for a column and a log: secrets redacted, control and format
    characters (NUL, which PostgreSQL refuses, and lone surrogates, which UTF-8 cannot carry) removed, at
    most ``limit`` characters."""
    return clean_text(context.cfg().redact(text), limit)


def _chain_message(chain_id: int, message: str) -> str:
    """``message`` prefixed with its chain, once (provider errors often name it already)."""
    prefix = f"chain {chain_id}: "
    return message if message.startswith(prefix) else prefix + message


@dataclasses.dataclass(frozen=True)
class _ChainOutcome:
    """One chain read in an attempt: what the provider answered (or another sync's read of it), priced, what
    finding its tokens took, and the price API's error if it failed (the balances are stored unpriced then)."""

    read: ChainRead
    candidates: Candidates
    shared: bool  # the read was another sync's, made within SYNC_READ_SHARE_WINDOW_MS: it cost nothing here
    portfolio: ChainPortfolio
    price_error: ProviderError | None
    duration_ms: int


@dataclasses.dataclass(frozen=True)
class _Loaded:
    """A chain's read as its thread leaves it: the answer, parsed; priced by the attempt once its end has
    brought the cached prices."""

    answer: ChainAnswer
    read: ChainRead
    candidates: Candidates
    balances: list
    priced: list[str]  # the tokens whose prices are asked for
    started: float


def _read_chain(chain_reads: AttemptReads, chain_id: int, wallet: str, deadline: float) -> _Loaded:
    started = time.monotonic()
    provider, price_source = context.provider(), context.price_source()
    index = context.token_lists().index()
    loaded: dict[str, Any] = {}  # the answer, parsed once (to name its prices' keys) and used after
    made: dict[str, Any] = {}  # this sync's own read, as the provider answered it, and its bytes

    def read_from_provider() -> bytes:
        candidates = context.candidate_tokens().for_read(chain_id, wallet)  # never raises a provider's error
        # Not retried here: the provider's transport retries each HTTP request (SYNC_READ_TRIES).
        read = provider.read_chain(chain_id, wallet, candidates.addresses)
        made.update(read=read, candidates=candidates, answer=wire.dump_read(read, candidates))
        return made["answer"]

    def price_keys(answer: bytes) -> list[str]:
        # A read this sync made is used as made; only another sync's, shared through Redis, is parsed.
        if made.get("answer") is answer:
            loaded["read"], loaded["candidates"] = made["read"], made["candidates"]
        else:
            loaded["read"], loaded["candidates"] = wire.load_read(answer)
        loaded["balances"] = complete_from_list(loaded["read"].balances, index)
        # A token of unknown decimals is never valued, so its price is not asked for.
        loaded["priced"] = [b.token_address for b in loaded["balances"] if b.decimals is not None]
        return price_source.cache_keys(chain_id, loaded["priced"])

    with deadline_scope(deadline):
        # Another user's sync of this wallet and chain within the window may have read it already; the
        # attempt's end brings the cached prices of its tokens back with it.
        answer = chain_reads.read(chain_id, read_from_provider, deadline=deadline, cache_keys=price_keys)
    return _Loaded(answer, loaded["read"], loaded["candidates"], loaded["balances"], loaded["priced"], started)


def _with_cached(loaded: _Loaded, ended: list[bytes | None] | Exception | None) -> tuple[_Loaded, list[bytes | None]]:
    """``loaded`` and the cached values of its prices: its own read's, or those the attempt's end brought."""
    cached = loaded.answer.cached if loaded.answer.cached is not None else ended
    if isinstance(cached, Exception):  # the attempt's end failed: as the chain's own end failing would
        raise cached
    return loaded, cached


def _collect(chain_id: int, result: Callable[[], T], errors: dict[int, ProviderError]) -> T | None:
    """``result()``, or None with the chain's error recorded in ``errors``."""
    try:
        return result()
    except Exception as exc:
        errors[chain_id] = _as_chain_error(exc, f"Reading chain {chain_id}")
    return None


def _as_chain_error(exc: Exception, doing: str) -> ProviderError:
    """What a chain's result records of ``exc``, raised while ``doing``: the provider's own error as it is,
    an infrastructure outage as transient, anything else (a bug, an unexpected answer) as permanent,
    logged, but recorded, never lost."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, TRANSIENT_INFRASTRUCTURE_ERRORS):  # e.g. the price cache's Redis briefly away
        return _unavailable(exc)
    logger.exception("%s failed unexpectedly.", doing)
    return PermanentProviderError("provider_error", f"{type(exc).__name__}: {exc}")


def _priced(chain_id: int, loaded: _Loaded, cached: list[bytes | None], deadline: float) -> _ChainOutcome:
    price_source, index = context.price_source(), context.token_lists().index()
    try:
        with deadline_scope(deadline):
            prices = price_source.from_cached(chain_id, loaded.priced, cached)
        price_error = None
    except ProviderError as exc:  # balances read fine are worth storing without prices
        logger.warning("Prices of chain %s unavailable, its holdings are stored unpriced: %s", chain_id,
                       context.cfg().redact(str(exc)))
        prices, price_error = {}, exc
    return _ChainOutcome(loaded.read, loaded.candidates, loaded.answer.shared,
                         price_chain(chain_id, loaded.balances, prices, index.is_listed),
                         price_error, int((time.monotonic() - loaded.started) * 1000))


def _unavailable(exc: BaseException) -> TransientProviderError:
    return TransientProviderError("infrastructure_unavailable", f"{type(exc).__name__}: {exc}")


def _chain_result(outcome: _ChainOutcome, as_of: dt.datetime) -> dict:
    """The audit trail's record of a chain read (``chain_results``), secrets redacted."""
    p, read, found = outcome.portfolio, outcome.read, outcome.candidates
    # A shared read's requests were paid by the sync that made it; this one's cost nothing.
    cost = 0 if outcome.shared else 1
    result = {
        "status": "ok", "holdings": len(p.holdings), "value_usd": str(p.value_usd), "unpriced": p.unpriced,
        "possible_spam": p.possible_spam, "duration_ms": outcome.duration_ms, "as_of": as_of.isoformat(),
        "block_number": read.block_number, "shared_read": outcome.shared,
        "requests": cost * (read.requests + found.requests), "truncated": read.truncated,
        "token_error_count": len(read.token_errors),
        "token_errors": [{"token_address": e.token_address, "code": e.code, "message": _text(e.message)}
                         for e in read.token_errors[:_MAX_TOKEN_ERRORS]],
        "discovery": {"requests": cost * found.requests, "tokens": found.discovered, "new": found.new,
                      "scanned_to_block": found.scanned_to_block,
                      "error": None if found.error is None else _text(str(found.error))},
        "prices": "ok",
    }
    if outcome.price_error is not None:
        result |= {"prices": "unavailable", "price_error_code": outcome.price_error.code}
    return result


def _failure(row: dict, code: str, message: str, *, transient: bool) -> AttemptOutcome:
    cfg = context.cfg()
    retry = transient and row["attempts"] < cfg.sync.max_attempts
    return AttemptOutcome(
        status="retrying" if retry else "failed", holdings=[], synced_chains=[], chain_results={},
        holdings_count=None, total_value_usd=None, unpriced_count=None,
        as_of=row["started_at"], provider=context.provider().name,
        error_code=_text(code, _MAX_ERROR_CODE), error_message=_text(message),
    )
