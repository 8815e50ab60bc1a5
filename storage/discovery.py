"""Token discovery's cursors: per wallet and chain, the blocks scanned and the tokens found (``token_discovery_cursors``)."""

from __future__ import annotations

from collections.abc import Iterable

from .pool import get_pool
from .queries import QUERIES


def load_cursor(wallet_address: str, chain_id: int) -> dict | None:
    """``{scanned_from, scanned_to, tokens}`` of ``wallet_address`` on ``chain_id``, or ``None`` if never scanned."""
    with get_pool().connection() as conn:
        return conn.execute(QUERIES["get_discovery_cursor"],
                            {"wallet_address": wallet_address, "chain_id": chain_id}).fetchone()


def save_cursor(wallet_address: str, chain_id: int, *, scanned_from: int, scanned_to: int,
                tokens: Iterable[str]) -> None:
    """Merge a scan into the cursor of ``wallet_address`` on ``chain_id`` (blocks and tokens only ever grow)."""
    with get_pool().connection() as conn:
        conn.execute(QUERIES["save_discovery_cursor"], {
            "wallet_address": wallet_address, "chain_id": chain_id, "scanned_from": scanned_from,
            "scanned_to": scanned_to, "tokens": sorted(tokens)})
