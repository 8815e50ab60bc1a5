"""Completion events: what other services consume to learn that a sync ended.

When an operation reaches its final status, the worker appends to the Redis Stream
``{SYNC_NAMESPACE}:events`` (``XADD ... MAXLEN ~ EVENTS_MAXLEN``):

- ``sync.succeeded``, ``sync.partial`` (some chains stored, the others failed after the last
  attempt; ``chain_results`` of the operation says which) or ``sync.failed``, once per operation;
- then ``portfolio.updated``, if the operation stored holdings of at least one chain (every
  chain on success; the chains that were read, on a partial outcome or before a final failure).

Every field is a string (Redis Stream fields are); the schema is in ``docs/events.md``.  An event
is appended after the final status is committed to PostgreSQL, once, with the operation's end
(``actors.redis_backed.admission.Admissions.end``): by the delivery that committed it or, if that
delivery's round trip was lost, by whoever next sees the final row still holding its wallet (a
redelivery, a producer).  If Redis refuses it (not a lost round trip) the event is dropped, logged and counted
(``portfolio_sync_events_total{result="dropped"}``): the audit trail stays the source of truth, and
a consumer that must not miss anything reconciles against ``GET /api/v1/syncs/<id>``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import redis

from chaindata.portfolio import exact_sum

SCHEMA_VERSION = "1"
SYNC_SUCCEEDED = "sync.succeeded"
SYNC_PARTIAL = "sync.partial"
SYNC_FAILED = "sync.failed"
PORTFOLIO_UPDATED = "portfolio.updated"
EVENT_TYPES = (SYNC_SUCCEEDED, SYNC_PARTIAL, SYNC_FAILED, PORTFOLIO_UPDATED)
_SYNC_EVENT = {"succeeded": SYNC_SUCCEEDED, "partial": SYNC_PARTIAL, "failed": SYNC_FAILED}

logger = logging.getLogger(__name__)


def stream_key(namespace: str) -> str:
    return f"{namespace}:events"


def build(operation: Mapping[str, Any], *, finished_at: dt.datetime) -> list[dict[str, str]]:
    """The events of a finished operation.

    ``operation`` holds the audit row's fields: ``id``, ``user_id``, ``wallet_address``,
    ``chain_ids``, ``priority``, ``trigger``, ``status``, ``attempts``, ``holdings_count``,
    ``total_value_usd``, ``unpriced_count``, ``error_code`` and ``chain_results`` (every
    attempt's, merged)."""
    status = operation["status"]
    if status not in _SYNC_EVENT:
        raise ValueError(f"operation {operation['id']} is not final ({status})")
    chain_results = operation.get("chain_results") or {}
    stored = sorted(int(c) for c, r in chain_results.items() if r.get("status") == "ok")
    common = {
        "schema": SCHEMA_VERSION,
        "operation_id": str(operation["id"]),
        "user_id": operation["user_id"],
        "wallet_address": operation["wallet_address"],
        "finished_at": _iso(finished_at),
    }
    sync_event = {
        "type": _SYNC_EVENT[status],
        **common,
        "status": status,
        "chain_ids": _ids(operation["chain_ids"]),
        "priority": operation.get("priority") or "",
        "trigger": operation.get("trigger") or "",
        "attempts": _text(operation.get("attempts")),
        "holdings_count": _text(operation.get("holdings_count")),
        "total_value_usd": _text(operation.get("total_value_usd")),
        "unpriced_count": _text(operation.get("unpriced_count")),
        "error_code": operation.get("error_code") or "",
    }
    events = [sync_event]
    if stored:
        ok = [chain_results[str(c)] for c in stored]
        events.append({
            "type": PORTFOLIO_UPDATED,
            **common,
            "chain_ids": _ids(stored),
            "holdings_count": str(sum(int(r.get("holdings") or 0) for r in ok)),
            "total_value_usd": str(exact_sum(Decimal(str(r.get("value_usd") or "0")) for r in ok)),
            "unpriced_count": str(sum(int(r.get("unpriced") or 0) for r in ok)),
        })
    return events


def append(pipeline: redis.client.Pipeline, namespace: str, events: Sequence[Mapping[str, str]], *,
           maxlen: int) -> None:
    """Queue ``events`` on ``pipeline``: they are appended to the stream when it is sent."""
    if maxlen <= 0:
        return
    for event in events:
        pipeline.xadd(stream_key(namespace), dict(event), maxlen=maxlen, approximate=True)


def read(client: redis.Redis, namespace: str, *, after: str = "-", count: int = 100) -> list[tuple[str, dict[str, str]]]:
    """Up to ``count`` events after the stream id ``after`` (``-``: from the oldest kept), oldest first."""
    start = after if after == "-" else f"({after}"
    entries = client.xrange(stream_key(namespace), min=start, max="+", count=count)
    return [(_decode(entry_id), {_decode(k): _decode(v) for k, v in fields.items()}) for entry_id, fields in entries]


def _ids(chain_ids: Sequence[int] | None) -> str:
    return ",".join(str(c) for c in (chain_ids or ()))


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
