"""What the sync pipeline reports as it goes: metrics and completion events, from one place.

The pipeline's modules call these functions at the moments that matter (one line each):

- ``intake._submit``: :func:`admitted`, with the admission decision of each request;
- ``lifecycle._run_attempt``: :func:`attempt_finished`, once an attempt's result is committed;
- ``lifecycle.end_failed`` (for ``lifecycle.fail_unrun`` and ``reconciler._fail``): :func:`operation_failed`,
  when an operation fails without an attempt result (malformed message, expired, lost with its worker);
- ``reconciler.reconcile``: :func:`reconciled`, with what a pass did;
- ``storage.group_commit`` (hooked up in ``actors.worker``): :func:`audit_batch`, after each batch
  of attempts' audit writes.

None of them ever raises: a metric or an event that cannot be recorded is logged, and the sync
goes on as if nothing happened.
"""

from __future__ import annotations

import collections
import contextvars
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ..redis_backed import events
from . import context, metrics

logger = logging.getLogger(__name__)

_FINAL = ("succeeded", "partial", "failed")
#: Chain results that mean no provider call was made.
_NOT_CALLED = ("circuit_open", "unsupported_chain")
_last_admissions: contextvars.ContextVar[list | None] = contextvars.ContextVar("portfolio_sync_admissions",
                                                                                default=None)


def admitted(admissions: Sequence[Any]) -> None:
    """Count each request's admission (``accepted``, ``duplicate``, ``cooldown``), and remember them
    for :func:`last_admissions`."""
    try:
        _last_admissions.set(list(admissions))
        for decision, count in collections.Counter(a.decision for a in admissions).items():
            metrics.inc("portfolio_sync_admissions_total", count, decision=decision)
    except Exception:
        logger.exception("Could not record the admissions.")


def last_admissions() -> list | None:
    """The admissions (``decision``, ``operation_id``) of the latest ``request_sync(s)`` call of this
    thread or task that got as far as deciding, or ``None``; see :func:`forget_admissions`."""
    return _last_admissions.get()


def forget_admissions() -> None:
    _last_admissions.set(None)


def attempt_finished(row: Mapping[str, Any], outcome: Any, elapsed_s: float) -> list[dict[str, str]]:
    """An attempt's result was committed: ``row`` is what ``start_attempt`` returned, ``outcome``
    the :class:`storage.operations.AttemptOutcome` written.  Returns the completion events to
    append (none unless the status is final): the caller sends them with the attempt's other
    last Redis writes, then reports with :func:`events_sent`."""
    try:
        priority = row.get("priority") or ""
        metrics.observe("portfolio_sync_attempt_duration_seconds", elapsed_s, priority=priority, status=outcome.status)
        for chain_id, result in (outcome.chain_results or {}).items():
            code = result.get("error_code")
            if result.get("status") == "ok":
                metrics.inc("portfolio_sync_provider_calls_total", provider=outcome.provider, chain_id=chain_id,
                            result="ok")
                if result.get("duration_ms") is not None:
                    metrics.observe("portfolio_sync_provider_call_duration_seconds", result["duration_ms"] / 1000,
                                    provider=outcome.provider, chain_id=chain_id)
            else:
                if code not in _NOT_CALLED:
                    metrics.inc("portfolio_sync_provider_calls_total", provider=outcome.provider, chain_id=chain_id,
                                result="error")
                metrics.inc("portfolio_sync_provider_errors_total", provider=outcome.provider, chain_id=chain_id,
                            error_code=code or "unknown")
        if outcome.status in _FINAL:
            operation = {
                **row, "status": outcome.status, "holdings_count": outcome.holdings_count,
                "total_value_usd": outcome.total_value_usd, "unpriced_count": outcome.unpriced_count,
                "error_code": outcome.error_code,
                "chain_results": {**(row.get("chain_results") or {}), **(outcome.chain_results or {})},
            }
            return _finished(operation, finished_at=dt.datetime.now(dt.timezone.utc))
    except Exception:
        logger.exception("Could not record the end of an attempt of operation %s.", row.get("id"))
    return []


def events_sent(built: Sequence[Mapping[str, str]], error: Exception | None = None) -> None:
    """Count ``built`` events as written, or (with the ``error`` Redis answered) as dropped, and log it."""
    if not built:
        return
    if error is not None:
        logger.warning("Completion events of operation %s were dropped: Redis did not take them (%s).",
                       built[0]["operation_id"], context.cfg().redact(str(error)))
    for event in built:
        metrics.inc("portfolio_sync_events_total", type=event["type"],
                    result="dropped" if error is not None else "written")


def operation_failed(operation: Mapping[str, Any]) -> list[dict[str, str]]:
    """``operation`` (its audit row) was failed without an attempt result: count it, and return its
    completion events, for the caller to send with the operation's end."""
    try:
        return _finished(operation, finished_at=operation.get("finished_at") or dt.datetime.now(dt.timezone.utc))
    except Exception:
        logger.exception("Could not record the failure of operation %s.", operation.get("id"))
    return []


def audit_batch(statement: str, size: int) -> None:
    """A group commit wrote ``size`` attempts' ``statement`` (``start_attempt``, ``finish_attempt``) at once."""
    try:
        metrics.observe("portfolio_sync_audit_batch_size", size, statement=statement)
    except Exception:
        logger.exception("Could not record an audit batch.")


def reconciled(done: Mapping[str, int]) -> None:
    """Count what a reconciler pass did (``recovered`` messages of dead workers, ``requeued``, ``failed_expired``,
    ``failed_worker_lost``)."""
    try:
        for action, count in done.items():
            metrics.inc("portfolio_sync_reconciler_actions_total", count, action=action)
    except Exception:
        logger.exception("Could not record the reconciler's actions.")


def _finished(operation: Mapping[str, Any], *, finished_at: dt.datetime) -> list[dict[str, str]]:
    """Count a finished operation; return its completion events (none when events are disabled)."""
    status = operation["status"]
    metrics.inc("portfolio_sync_syncs_total", status=status, trigger=operation.get("trigger") or "",
                priority=operation.get("priority") or "")
    if status == "failed":
        metrics.inc("portfolio_sync_sync_errors_total", error_code=operation.get("error_code") or "unknown")
    results = operation.get("chain_results") or {}
    for chain_id in operation.get("chain_ids") or ():
        metrics.inc("portfolio_sync_chain_syncs_total", chain_id=chain_id,
                    status=(results.get(str(chain_id)) or {}).get("status", "not_read"))
    if operation.get("queue_wait_ms") is not None:
        metrics.observe("portfolio_sync_queue_wait_seconds", operation["queue_wait_ms"] / 1000,
                        priority=operation.get("priority") or "")
    if context.cfg().events.maxlen <= 0:
        return []
    return events.build(operation, finished_at=finished_at)
