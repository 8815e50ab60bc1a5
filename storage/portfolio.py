"""The portfolio, read: a wallet's holdings for one user, with what the core service needs to trust them.

Two statements in one round trip (psycopg's pipeline mode): the wallet's state (tracking, each chain's
snapshot, the latest operation) and its holdings.  Holdings and snapshots are written by one statement
(``finish_attempts``), so the pair is consistent unless a sync ends between the two reads; the caller's
entity tag then changes at its next read.  Read on the read endpoint (``DASHBOARD_DATABASE_URL``, the
primary by default), like every API read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from .pool import get_readonly_pool
from .queries import QUERIES


@dataclasses.dataclass(frozen=True)
class WalletState:
    """What :func:`read_wallet` found; ``holdings`` are rows of ``get_holdings`` (exact ints and Decimals)."""

    tracked_chain_ids: tuple[int, ...]
    tracking: str | None  # 'active', 'paused', or None when the wallet is not (or no longer) tracked
    last_operation: dict[str, Any] | None
    snapshots: dict[int, dict[str, Any]]  # chain id -> {"as_of": datetime, "operation_id": str, "block_number": int | None}
    holdings: list[dict[str, Any]]
    read_at: dt.datetime


def read_wallet(user_id: str, wallet_address: str) -> WalletState | None:
    """``wallet_address``'s state and holdings for ``user_id``; ``None`` if the user never asked for it."""
    params = {"user_id": user_id, "wallet_address": wallet_address}
    with get_readonly_pool().connection() as conn, conn.pipeline():
        state_cursor = conn.execute(QUERIES["wallet_state"], params)
        holdings_cursor = conn.execute(QUERIES["get_holdings"], params)
        state = state_cursor.fetchone()
        holdings = holdings_cursor.fetchall()
    if state is None:
        return None
    last = None
    if state["last_operation_id"] is not None:
        last = {
            "id": state["last_operation_id"],
            "status": state["last_operation_status"],
            "chain_ids": tuple(state["last_operation_chain_ids"]),
            "chain_results": state["last_operation_chain_results"],
            "enqueued_at": state["last_operation_enqueued_at"],
            "finished_at": state["last_operation_finished_at"],
        }
    snapshots = {int(chain): {"as_of": dt.datetime.fromisoformat(s["as_of"]), "operation_id": s["operation_id"],
                              "block_number": s["block_number"]}
                 for chain, s in state["snapshots"].items()}
    return WalletState(
        tracked_chain_ids=tuple(state["tracked_chain_ids"] or ()),
        tracking=state["tracking"],
        last_operation=last,
        snapshots=snapshots,
        holdings=holdings,
        read_at=state["read_at"],
    )
