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
attempt's deadline) before the attempt counts the chain as failed.  A price API that fails does not fail the chain: its balances are
stored unpriced, and its result says ``prices: "unavailable"``.

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
from decimal import Decimal

import redis
from dramatiq.middleware import CurrentMessage, TimeLimitExceeded

from chaindata import wire
from chaindata.base import ChainRead, PermanentProviderError, ProviderError, TransientProviderError
from chaindata.portfolio import ChainPortfolio, exact_sum, price_chain
from chaindata.retrying import deadline_scope
from chaindata.tokens.candidates import Candidates
from chaindata.tokens.lists import complete_from_list
from storage import operations
from storage.operations import AttemptOutcome

from ..constants import TRANSIENT_INFRASTRUCTURE_ERRORS
from ..errors import SyncAttemptFailed
from ..redis_backed import events
from ..redis_backed import scripts as redis_scripts
from ..validation import InvalidSyncRequest, parse_operation_id, validate_chains, validate_wallet
from . import context
from . import observe  # metrics and completion events

logger = logging.getLogger(__name__)

_MAX_ERROR_MESSAGE = 1000
#: Per-token errors kept in a chain's result (all are counted): a wallet full of broken tokens stays a small row.
_MAX_TOKEN_ERRORS = 50
#: Chain reads of all the worker threads of a process share this pool.
_chain_pool = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="chain")


def sync_portfolio(operation_id: str) -> None:
    """Run one attempt of the sync operation ``operation_id`` (see the module docstring)."""
    op_id = parse_operation_id(operation_id)
    if op_id is None:
        logger.error("Rejected a sync message whose operation id is not a UUID: %.80r", operation_id)
        raise SyncAttemptFailed("malformed_message", "the operation id is not a UUID", retry=False)

    leases = context.leases()
    token = leases.acquire(op_id)
    if token is None:
        logger.info("Operation %s is running under another delivery's lease; this one does nothing.", op_id)
        return
    end = _AttemptEnd(leases.client)
    try:
        _run_attempt(op_id, end)
    finally:
        leases.release(op_id, token, pipeline=end.pipeline)
        end.send()


class _AttemptEnd:
    """What an attempt leaves in Redis once its result is committed (the wallet's admission, the
    completion events, the lease), queued on one pipeline and sent in one round trip, before the
    message is acked."""

    def __init__(self, client: redis.Redis):
        self.pipeline = client.pipeline(transaction=False)
        self.events: list[dict[str, str]] = []
        self._event_slots = range(0)

    def add_events(self, built: list[dict[str, str]], *, namespace: str, maxlen: int) -> None:
        start = len(self.pipeline)
        events.append(self.pipeline, namespace, built, maxlen=maxlen)
        self.events, self._event_slots = built, range(start, len(self.pipeline))

    def send(self) -> None:
        try:
            results = redis_scripts.execute(self.pipeline)
        except redis.RedisError as exc:  # the round trip itself failed
            observe.events_sent(self.events, exc)
            raise  # a transient infrastructure error: Retries brings the message back
        event_errors = [r for i, r in enumerate(results) if i in self._event_slots and isinstance(r, Exception)]
        # An event Redis refused is dropped and counted, as the audit trail stays the truth; a
        # release it refused is an error of the worker's own keys, and fails the message.
        observe.events_sent(self.events, event_errors[0] if event_errors else None)
        for i, result in enumerate(results):
            if i not in self._event_slots and isinstance(result, Exception):
                raise result


def _run_attempt(op_id: str, end: _AttemptEnd) -> None:
    message = CurrentMessage.get_current_message()
    row = operations.start_attempt(op_id, worker_id=context.worker_id(),
                                   message_id=message.options.get("redis_message_id") if message else None)
    if row is None:
        logger.info("Operation %s is unknown or already final; this delivery does nothing.", op_id)
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

    if not operations.finish_attempt(op_id, outcome):
        logger.info("Operation %s was finished by another delivery; this attempt's result is dropped.", op_id)
        return
    if outcome.status in ("succeeded", "partial", "failed"):
        # Only a full success starts the wallet's cooldown: after a partial one the user may ask again at once.
        context.admissions().release(row["user_id"], row["wallet_address"], op_id,
                                     succeeded=outcome.status == "succeeded", pipeline=end.pipeline)
    end.add_events(observe.attempt_finished(row, outcome, time.monotonic() - started),
                   namespace=cfg.sync.namespace, maxlen=cfg.events.maxlen)
    logger.info("Operation %s attempt %d: %s (%s chains, %s holdings, $%s) in %.0f ms.", op_id, row["attempts"],
                outcome.status, len(row["chain_ids"]), outcome.holdings_count, outcome.total_value_usd,
                (time.monotonic() - started) * 1000)
    if outcome.status not in ("succeeded", "partial"):
        delay_ms = None
        if outcome.refund_attempt:  # every chain's circuit is open: come back when one lets a call through
            delay_ms = int(max(context.circuits().seconds_until_trial(c) for c in row["chain_ids"]) * 1000) + 500
        raise SyncAttemptFailed(outcome.error_code or "failed", outcome.error_message or "",
                                retry=outcome.status == "retrying", delay_ms=delay_ms)


def fail_unrun(operation_id: str, error_code: str, error_message: str) -> None:
    """Fail an operation whose message will never run (malformed or expired) and free its wallet."""
    row = operations.fail_operation(operation_id, error_code=error_code,
                                    error_message=context.cfg().redact(error_message)[:_MAX_ERROR_MESSAGE])
    if row is not None:
        context.admissions().release(row["user_id"], row["wallet_address"], operation_id, succeeded=False)
        observe.operation_failed(operation_id)


def _attempt(row: dict, *, deadline: float) -> AttemptOutcome:
    cfg = context.cfg()
    # Validated at the edge already; checked again because the row may predate a config change.
    validate_wallet(row["wallet_address"])
    previous = row["chain_results"] or {}
    pending = [c for c in row["chain_ids"] if previous.get(str(c), {}).get("status") != "ok"]
    as_of = dt.datetime.now(dt.timezone.utc)

    reads: dict[int, _ChainOutcome] = {}
    errors: dict[int, ProviderError] = {}
    futures = {}
    for chain_id in pending:
        try:
            validate_chains([chain_id], cfg.sync.chains)
        except InvalidSyncRequest as exc:
            errors[chain_id] = PermanentProviderError("unsupported_chain", str(exc))
            continue
        futures[_chain_pool.submit(_read_chain, chain_id, row["wallet_address"], deadline)] = chain_id
    done, not_done = concurrent.futures.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
    for future in not_done:
        future.cancel()
        errors[futures[future]] = TransientProviderError("time_limit_exceeded", "no answer within SYNC_TIME_LIMIT_MS")
    for future in done:
        chain_id = futures[future]
        try:
            reads[chain_id] = future.result()
        except ProviderError as exc:
            errors[chain_id] = exc
        except TRANSIENT_INFRASTRUCTURE_ERRORS as exc:  # e.g. the price cache's Redis briefly away
            errors[chain_id] = TransientProviderError("infrastructure_unavailable", f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug or an unexpected answer: permanent, but recorded, never lost
            logger.exception("Reading chain %s failed unexpectedly.", chain_id)
            errors[chain_id] = PermanentProviderError("provider_error", f"{type(exc).__name__}: {exc}")

    results = dict(previous)
    for chain_id, read in reads.items():
        results[str(chain_id)] = _chain_result(read, as_of)
    for chain_id, exc in errors.items():
        results[str(chain_id)] = {"status": "error", "error_code": exc.code,
                                  "error_message": cfg.redact(str(exc))[:_MAX_ERROR_MESSAGE],
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
        error_code=first_error.code if first_error else None,
        error_message="; ".join(_chain_message(c, cfg.redact(str(e))) for c, e in sorted(errors.items()))[
            :_MAX_ERROR_MESSAGE] if errors else None,
        refund_attempt=refund,
        chain_blocks={chain_id: r.read.block_number for chain_id, r in reads.items()},
    )


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


def _read_chain(chain_id: int, wallet: str, deadline: float) -> _ChainOutcome:
    started = time.monotonic()
    circuits, provider = context.circuits(), context.provider()

    def read_from_provider() -> bytes:
        candidates = context.candidate_tokens().for_read(chain_id, wallet)  # never raises a provider's error
        # Not retried here: the provider's transport retries each HTTP request (SYNC_READ_TRIES).
        read = circuits.call(chain_id, provider.read_chain, chain_id, wallet, candidates.addresses)
        return wire.dump_read(read, candidates)

    with deadline_scope(deadline):
        # Another user's sync of this wallet and chain within the window may have read it already.
        answer, shared = context.shared_reads().read(f"{provider.name}:{chain_id}:{wallet}", read_from_provider,
                                                     deadline=deadline)
        read, candidates = wire.load_read(answer)
        index = context.token_lists().index()
        balances = complete_from_list(read.balances, index)
        try:
            # A token of unknown decimals is never valued, so its price is not asked for.
            prices = context.price_source().get_prices(
                chain_id, [b.token_address for b in balances if b.decimals is not None])
            price_error = None
        except ProviderError as exc:  # balances read fine are worth storing without prices
            logger.warning("Prices of chain %s unavailable, its holdings are stored unpriced: %s", chain_id,
                           context.cfg().redact(str(exc)))
            prices, price_error = {}, exc
    return _ChainOutcome(read, candidates, shared, price_chain(chain_id, balances, prices, index.is_listed),
                         price_error, int((time.monotonic() - started) * 1000))


def _chain_result(outcome: _ChainOutcome, as_of: dt.datetime) -> dict:
    """The audit trail's record of a chain read (``chain_results``), secrets redacted."""
    cfg, p, read, found = context.cfg(), outcome.portfolio, outcome.read, outcome.candidates
    # A shared read's requests were paid by the sync that made it; this one's cost nothing.
    cost = 0 if outcome.shared else 1
    result = {
        "status": "ok", "holdings": len(p.holdings), "value_usd": str(p.value_usd), "unpriced": p.unpriced,
        "possible_spam": p.possible_spam, "duration_ms": outcome.duration_ms, "as_of": as_of.isoformat(),
        "block_number": read.block_number, "shared_read": outcome.shared,
        "requests": cost * (read.requests + found.requests), "truncated": read.truncated,
        "token_error_count": len(read.token_errors),
        "token_errors": [{"token_address": e.token_address, "code": e.code,
                          "message": cfg.redact(e.message)[:_MAX_ERROR_MESSAGE]}
                         for e in read.token_errors[:_MAX_TOKEN_ERRORS]],
        "discovery": {"requests": cost * found.requests, "tokens": found.discovered, "new": found.new,
                      "scanned_to_block": found.scanned_to_block,
                      "error": None if found.error is None else cfg.redact(str(found.error))[:_MAX_ERROR_MESSAGE]},
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
        as_of=dt.datetime.now(dt.timezone.utc), provider=context.provider().name,
        error_code=code, error_message=cfg.redact(message)[:_MAX_ERROR_MESSAGE],
    )
