"""The portfolio, read: ``get_portfolio``, what a wallet holds for one user, chain by chain.

A chain's holdings are those of its current snapshot: the newest read stored for it, whichever
operation stored it.  Beside them, each chain says how old that read is and how the latest operation
went for it, so a core service can tell "holds nothing" from "never read" and "fresh" from "the last
sync of this chain failed, these are older".

Amounts stay exact: raw balances are ``int``, balances, prices and values ``Decimal``.  The HTTP API
and the CLI turn them into strings.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any
import psycopg

from chaindata.portfolio import exact_sum
from storage import portfolio as stored

from ..errors import SyncUnavailable
from ..validation import validate_chains, validate_user_id, validate_wallet
from . import context

def get_portfolio(user_id: str, wallet_address: str, chain_ids: Iterable[int] | None = None) -> dict | None:
    """``wallet_address``'s portfolio for ``user_id``; ``None`` if no sync of it was ever requested for them.

    ``chain_ids`` narrows the answer to those chains (each must be a supported chain); by default it
    covers every chain the wallet is tracked on or was read on.  Raises ``InvalidSyncRequest`` for a
    bad argument and ``SyncUnavailable`` when PostgreSQL does not answer.

    The answer::

        {"user_id", "wallet_address", "etag",
         "last_operation": {"id", "status", "enqueued_at", "finished_at"},
         "totals": {"value_usd", "holdings_count", "priced_count", "unpriced_count"},
         "chains": [{"chain_id", "status", "read_at", "block_number", "age_seconds", "fresh", "operation_id",
                     "last_result": {"operation_id", "operation_status", "status", "error_code", "error_message"},
                     "value_usd", "priced_count", "unpriced_count", "holdings": [...]}, ...]}

    A holding: ``token_address, symbol, name, decimals, raw_balance (int), balance, price_usd,
    value_usd, price_source, priced_at, price_age_seconds, flags``.  Flags: ``unpriced`` (no known
    price, so in no total), ``unknown_decimals`` (its ``decimals()`` could not be read: never valued),
    ``possible_spam`` (on no token list and without a price), ``listed`` (on a token list).
    """
    cfg = context.cfg()
    validate_user_id(user_id)
    wallet = validate_wallet(wallet_address)
    wanted = None if chain_ids is None else validate_chains(chain_ids, cfg.sync.chains)
    try:
        state = stored.read_wallet(user_id, wallet)
    except psycopg.OperationalError as exc:
        raise SyncUnavailable(f"PostgreSQL did not answer: {cfg.redact(str(exc))}") from None
    if state is None:
        return None

    last = state.last_operation
    chains = wanted or tuple(sorted({*state.tracked_chain_ids, *state.snapshots, *last["chain_ids"]}))
    by_chain: dict[int, list[dict]] = {}
    for row in state.holdings:
        by_chain.setdefault(row["chain_id"], []).append(row)
    answer_chains = [_chain(c, state, by_chain.get(c, []), fresh_for_s=cfg.scheduler.active_interval_s)
                     for c in chains]
    shown = [c for c in answer_chains if c["status"] == "ok" or c["holdings"]]
    return {
        "user_id": user_id,
        "wallet_address": wallet,
        "etag": _etag(state, chains),
        "last_operation": {k: last[k] for k in ("id", "status", "enqueued_at", "finished_at")},
        "totals": {
            "value_usd": exact_sum(c["value_usd"] for c in shown),
            "holdings_count": sum(len(c["holdings"]) for c in shown),
            "priced_count": sum(c["priced_count"] for c in shown),
            "unpriced_count": sum(c["unpriced_count"] for c in shown),
        },
        "chains": answer_chains,
    }


def portfolio_as_json(portfolio: dict) -> dict:
    """``portfolio`` (an answer of :func:`get_portfolio`) for JSON, without losing precision: amounts as
    decimal strings, raw balances as integer strings, times in ISO 8601; its ``etag`` is left out (HTTP
    sends it as a header)."""
    def convert(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: convert(v, k) for k, v in value.items() if k != "etag"}
        if isinstance(value, list):
            return [convert(v) for v in value]
        if isinstance(value, Decimal) or key == "raw_balance":
            return str(value)
        if isinstance(value, dt.datetime):
            return value.isoformat()
        return value

    return convert(portfolio)


def _chain(chain_id: int, state: stored.WalletState, rows: list[dict], *, fresh_for_s: int) -> dict:
    snapshot = state.snapshots.get(chain_id)
    last = state.last_operation
    result = last["chain_results"].get(str(chain_id)) if chain_id in last["chain_ids"] else None
    if snapshot is not None:
        status = "ok"
    elif result is not None and result.get("status") == "error":
        status = "error"
    elif result is None and chain_id in last["chain_ids"] and last["finished_at"] is None:
        status = "pending"
    else:
        status = "never_read"
    holdings = [_holding(row, state.read_at) for row in rows]
    priced = [h for h in holdings if h["value_usd"] is not None]
    read_at = snapshot["as_of"] if snapshot else None
    age = None if read_at is None else max(0.0, (state.read_at - read_at).total_seconds())
    return {
        "chain_id": chain_id,
        "status": status,
        "read_at": read_at,
        "block_number": snapshot["block_number"] if snapshot else None,
        "age_seconds": age,
        "fresh": age is not None and age <= fresh_for_s,
        "operation_id": snapshot["operation_id"] if snapshot else None,
        "last_result": None if result is None and chain_id not in last["chain_ids"] else {
            "operation_id": last["id"],
            "operation_status": last["status"],
            "status": None if result is None else result.get("status"),
            "error_code": None if result is None else result.get("error_code"),
            "error_message": None if result is None else result.get("error_message"),
        },
        "value_usd": exact_sum(h["value_usd"] for h in priced),
        "priced_count": len(priced),
        "unpriced_count": len(holdings) - len(priced),
        "holdings": holdings,
    }


def _holding(row: dict, now: dt.datetime) -> dict:
    priced_at = row["priced_at"]
    return {
        "token_address": row["token_address"],
        "symbol": row["symbol"],
        "name": row["name"],
        "decimals": row["decimals"],
        "raw_balance": int(row["raw_balance"]),
        "balance": row["balance"],
        "price_usd": row["price_usd"],
        "value_usd": row["value_usd"],
        "price_source": row["price_source"],
        "priced_at": priced_at,
        "price_age_seconds": None if priced_at is None else max(0.0, (now - priced_at).total_seconds()),
        "flags": [flag for flag, on in (("unpriced", row["price_usd"] is None),
                                        ("unknown_decimals", row["decimals"] is None),
                                        ("possible_spam", row["possible_spam"]),
                                        ("listed", row["listed"])) if on],
    }


def _etag(state: stored.WalletState, chains: tuple[int, ...]) -> str:
    """A weak entity tag: it changes whenever a chain's snapshot (and so its holdings), the latest
    operation (its status or results) or the tracked chains change, not as ages grow (the
    representation's meaning is the same)."""
    last = state.last_operation
    key = json.dumps({
        "chains": chains,
        "snapshots": {str(c): [s["operation_id"], s["as_of"].isoformat()] for c, s in sorted(state.snapshots.items())},
        # The latest operation's per-chain results too: an attempt that fails again while the status stays
        # `retrying` changes what the portfolio says of its chains.
        "last": [last["id"], last["status"], last["finished_at"] and last["finished_at"].isoformat(),
                 last["chain_results"]],
        "tracked": [state.tracking, state.tracked_chain_ids],
    }, sort_keys=True)
    return 'W/"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'
